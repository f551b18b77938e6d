# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One consumer's export on the control plane, as Klutch's backend serves a bind: namespace,
credentials, requests, exports, namespace mapping and RBAC. klutch_export_request and klutch_bind
run it; the backend agent reconciles the same objects with backend.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import random
import string

from ansible_collections.klutch.bind.plugins.module_utils import backend
from ansible_collections.klutch.bind.plugins.module_utils import control_plane as plan
from ansible_collections.klutch.bind.plugins.module_utils.apply import Recorder
from ansible_collections.klutch.bind.plugins.module_utils.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.resources import (
    API_SERVICE_EXPORT_REQUESTS,
    API_SERVICE_EXPORTS,
    CLUSTER_BINDINGS,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    NAMESPACES,
    SECRETS,
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


NAME_CHARACTERS = string.ascii_lowercase + string.digits
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
)


def new_namespace_name(existing):
    """cluster-<5 random characters>, as Kubernetes' generateName would make it, and not taken."""
    while True:
        name = "%s-%s" % (plan.NAMESPACE_PREFIX, "".join(random.sample(NAME_CHARACTERS, 5)))
        if name not in existing:
            return name


def ensure_consumer(run, consumer, identity):
    """The consumer namespace, ServiceAccount and token Secret; the token Secret once issued.

    None for the token in check mode when it is not there yet: nothing that needs it can be planned.
    """
    namespace = consumer.namespace or new_namespace_name(consumer.namespaces)
    created = run.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": namespace, "annotations": {plan.IDENTITY_ANNOTATION: identity}}},
        before=consumer.namespaces.get(namespace))
    is_new = consumer.namespace is None
    consumer.namespace, consumer.namespaces[namespace] = namespace, created
    in_namespace = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": plan.BINDER, "namespace": namespace}},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
         "metadata": {"name": plan.BINDER, "namespace": namespace,
                      "annotations": {"kubernetes.io/service-account.name": plan.BINDER}}},
    ]
    if is_new and run.check_mode:
        for obj in in_namespace:
            run.planned(obj)
        return None
    for obj in in_namespace:
        run.apply(obj)
    if run.check_mode:
        token_secret = run.client.get(SECRETS, plan.BINDER, namespace)
        return token_secret if ((token_secret or {}).get("data") or {}).get("token") else None
    return run.client.wait(SECRETS, plan.BINDER, namespace,
                           lambda obj: bool(((obj or {}).get("data") or {}).get("token")),
                           run.params["wait_timeout"], "issued a token by the token controller")


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
    catalog = backend.Catalog(run.client)
    apis = dict((plan.api_name(item["group"], item["resource"]),
                 catalog.api(item["group"], item["resource"], params["consumer_scope"],
                             consumer.exports.get(plan.api_name(item["group"], item["resource"]))))
                for item in params["resources"])
    known = consumer.namespace
    token_secret = ensure_consumer(run, consumer, identity)
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
    kubeconfig = consumer_kubeconfig(run, namespace, token_secret)
    run.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": plan.KUBECONFIG_SECRET, "namespace": namespace},
               "data": {"kubeconfig": base64.b64encode(kubeconfig.encode("utf-8")).decode("ascii")}})
    run.apply(cluster_binding, CLUSTER_BINDINGS)
    for (name, (crd, claims)), entry in zip(apis.items(), result["exports"]):
        request = plan.export_request(name, namespace, crd["spec"]["group"], crd["spec"]["names"]["plural"], claims)
        result["request"][name] = {"phase": serve_request(run, consumer, name, request)}
        before = len(run.results)
        run.apply(exports[name], API_SERVICE_EXPORTS, before=consumer.exports.get(name))
        entry["action"] = run.results[before]["action"]
    consumer.exports.update(exports)
    new = backend.map_namespaces(run, consumer)
    backend.rbac(run, consumer, consumer.exports.values(), params["consumer_scope"], new)
    result["kubeconfig"] = kubeconfig
    return result


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


def export(client, check_mode, params):
    """Export params["resources"] to the consumer (state present) or withdraw them (absent); (result, run)."""
    if params["state"] == "present" and not params["resources"]:
        raise ConfigError("resources is empty: name the APIs (group and resource) to export to %s." % params["consumer"])
    backend.require_klutch_apis(client)
    run = Run(client, check_mode, params)
    identity = plan.consumer_identity(params["consumer"], params["cluster_id"])
    return (present(run, identity) if params["state"] == "present" else absent(run, identity)), run
