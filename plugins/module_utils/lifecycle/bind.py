# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bindings on an app cluster, as kubectl-bind and the konnector make them: the kubeconfig Secret,
the APIServiceBinding, the CRD from the export and the konnector's rights, one at a time
(klutch_binding), or an app cluster's whole bind: export, bindings and one sync pass (klutch_bind)."""

import base64
import random
import string

from ansible_collections.klutch.bind.plugins.module_utils.k8s.apply import Recorder, now
from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import parse_kubeconfig
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CLUSTER_ROLES,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
    api_name,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import (
    API_SERVICE_BINDINGS,
    API_SERVICE_EXPORTS,
    CLUSTER_BINDINGS,
)
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import export, sync
from ansible_collections.klutch.bind.plugins.module_utils.plan import bindings

try:
    import yaml
except ImportError:  # reported by the module
    yaml = None


def provider_config(value):
    """The provider kubeconfig as a dict, from inline YAML, a dict or a file."""
    try:
        config = parse_kubeconfig(value)
    except ConfigError as error:
        raise ConfigError("provider_kubeconfig: %s" % error)
    if isinstance(config, str):
        try:
            with open(config) as handle:
                config = yaml.safe_load(handle)
        except (IOError, OSError) as error:
            raise ConfigError("provider_kubeconfig %s cannot be read (%s): give the kubeconfig that "
                              "klutch_export_request returned." % (config, error.strerror))
        except yaml.YAMLError:
            raise ConfigError("provider_kubeconfig %s is not valid YAML: give the kubeconfig that klutch_export_request "
                              "returned." % config)
    if not isinstance(config, dict) or not config.get("contexts"):
        raise ConfigError("provider_kubeconfig is not a kubeconfig: give the one klutch_export_request returned.")
    server, namespace = bindings.kubeconfig_target(config)
    if not server or not namespace:
        raise ConfigError("provider_kubeconfig names no %s in its current context: give the kubeconfig that "
                          "klutch_export_request returned, whose context names the consumer's namespace."
                          % ("server" if not server else "namespace"))
    return config, server, namespace


def read_control_plane(control_plane, name, namespace):
    """The APIServiceExport and the control plane's pretty name, read with the consumer's own rights."""
    api_export = control_plane.get(API_SERVICE_EXPORTS, name, namespace)
    if api_export is None:
        raise ConfigError("The control plane has no APIServiceExport %s for this consumer (namespace %s on %s). Export "
                          "it first with klutch_export_request, or check the name (<plural>.<group>)."
                          % (name, namespace, control_plane.label))
    cluster_binding = control_plane.get(CLUSTER_BINDINGS, "cluster", namespace) or {}
    return api_export, (cluster_binding.get("spec") or {}).get("providerPrettyName", "")


def secret_name(client, bound, server, namespace):
    """The Secret for this kubeconfig: the binding's own, one for the same control plane, or a new name."""
    if bound is not None:
        return bound["spec"]["kubeconfigSecretRef"]["name"]
    taken = set()
    for secret in client.list(SECRETS, bindings.BIND_NAMESPACE)[0]:
        taken.add(secret["metadata"]["name"])
        encoded = (secret.get("data") or {}).get(bindings.KUBECONFIG_KEY)
        if not encoded or not secret["metadata"]["name"].startswith(bindings.KUBECONFIG_SECRET_PREFIX):
            continue
        stored = sync.decoded_kubeconfig(encoded)
        if stored and bindings.kubeconfig_target(stored) == (server, namespace):
            return secret["metadata"]["name"]
    while True:
        name = bindings.KUBECONFIG_SECRET_PREFIX + "".join(random.sample(string.ascii_lowercase + string.digits, 5))
        if name not in taken:
            return name


def require_binding_api(client):
    if client.resource_for(API_SERVICE_BINDINGS.api_version, API_SERVICE_BINDINGS.kind) is None:
        raise ConfigError("%s does not serve APIServiceBinding: install the Klutch CRDs on the app cluster first "
                          "(the klutch.bind.konnector role does)." % client.label)


def planned_binding(recorder, name):
    """Check mode, when the binding cannot be dry-run (no klutch-bind namespace, or no export yet): to be created."""
    for kind in ("Secret", API_SERVICE_BINDINGS.kind, "CustomResourceDefinition"):
        recorder.planned({"apiVersion": "", "kind": kind, "metadata": {"name": name, "namespace": bindings.BIND_NAMESPACE}})


def unsaved_binding(name):
    """A binding not written yet, as the owner of a CRD that is only dry-run: the server checks no owner's uid."""
    return {"metadata": {"name": name, "uid": "00000000-0000-0000-0000-000000000000"}}


def bind(client, recorder, client_for, *, name, kubeconfig, accept_claims, sync_crd, wait_timeout):
    """Bind the export `name` with the consumer's `kubeconfig` (klutch_export_request's): the kubeconfig Secret,
    the APIServiceBinding accepting the claims `accept_claims` names, the konnector's rights and, with `sync_crd`,
    the CRD from the export (waiting up to `wait_timeout` s for it to be served). `client_for(kubeconfig)`
    reaches the control plane."""
    config, server, namespace = provider_config(kubeconfig)
    require_binding_api(client)
    api_export, pretty_name = read_control_plane(client_for(config), name, namespace)
    claims = bindings.acceptable_claims(name, api_export["spec"].get("permissionClaims") or [],
                                        accept_claims)
    require_accepted_kinds_served(client, name, claims)
    crd = client.get(CUSTOM_RESOURCE_DEFINITIONS, name) if sync_crd else None
    problem = bindings.foreign_crd_problem(crd, name)
    if problem:
        raise ConfigError(problem)
    roles = bindings.konnector_roles(name, api_export["spec"], claims)
    existing = client.get(API_SERVICE_BINDINGS, name, bindings.BIND_NAMESPACE)
    # The rights and the schema asked of the server first: a claimed kind the caller may not grant, or a
    # schema the app cluster refuses, must not leave the first ClusterRole written.
    answers = recorder.preflight(roles + ([bindings.crd_from_export(api_export, existing or unsaved_binding(name))]
                                          if sync_crd else []))
    for role, answer in zip(roles, answers):
        recorder.apply(role, answer=answer)
    recorder.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": bindings.BIND_NAMESPACE}})
    if recorder.check_mode and client.get(NAMESPACES, bindings.BIND_NAMESPACE) is None:
        planned_binding(recorder, name)
        return {"conditions": []}
    secret = write_kubeconfig_secret(recorder, secret_name(client, existing, server, namespace), config)
    bound = recorder.apply(bindings.binding(name, secret, claims), API_SERVICE_BINDINGS)
    result = {}
    if sync_crd:
        wanted = bindings.crd_from_export(api_export, bound)
        before = len(recorder.results)
        # The dry run's answer stands for the write only when it had the real owner.
        recorder.apply(wanted, definition_wait=wait_timeout, answer=answers[-1] if existing else None)
        result["crd"] = {"name": name, "action": recorder.results[before]["action"],
                         "versions": [version["name"] for version in wanted["spec"]["versions"]]}
    bound = write_binding_status(recorder, bindings.binding(name, secret, claims), bound, pretty_name,
                                 new=existing is None)
    result.update(binding=bound, conditions=(bound.get("status") or {}).get("conditions") or [],
                  rejected_claims=[api_name(claim.get("group"), claim["resource"]) for claim in claims if claim["state"] == "Rejected"])
    return result


def require_accepted_kinds_served(client, name, claims):
    """ConfigError for an accepted claim on a kind the app cluster does not serve: nothing of it could sync."""
    for claim in claims:
        if claim["state"] == "Accepted" and client.resource_by_plural(bindings.claim_api_version(claim),
                                                                      claim["resource"]) is None:
            raise ConfigError("The export %s claims %s in %s, which %s does not serve, so no object of it could be "
                              "synced. Install that kind's CRD on the app cluster first, or name the claims to accept "
                              "in accept_claims without this one." % (
                                  name, claim["resource"], bindings.claim_api_version(claim), client.label))


def write_kubeconfig_secret(recorder, name, config):
    """The binding's kubeconfig Secret `name` holding `config`; its name."""
    text = yaml.safe_dump(config, default_flow_style=False, sort_keys=False)
    # Forced: the konnector copies a rotated kubeconfig into the same key, and this run's is the newer.
    recorder.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": name, "namespace": bindings.BIND_NAMESPACE},
                    "data": {bindings.KUBECONFIG_KEY: base64.b64encode(text.encode("utf-8")).decode("ascii")}}, force=True)
    return name


def write_binding_status(recorder, binding, bound, pretty_name, new):
    """The APIServiceBinding `bound` (as applied) with the status klutch_binding writes; `new` when it was created
    in this run, which check mode only dry-ran."""
    status = bindings.binding_status(pretty_name, now(), bound.get("status"))
    if new and recorder.check_mode:
        return dict(bound, status=status)  # a dry-run binding has no status subresource to dry-run against
    return recorder.apply(dict(binding, status=status), API_SERVICE_BINDINGS, subresource="status")


def rejected_claims_warning(name, rejected):
    """What a user who did not list a claim should know: objects of that kind do not cross."""
    return ("Binding %s rejects the permission claims on %s, which accept_claims does not list: objects of those "
            "kinds do not cross between the clusters (a claim on secrets owned by the provider brings the "
            "connection Secrets). List each kind you consent to in accept_claims." % (name, ", ".join(rejected)))


def unbind(client, recorder, name, delete_crd):
    """Remove the binding `name`, its konnector rights and, unless another binding uses it, its kubeconfig
    Secret; its instances are released, and with `delete_crd` its CRD goes, and every instance with it."""
    bound = client.get(API_SERVICE_BINDINGS, name, bindings.BIND_NAMESPACE)
    recorder.delete(API_SERVICE_BINDINGS, name, bindings.BIND_NAMESPACE)
    if bound is not None:
        secret = bound["spec"]["kubeconfigSecretRef"]["name"]
        others = [item for item in client.list(API_SERVICE_BINDINGS, bindings.BIND_NAMESPACE)[0]
                  if item["metadata"]["name"] != name and item["spec"]["kubeconfigSecretRef"]["name"] == secret]
        if not others:
            recorder.delete(SECRETS, secret, bindings.BIND_NAMESPACE)
    for _into, role_name in bindings.konnector_role_names(name):
        recorder.delete(CLUSTER_ROLES, role_name)
    for obj in sync.release_instances(client, name):
        recorder.updated(obj)
    if delete_crd:
        recorder.delete(CUSTOM_RESOURCE_DEFINITIONS, name)
    return {}


def bind_app_cluster(app, control_plane, check_mode, client_for, *, options, services, wait_timeout, then_sync):
    """klutch_bind: export `services` (group, resource, accept_claims) to this app cluster as the consumer of
    `options` on the control plane, bind each with the consumer's kubeconfig, then, with `then_sync`, sync once.
    (result, the sync's write errors); the result's `results` name each object of either cluster (`cluster`:
    control_plane or app_cluster)."""
    if not services:
        raise ConfigError("services is empty: name the APIs (group and resource) to bind.")
    require_binding_api(app)
    namespace = app.get(NAMESPACES, bindings.BIND_NAMESPACE)
    if namespace is None:
        raise ConfigError("%s has no namespace %s, from whose uid its cluster id comes: run the klutch.bind.konnector "
                          "role on it first." % (app.label, bindings.BIND_NAMESPACE))
    cluster_id = bindings.cluster_id(namespace["metadata"]["uid"])
    services = dict((api_name(service["group"], service["resource"]), service) for service in services)
    exported, run = export.export(control_plane, check_mode, options, cluster_id,
                                  [(service["group"], service["resource"]) for service in services.values()])
    kubeconfig = exported.get("kubeconfig")  # none in check mode before the consumer has credentials
    new_exports = set(entry["name"] for entry in exported["exports"] if entry.get("action") == "created")
    recorder = Recorder(app, check_mode)
    result = {"cluster": app.label, "cluster_id": cluster_id, "consumer_namespace": exported["consumer_namespace"],
              "exports": exported["exports"], "bindings": {}, "synced": {}, "operations": []}
    for name, service in services.items():
        if kubeconfig is None or (check_mode and name in new_exports):  # the export is only a dry run
            planned_binding(recorder, name)
            result["bindings"][name] = {"conditions": []}
            continue
        bound = bind(app, recorder, client_for, name=name, kubeconfig=kubeconfig, sync_crd=True,
                     accept_claims=service["accept_claims"], wait_timeout=wait_timeout)
        result["bindings"][name] = {"crd": bound.get("crd"), "conditions": bound["conditions"],
                                    "rejected_claims": bound["rejected_claims"]}
    written, errors = 0, []
    # The bindings there are: in check mode a new one is only a dry run, with nothing to sync yet.
    bound_now = set(item["metadata"]["name"] for item in app.list(API_SERVICE_BINDINGS, bindings.BIND_NAMESPACE)[0])
    synced = [name for name in services if name in bound_now]
    if then_sync and synced:
        written, errors = sync.sync_once(app, synced, client_for, True, sync.CONCURRENCY, result)
    result["results"] = ([dict(entry, cluster="control_plane") for entry in run.results]
                         + [dict(entry, cluster="app_cluster") for entry in recorder.results])
    result["diff"] = run.diffs + recorder.diffs
    result["changed"] = run.changed or recorder.changed or written > 0 or (check_mode and bool(result["operations"]))
    return result, errors


def unbind_app_cluster(app, control_plane, check_mode, *, options, services, delete_crds, control_plane_cleanup):
    """klutch_bind state=absent: each service's binding goes from the app cluster (all of them when
    `services` is empty), its CRD and with it every local instance only with delete_crds; on
    the control plane nothing goes unless control_plane_cleanup asks: this consumer's exports and
    requests of those services (exports), or its namespaces with everything in them (everything).
    The result's `results` name each object of either cluster, as bind_app_cluster's do."""
    namespace = app.get(NAMESPACES, bindings.BIND_NAMESPACE)
    names = [api_name(service["group"], service["resource"]) for service in services]
    if not names and app.resource_for(API_SERVICE_BINDINGS.api_version, API_SERVICE_BINDINGS.kind) is not None:
        names = [item["metadata"]["name"] for item in app.list(API_SERVICE_BINDINGS, bindings.BIND_NAMESPACE)[0]]
    recorder = Recorder(app, check_mode)
    for name in names:
        unbind(app, recorder, name, delete_crds)
    result = {"cluster": app.label, "unbound": names, "consumer_namespace": None, "exports": []}
    run = None
    if control_plane_cleanup != "none" and namespace is not None:
        everything = control_plane_cleanup == "everything"
        cluster_id = bindings.cluster_id(namespace["metadata"]["uid"])
        withdrawn, run = export.withdraw(
            control_plane, check_mode, options, cluster_id, delete_namespace=everything,
            apis=[] if everything else [(service["group"], service["resource"]) for service in services])
        result.update(cluster_id=cluster_id, consumer_namespace=withdrawn["consumer_namespace"],
                      exports=withdrawn["exports"])
    result["results"] = ([dict(entry, cluster="control_plane") for entry in (run.results if run else [])]
                         + [dict(entry, cluster="app_cluster") for entry in recorder.results])
    result["diff"] = (run.diffs if run else []) + recorder.diffs
    result["changed"] = recorder.changed or bool(run and run.changed)
    return result


def bind_request(app, control_plane, check_mode, client_for, params):
    """klutch_bind: its `state` of the app cluster's `services`. (result, the sync's write errors)."""
    options = export.ExportOptions.from_params(params)
    if params["state"] == "absent":
        return unbind_app_cluster(app, control_plane, check_mode, options=options, services=params["services"],
                                  delete_crds=params["delete_crds"],
                                  control_plane_cleanup=params["control_plane_cleanup"]), []
    return bind_app_cluster(app, control_plane, check_mode, client_for, options=options, services=params["services"],
                            wait_timeout=params["wait_timeout"], then_sync=params["sync"])


def warnings(result):
    """What a user of klutch_bind should hear of its result: removals withheld, claims rejected."""
    return list(result.get("removals_withheld", {}).values()) + [
        rejected_claims_warning(name, binding["rejected_claims"])
        for name, binding in sorted(result.get("bindings", {}).items()) if binding.get("rejected_claims")]
