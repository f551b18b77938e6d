# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exporting APIs to one consumer on the control plane, as Klutch's backend serves a bind: namespace,
credentials, requests, exports, namespace mapping and RBAC (`export`), withdrawing them (`withdraw`) and
revoking the consumer's credentials (`revoke_consumer`). klutch_export_request and klutch_bind run it;
the backend agent keeps the same objects with serve.py, and plan/consumers.py decides them."""

import base64
import dataclasses
import datetime
import itertools
import random
from typing import Optional

from ansible_collections.klutch.bind.plugins.module_utils import validate
from ansible_collections.klutch.bind.plugins.module_utils.k8s.apply import Recorder, TIME_FORMAT, now
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError, ConfigError, Conflict
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CLUSTER_ROLES,
    CLUSTER_ROLE_BINDINGS,
    NAMESPACES,
    SECRETS,
    SERVICE_ACCOUNTS,
    api_name,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import (
    API_SERVICE_EXPORTS,
    API_SERVICE_EXPORT_REQUESTS,
    CLUSTER_BINDINGS,
)
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import serve
from ansible_collections.klutch.bind.plugins.module_utils.plan import consumers

try:
    import yaml
except ImportError:  # reported by the module
    yaml = None


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How one consumer is served: the options klutch_export_request and klutch_bind share (their `export`
    documentation fragment), each given, as the modules' argument specs default them."""

    consumer: str
    consumer_scope: str
    external_address: Optional[str]
    external_ca_data: Optional[str]
    external_server_name: Optional[str]
    provider_pretty_name: str
    previous_cluster_id: Optional[str]
    rotate_after: Optional[str]
    rotation_grace: int
    reinstate: bool
    wait_timeout: int  # for the token controller to issue a new token

    @classmethod
    def from_params(cls, params):
        return cls(**{field.name: params[field.name] for field in dataclasses.fields(cls)})


class Run(Recorder):
    """One pass for one consumer of one app cluster: its options, its client, and what it changed."""

    def __init__(self, client, check_mode, options, cluster_id):
        super(Run, self).__init__(client, check_mode)
        self.options = options
        self.cluster_id = cluster_id


NAME_ATTEMPTS = 20  # candidates for a new consumer namespace's name before giving up


def namespace_object(name, identity, revoked_at=None):
    annotations = {consumers.IDENTITY_ANNOTATION: identity}
    if revoked_at:
        annotations[consumers.REVOKED_ANNOTATION] = revoked_at
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "annotations": annotations}}


def find_earlier(run, consumer):
    """For a consumer without a namespace under its identity: the one it was bound under with another
    cluster id, when previous_cluster_id names it (read into `consumer`; True).

    Its app cluster's klutch-bind namespace was recreated, say, and with it the cluster id: a new
    namespace would provision every instance again, empty. So a namespace under another cluster id
    that previous_cluster_id does not name is refused, before any write.
    """
    consumer_name, cluster_id = run.options.consumer, run.cluster_id
    previous = run.options.previous_cluster_id
    others = consumers.other_cluster_ids(consumer.namespaces.values(), consumer_name, cluster_id)
    if previous and previous in [cluster_id for _name, cluster_id in others]:
        consumer.namespace = consumers.consumer_namespace(consumer.namespaces.values(),
                                                          consumers.consumer_identity(consumer_name, previous))
        consumer.read(run.client)
        return True
    if previous:
        raise ConfigError("previous_cluster_id is %s, but no namespace on %s holds consumer identity %s, and none "
                          "holds %s yet. Set previous_cluster_id to the cluster id the consumer was bound under, or "
                          "remove it to bind %s as a new consumer." % (
                              previous, run.client.label, consumers.consumer_identity(consumer_name, previous),
                              consumers.consumer_identity(consumer_name, cluster_id), consumer_name))
    if others:
        held = ", ".join("%s (identity %s)" % (name, consumers.consumer_identity(consumer_name, cluster_id))
                         for name, cluster_id in others)
        ids = [cluster_id for _name, cluster_id in others]
        raise ConfigError(
            "Consumer %s is bound on %s under another cluster id than %s: namespace %s. Its app cluster's id "
            "changed (its klutch-bind namespace was recreated), or another cluster uses the same consumer name. "
            "Nothing was written. To keep that namespace and its instances, set previous_cluster_id: %s, which "
            "re-annotates it with %s; for another cluster, use another consumer name." % (
                consumer_name, run.client.label, cluster_id, held,
                ids[0] if len(ids) == 1 else "one of " + ", ".join(ids),
                consumers.consumer_identity(consumer_name, cluster_id)))
    return False


def create_namespace(run, consumer, identity):
    """A new consumer namespace under a name derived from its identity, created (never applied, which
    would take over another's): when a run for the same consumer created it first, that one is used."""
    for name in itertools.islice(consumers.consumer_namespace_names(identity), NAME_ATTEMPTS):
        if name in consumer.namespaces:  # another identity's
            continue
        try:
            return name, run.create(namespace_object(name, identity))
        except Conflict:
            pass
        current = run.client.get(NAMESPACES, name)
        if current is not None and (current["metadata"].get("annotations") or {}).get(
                consumers.IDENTITY_ANNOTATION) == identity:
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
    in_namespace = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": consumers.BINDER, "namespace": namespace}},
                    consumers.token_secret(current, namespace)]
    if is_new and run.check_mode:
        for obj in in_namespace:
            run.planned(obj)
        return None
    for obj in in_namespace:
        run.apply(obj, **serve.OURS)
    rotate_after = validate.age_seconds(run.options.rotate_after)
    moment = datetime.datetime.now(datetime.timezone.utc)
    if rotate_after is not None and consumers.rotation_due(consumer.secrets.get(current), rotate_after, moment):
        current = rotate_token(run, consumer, current, moment)
    serve.retire_tokens(run, consumer, current, moment)
    return issued_token(run, namespace, current)


def issued_token(run, namespace, name):
    """The token Secret once the token controller filled it in (in check mode: as it is, or None)."""
    if run.check_mode:
        token_secret = run.client.get(SECRETS, name, namespace)
        return token_secret if ((token_secret or {}).get("data") or {}).get("token") else None
    return run.client.wait(SECRETS, name, namespace, lambda obj: bool(((obj or {}).get("data") or {}).get("token")),
                           run.options.wait_timeout, "issued a token by the token controller")


def rotate_token(run, consumer, old, moment):
    """A new token Secret for the consumer; the old one retires after rotation_grace (at once for 0), so that
    konnectors that still hold it keep working until they have the new kubeconfig. Returns the new name."""
    namespace = consumer.namespace
    new = "%s-%s" % (consumers.BINDER, "".join(random.choices(consumers.NAME_CHARACTERS, k=5)))
    run.apply(consumers.token_secret(new, namespace), **serve.OURS)
    retire_at = moment + datetime.timedelta(seconds=run.options.rotation_grace)
    retiring = run.apply(consumers.token_secret(old, namespace, retire_at.strftime(TIME_FORMAT)), **serve.OURS)
    consumer.secrets[old] = retiring
    return new


def consumer_kubeconfig(run, namespace, token_secret):
    options, data = run.options, token_secret["data"]
    server = options.external_address or run.client.configuration.host
    config = consumers.kubeconfig(server, options.external_ca_data or data.get("ca.crt"),
                                  base64.b64decode(data["token"]).decode("utf-8"), namespace, options.external_server_name)
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
    return serve.write_request_status(run, consumer, name, stored)


def present(run, identity, apis):
    consumer = serve.Consumer.by_identity(run.client, identity)
    refuse_revoked(run, consumer)
    adopted = consumer.namespace is None and find_earlier(run, consumer)
    catalog = serve.Catalog(run.client)
    apis = dict((api_name(group, resource), catalog.api(group, resource, run.options.consumer_scope,
                                                        consumer.exports.get(api_name(group, resource))))
                for group, resource in apis)
    known = consumer.namespace
    token_secret = ensure_consumer(run, consumer, identity, adopted)
    namespace = consumer.namespace
    exports = dict((name, consumers.api_service_export(crd, namespace, run.options.consumer_scope, claims,
                                                       existing=consumer.exports.get(name)))
                   for name, (crd, claims) in apis.items())
    result = {"consumer_namespace": namespace, "request": {}, "exports": [
        {"name": name, "hash": export["metadata"]["annotations"][consumers.SPEC_HASH_ANNOTATION]}
        for name, export in exports.items()]}
    cluster_binding = {"apiVersion": CLUSTER_BINDINGS.api_version, "kind": CLUSTER_BINDINGS.kind,
                       "metadata": {"name": "cluster", "namespace": namespace},
                       "spec": {"kubeconfigSecretRef": {"name": consumers.KUBECONFIG_SECRET, "key": "kubeconfig"},
                                "providerPrettyName": run.options.provider_pretty_name}}
    if token_secret is None:  # check mode before the consumer or its token exists
        result["consumer_namespace"] = known
        for obj in [cluster_binding] + list(exports.values()):
            run.planned(obj)
        return result
    kubeconfig = write_kubeconfig_secret(run, namespace, token_secret)
    run.apply(cluster_binding, CLUSTER_BINDINGS, **serve.OURS)
    for name, entry in zip(apis, result["exports"]):
        before = len(run.results)
        run.apply(exports[name], API_SERVICE_EXPORTS, before=consumer.exports.get(name), **serve.OURS)
        entry["action"] = run.results[before]["action"]
    consumer.exports.update(exports)
    serve.grant_namespaces(run, consumer, consumer.exports.values(), run.options.consumer_scope)
    # A request is marked Succeeded once its export and the consumer's rights to it exist.
    for name, (crd, claims) in apis.items():
        request = consumers.export_request(name, namespace, crd["spec"]["group"], crd["spec"]["names"]["plural"], claims)
        result["request"][name] = {"phase": serve_request(run, consumer, name, request)}
    if consumer.unmapped:
        raise consumer.unmapped_error()
    result["kubeconfig"] = kubeconfig
    return result


def refuse_revoked(run, consumer):
    """ConfigError for a revoked consumer, unless the run reinstates it."""
    if consumer.revoked_at() and not run.options.reinstate:
        raise ConfigError("Consumer %s was revoked at %s (namespace %s on %s): its credentials were deleted, its "
                          "data kept. Nothing was written. Set reinstate: true to issue new credentials, or leave "
                          "it revoked." % (run.options.consumer, consumer.revoked_at(), consumer.namespace,
                                           run.client.label))


def write_kubeconfig_secret(run, namespace, token_secret):
    """The consumer's kubeconfig Secret, naming the token Secret it carries; the kubeconfig."""
    kubeconfig = consumer_kubeconfig(run, namespace, token_secret)
    carried = token_secret["metadata"]["name"]
    run.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": dict({"name": consumers.KUBECONFIG_SECRET, "namespace": namespace}, **(
                   {"annotations": {consumers.TOKEN_SECRET_ANNOTATION: carried}} if carried != consumers.BINDER else {})),
               "data": {"kubeconfig": base64.b64encode(kubeconfig.encode("utf-8")).decode("ascii")}}, **serve.OURS)
    return kubeconfig


def absent(run, identity, apis, delete_namespace):
    consumer = serve.Consumer.by_identity(run.client, identity)
    namespace = consumer.namespace
    result = {"consumer_namespace": namespace, "exports": []}
    if namespace is None:
        return result
    names = set(api_name(group, resource) for group, resource in apis)
    removed = sorted(set(consumer.exports) | set(consumer.requests)) if not names else sorted(names)
    for name in removed:
        if name in consumer.exports:
            run.delete(API_SERVICE_EXPORTS, name, namespace)
            result["exports"].append({"name": name, "action": "deleted"})
        if name in consumer.requests:
            run.delete(API_SERVICE_EXPORT_REQUESTS, name, namespace)
    if delete_namespace and not names:
        for target in consumer.mapped() + [namespace]:
            run.delete(NAMESPACES, target)
        for role in (consumers.cluster_wide_role(namespace), consumers.dynamic_role(namespace)):
            run.delete(CLUSTER_ROLE_BINDINGS, role)
            run.delete(CLUSTER_ROLES, role)
        return result
    remaining = [export for name, export in consumer.exports.items() if name not in removed]
    serve.rbac(run, consumer, remaining, run.options.consumer_scope)
    return result


def revoke(run, identity):
    """Revoke the consumer's credentials: its ServiceAccount and every token Secret of it go, so every
    token it holds is refused from now on; its namespace is marked revoked and all its data is kept."""
    consumer = serve.Consumer.by_identity(run.client, identity)
    namespace = consumer.namespace
    if namespace is None:
        raise ConfigError("Consumer %s (identity %s) has no namespace on %s: there is nothing to revoke. Check "
                          "consumer and cluster_id." % (run.options.consumer, identity, run.client.label))
    marked = consumer.namespaces[namespace]
    if not consumer.revoked_at():
        marked = run.apply(namespace_object(namespace, identity, now()), before=marked, force=True)
    for secret in consumer.token_secrets():
        run.delete(SECRETS, secret["metadata"]["name"], namespace, before=secret)
    run.delete(SERVICE_ACCOUNTS, consumers.BINDER, namespace)
    return {"consumer_namespace": namespace, "exports": [], "revoked_at": consumers.revoked_at(marked)}


def start(client, check_mode, options, cluster_id):
    """The run for this consumer of app cluster `cluster_id`, and its identity, once the names are sound and the
    control plane serves Klutch's APIs; nothing is written before."""
    validate.require_consumer(options.consumer, cluster_id)
    if options.previous_cluster_id is not None:
        validate.require_consumer(options.consumer, options.previous_cluster_id, "previous_cluster_id")
    serve.require_klutch_apis(client)
    return Run(client, check_mode, options, cluster_id), consumers.consumer_identity(options.consumer, cluster_id)


def export(client, check_mode, options, cluster_id, apis):
    """Export `apis`, (group, plural resource) pairs, to the consumer of `options` for app cluster `cluster_id`:
    its namespace, credentials, exports, requests and RBAC. (result, run)."""
    if not apis:
        raise ConfigError("resources is empty: name the APIs (group and resource) to export to %s." % options.consumer)
    run, identity = start(client, check_mode, options, cluster_id)
    return present(run, identity, apis), run


def withdraw(client, check_mode, options, cluster_id, apis=(), delete_namespace=False):
    """Withdraw `apis` from the consumer (all of them when empty); with `delete_namespace`, remove the consumer
    with its namespaces and everything in them. (result, run)."""
    if delete_namespace and apis:
        raise ConfigError("delete_namespace removes consumer %s with all its APIs, but resources names only some of "
                          "them. Leave resources out to remove the consumer, or set delete_namespace: false to "
                          "withdraw only those APIs." % options.consumer)
    run, identity = start(client, check_mode, options, cluster_id)
    return absent(run, identity, apis, delete_namespace), run


def revoke_consumer(client, check_mode, options, cluster_id):
    """Revoke the consumer's credentials, keeping its data. (result, run)."""
    run, identity = start(client, check_mode, options, cluster_id)
    return revoke(run, identity), run


def export_request(client, check_mode, params):
    """klutch_export_request: its `state` of the consumer's `resources`. (result, run)."""
    options, apis = ExportOptions.from_params(params), [(item["group"], item["resource"]) for item in params["resources"]]
    if params["state"] == "present":
        return export(client, check_mode, options, params["cluster_id"], apis)
    if params["state"] == "absent":
        return withdraw(client, check_mode, options, params["cluster_id"], apis, params["delete_namespace"])
    return revoke_consumer(client, check_mode, options, params["cluster_id"])
