# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One consumer's export on the control plane, as Klutch's backend serves a bind: namespace,
credentials, requests, exports, namespace mapping and RBAC. klutch_export_request and klutch_bind
run it; the backend agent reconciles the same objects with backend.py."""

import base64
import datetime
import itertools
import random

from ansible_collections.klutch.bind.plugins.module_utils import backend, validate
from ansible_collections.klutch.bind.plugins.module_utils import control_plane as plan
from ansible_collections.klutch.bind.plugins.module_utils.k8s.apply import TIME_FORMAT, Recorder, now
from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import require_url
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError, ConfigError, Conflict
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    NAMESPACES,
    SECRETS,
    SERVICE_ACCOUNTS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import (
    API_SERVICE_EXPORT_REQUESTS,
    API_SERVICE_EXPORTS,
    CLUSTER_BINDINGS,
)

try:
    import yaml
except ImportError:  # reported by the module
    yaml = None


class Run(Recorder):
    """One pass for one consumer: the export options (klutch_export_request's), its client, and what it changed."""

    def __init__(self, client, check_mode, params):
        super(Run, self).__init__(client, check_mode)
        self.params = params


# An API to export, by its CRD's group and plural resource.
API_SPEC = dict(
    group=dict(type="str", required=True),
    resource=dict(type="str", required=True),
)
# The options of one consumer's export (doc fragment klutch.bind.export).
EXPORT_ARG_SPEC = dict(
    consumer=dict(type="str", required=True),
    consumer_scope=dict(type="str", choices=["Namespaced", "Cluster"], default="Namespaced"),
    external_address=dict(type="str"),
    external_ca_data=dict(type="str"),
    external_server_name=dict(type="str"),
    provider_pretty_name=dict(type="str", default="klutch.bind"),
    previous_cluster_id=dict(type="str"),
    rotate_after=dict(type="str"),
    rotation_grace=dict(type="int", default=300),
    reinstate=dict(type="bool", default=False),
)
# Checks of those options, run by the modules before they connect.
EXPORT_CHECKS = {
    "external_address": require_url, "external_ca_data": validate.certificate_data,
    "external_server_name": validate.server_name, "provider_pretty_name": validate.text,
    "consumer": validate.consumer_name,
    "wait_timeout": validate.positive(),
    "rotate_after": validate.age, "rotation_grace": validate.positive(least=0),
}
NAME_ATTEMPTS = 20  # candidates for a new consumer namespace's name before giving up


def namespace_object(name, identity, revoked_at=None):
    annotations = {plan.IDENTITY_ANNOTATION: identity}
    if revoked_at:
        annotations[plan.REVOKED_ANNOTATION] = revoked_at
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "annotations": annotations}}


def find_earlier(run, consumer):
    """For a consumer without a namespace under its identity: the one it was bound under with another
    cluster id, when previous_cluster_id names it (read into `consumer`; True).

    Its app cluster's klutch-bind namespace was recreated, say, and with it the cluster id: a new
    namespace would provision every instance again, empty. So a namespace under another cluster id
    that previous_cluster_id does not name is refused, before any write.
    """
    params = run.params
    previous = params["previous_cluster_id"]
    others = plan.other_cluster_ids(consumer.namespaces.values(), params["consumer"], params["cluster_id"])
    if previous and previous in [cluster_id for _name, cluster_id in others]:
        consumer.namespace = plan.consumer_namespace(consumer.namespaces.values(),
                                                     plan.consumer_identity(params["consumer"], previous))
        consumer.read(run.client)
        return True
    if previous:
        raise ConfigError("previous_cluster_id is %s, but no namespace on %s holds consumer identity %s, and none "
                          "holds %s yet. Set previous_cluster_id to the cluster id the consumer was bound under, or "
                          "remove it to bind %s as a new consumer." % (
                              previous, run.client.label, plan.consumer_identity(params["consumer"], previous),
                              plan.consumer_identity(params["consumer"], params["cluster_id"]), params["consumer"]))
    if others:
        held = ", ".join("%s (identity %s)" % (name, plan.consumer_identity(params["consumer"], cluster_id))
                         for name, cluster_id in others)
        ids = [cluster_id for _name, cluster_id in others]
        raise ConfigError(
            "Consumer %s is bound on %s under another cluster id than %s: namespace %s. Its app cluster's id "
            "changed (its klutch-bind namespace was recreated), or another cluster uses the same consumer name. "
            "Nothing was written. To keep that namespace and its instances, set previous_cluster_id: %s, which "
            "re-annotates it with %s; for another cluster, use another consumer name." % (
                params["consumer"], run.client.label, params["cluster_id"], held,
                ids[0] if len(ids) == 1 else "one of " + ", ".join(ids),
                plan.consumer_identity(params["consumer"], params["cluster_id"])))
    return False


def create_namespace(run, consumer, identity):
    """A new consumer namespace under a name derived from its identity, created (never applied, which
    would take over another's): when a run for the same consumer created it first, that one is used."""
    for name in itertools.islice(plan.consumer_namespace_names(identity), NAME_ATTEMPTS):
        if name in consumer.namespaces:  # another identity's
            continue
        try:
            return name, run.create(namespace_object(name, identity))
        except Conflict:
            pass
        current = run.client.get(NAMESPACES, name)
        if current is not None and (current["metadata"].get("annotations") or {}).get(
                plan.IDENTITY_ANNOTATION) == identity:
            return name, current
    raise ClusterError("Cannot name a namespace for consumer %s on %s: its first %d candidate names are taken by "
                       "other namespaces." % (identity, run.client.label, NAME_ATTEMPTS))


def ensure_consumer(run, consumer, identity, adopted=False):
    """The consumer namespace, ServiceAccount and current token Secret; the token Secret once issued.

    A namespace found by the identity is as it should be; an `adopted` one, found under the consumer's
    earlier cluster id, takes the new identity (by force: Klutch's backend may own the annotation).
    A token older than rotate_after is replaced by a new one, and the old one kept for rotation_grace.
    None for the token in check mode when it is not there yet: nothing that needs it can be planned.
    """
    is_new = consumer.namespace is None
    if is_new:
        namespace, created = create_namespace(run, consumer, identity)
    else:
        namespace, created = consumer.namespace, consumer.namespaces[consumer.namespace]
        if adopted or consumer.revoked_at():  # reinstated: the revocation mark goes
            created = run.apply(namespace_object(namespace, identity), before=created, force=True)
    consumer.namespace, consumer.namespaces[namespace] = namespace, created
    current = consumer.current_token()
    in_namespace = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": plan.BINDER, "namespace": namespace}},
                    plan.token_secret(current, namespace)]
    if is_new and run.check_mode:
        for obj in in_namespace:
            run.planned(obj)
        return None
    for obj in in_namespace:
        run.apply(obj, **backend.OURS)
    rotate_after = validate.age_seconds(run.params.get("rotate_after"))
    moment = datetime.datetime.now(datetime.timezone.utc)
    if rotate_after is not None and plan.rotation_due(consumer.secrets.get(current), rotate_after, moment):
        current = rotate_token(run, consumer, current, moment)
    backend.retire_tokens(run, consumer, current, moment)
    return issued_token(run, namespace, current)


def issued_token(run, namespace, name):
    """The token Secret once the token controller filled it in (in check mode: as it is, or None)."""
    if run.check_mode:
        token_secret = run.client.get(SECRETS, name, namespace)
        return token_secret if ((token_secret or {}).get("data") or {}).get("token") else None
    return run.client.wait(SECRETS, name, namespace, lambda obj: bool(((obj or {}).get("data") or {}).get("token")),
                           run.params["wait_timeout"], "issued a token by the token controller")


def rotate_token(run, consumer, old, moment):
    """A new token Secret for the consumer; the old one retires after rotation_grace (at once for 0), so that
    konnectors that still hold it keep working until they have the new kubeconfig. Returns the new name."""
    namespace = consumer.namespace
    new = "%s-%s" % (plan.BINDER, "".join(random.choices(plan.NAME_CHARACTERS, k=5)))
    run.apply(plan.token_secret(new, namespace), **backend.OURS)
    retire_at = moment + datetime.timedelta(seconds=run.params["rotation_grace"])
    retiring = run.apply(plan.token_secret(old, namespace, retire_at.strftime(TIME_FORMAT)), **backend.OURS)
    consumer.secrets[old] = retiring
    return new


def consumer_kubeconfig(run, namespace, token_secret):
    params = run.params
    data = token_secret["data"]
    server = params["external_address"] or run.client.configuration.host
    config = plan.kubeconfig(server, params["external_ca_data"] or data.get("ca.crt"),
                             base64.b64decode(data["token"]).decode("utf-8"), namespace, params["external_server_name"])
    return yaml.safe_dump(config, default_flow_style=False, sort_keys=False)


def serve_request(run, consumer, name, request):
    """Klutch's request controller: a request for an API without an export is created and marked Succeeded.

    A request that Klutch's backend already collected (its export exists) is not made again, and a
    stored request's resources, which are immutable, are never rewritten.
    """
    stored = consumer.requests.get(name)
    if stored is None and name in consumer.exports:
        return "Succeeded"
    if stored is None:
        stored = run.apply(request, API_SERVICE_EXPORT_REQUESTS, before=None)
        if run.check_mode:  # only dry-run created: its status is written with it on a real run
            return "Succeeded"
    return backend.write_request_status(run, consumer, name, stored)


def present(run, identity):
    params = run.params
    consumer = backend.Consumer.by_identity(run.client, identity)
    refuse_revoked(run, consumer)
    adopted = consumer.namespace is None and find_earlier(run, consumer)
    catalog = backend.Catalog(run.client)
    apis = dict((plan.api_name(item["group"], item["resource"]),
                 catalog.api(item["group"], item["resource"], params["consumer_scope"],
                             consumer.exports.get(plan.api_name(item["group"], item["resource"]))))
                for item in params["resources"])
    known = consumer.namespace
    token_secret = ensure_consumer(run, consumer, identity, adopted)
    namespace = consumer.namespace
    exports = dict((name, plan.api_service_export(crd, namespace, params["consumer_scope"], claims,
                                                  existing=consumer.exports.get(name)))
                   for name, (crd, claims) in apis.items())
    result = {"consumer_namespace": namespace, "request": {}, "exports": [
        {"name": name, "hash": export["metadata"]["annotations"][plan.SPEC_HASH_ANNOTATION]}
        for name, export in exports.items()]}
    cluster_binding = {"apiVersion": CLUSTER_BINDINGS.api_version, "kind": CLUSTER_BINDINGS.kind,
                       "metadata": {"name": "cluster", "namespace": namespace},
                       "spec": {"kubeconfigSecretRef": {"name": plan.KUBECONFIG_SECRET, "key": "kubeconfig"},
                                "providerPrettyName": params["provider_pretty_name"]}}
    if token_secret is None:  # check mode before the consumer or its token exists
        result["consumer_namespace"] = known
        for obj in [cluster_binding] + list(exports.values()):
            run.planned(obj)
        return result
    kubeconfig = write_kubeconfig_secret(run, namespace, token_secret)
    run.apply(cluster_binding, CLUSTER_BINDINGS, **backend.OURS)
    for name, entry in zip(apis, result["exports"]):
        before = len(run.results)
        run.apply(exports[name], API_SERVICE_EXPORTS, before=consumer.exports.get(name), **backend.OURS)
        entry["action"] = run.results[before]["action"]
    consumer.exports.update(exports)
    backend.grant_namespaces(run, consumer, consumer.exports.values(), params["consumer_scope"])
    # A request is marked Succeeded once its export and the consumer's rights to it exist.
    for name, (crd, claims) in apis.items():
        request = plan.export_request(name, namespace, crd["spec"]["group"], crd["spec"]["names"]["plural"], claims)
        result["request"][name] = {"phase": serve_request(run, consumer, name, request)}
    if consumer.unmapped:
        raise consumer.unmapped_error()
    result["kubeconfig"] = kubeconfig
    return result


def refuse_revoked(run, consumer):
    """ConfigError for a revoked consumer, unless the run reinstates it."""
    if consumer.revoked_at() and not run.params["reinstate"]:
        raise ConfigError("Consumer %s was revoked at %s (namespace %s on %s): its credentials were deleted, its "
                          "data kept. Nothing was written. Set reinstate: true to issue new credentials, or leave "
                          "it revoked." % (run.params["consumer"], consumer.revoked_at(), consumer.namespace,
                                           run.client.label))


def write_kubeconfig_secret(run, namespace, token_secret):
    """The consumer's kubeconfig Secret, naming the token Secret it carries; the kubeconfig."""
    kubeconfig = consumer_kubeconfig(run, namespace, token_secret)
    carried = token_secret["metadata"]["name"]
    run.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": dict({"name": plan.KUBECONFIG_SECRET, "namespace": namespace}, **(
                   {"annotations": {plan.TOKEN_SECRET_ANNOTATION: carried}} if carried != plan.BINDER else {})),
               "data": {"kubeconfig": base64.b64encode(kubeconfig.encode("utf-8")).decode("ascii")}}, **backend.OURS)
    return kubeconfig


def absent(run, identity):
    params = run.params
    consumer = backend.Consumer.by_identity(run.client, identity)
    namespace = consumer.namespace
    result = {"consumer_namespace": namespace, "exports": []}
    if namespace is None:
        return result
    names = set(plan.api_name(item["group"], item["resource"]) for item in params["resources"])
    removed = sorted(set(consumer.exports) | set(consumer.requests)) if not names else sorted(names)
    for name in removed:
        if name in consumer.exports:
            run.delete(API_SERVICE_EXPORTS, name, namespace)
            result["exports"].append({"name": name, "action": "deleted"})
        if name in consumer.requests:
            run.delete(API_SERVICE_EXPORT_REQUESTS, name, namespace)
    if params["delete_namespace"] and not names:
        for target in consumer.mapped() + [namespace]:
            run.delete(NAMESPACES, target)
        for role in (plan.cluster_wide_role(namespace), plan.dynamic_role(namespace)):
            run.delete(CLUSTER_ROLE_BINDINGS, role)
            run.delete(CLUSTER_ROLES, role)
        return result
    remaining = [export for name, export in consumer.exports.items() if name not in removed]
    backend.rbac(run, consumer, remaining, params["consumer_scope"])
    return result


def revoke(run, identity):
    """Revoke the consumer's credentials: its ServiceAccount and every token Secret of it go, so every
    token it holds is refused from now on; its namespace is marked revoked and all its data is kept."""
    consumer = backend.Consumer.by_identity(run.client, identity)
    namespace = consumer.namespace
    if namespace is None:
        raise ConfigError("Consumer %s (identity %s) has no namespace on %s: there is nothing to revoke. Check "
                          "consumer and cluster_id." % (run.params["consumer"], identity, run.client.label))
    marked = consumer.namespaces[namespace]
    if not consumer.revoked_at():
        marked = run.apply(namespace_object(namespace, identity, now()), before=marked, force=True)
    for secret in consumer.token_secrets():
        run.delete(SECRETS, secret["metadata"]["name"], namespace, before=secret)
    run.delete(SERVICE_ACCOUNTS, plan.BINDER, namespace)
    return {"consumer_namespace": namespace, "exports": [], "revoked_at": plan.revoked_at(marked)}


def export(client, check_mode, params):
    """Export params["resources"] to the consumer (state present) or withdraw them (absent); (result, run)."""
    if params["state"] == "present" and not params["resources"]:
        raise ConfigError("resources is empty: name the APIs (group and resource) to export to %s." % params["consumer"])
    if params["state"] == "absent" and params.get("delete_namespace") and params["resources"]:
        raise ConfigError("delete_namespace removes consumer %s with all its APIs, but resources names only some of "
                          "them. Leave resources out to remove the consumer, or set delete_namespace: false to "
                          "withdraw only those APIs." % params["consumer"])
    validate.require_consumer(params["consumer"], params["cluster_id"])
    if params.get("previous_cluster_id") is not None:
        validate.require_consumer(params["consumer"], params["previous_cluster_id"], "previous_cluster_id")
    backend.require_klutch_apis(client)
    run = Run(client, check_mode, params)
    identity = plan.consumer_identity(params["consumer"], params["cluster_id"])
    return {"present": present, "absent": absent, "revoked": revoke}[params["state"]](run, identity), run
