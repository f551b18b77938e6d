#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: klutch_export_request
short_description: Export data-service APIs to one consumer (app cluster), as Klutch's backend does
version_added: 0.1.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - Does on the control plane what Klutch's backend does when an app cluster binds APIs, for one
    consumer, without a browser or an OIDC provider.
  - Finds the consumer's namespace by its identity annotation (O(consumer) and O(cluster_id)) or
    creates C(cluster-<random>); creates the ServiceAccount C(klutch-binder), its token Secret, the
    kubeconfig Secret C(kubeconfig) and C(ClusterBinding cluster).
  - For each of O(resources), checks that the CRD and an export template exist, then writes the
    C(APIServiceExportRequest) and the C(APIServiceExport) with the CRD snapshot, its hash, the
    informer scope and the template's permission claims, and marks the request Succeeded.
  - Grants least privilege, unlike Klutch; the static C(klutch-binder) role in the consumer
    namespace, and a C(klutch-binder-<namespace>) ClusterRole with the exported kinds and
    the claimed kinds (read-only for claims the provider owns), bound only in the namespaces mapped
    for the consumer (O(consumer_scope=Namespaced)) or cluster-wide (O(consumer_scope=Cluster)).
  - Maps each C(APIServiceNamespace) the consumer created to namespace C(<namespace>-<name>) with
    its RoleBinding, and records it in the object's status.
  - Re-running after the provider's CRD changed updates the snapshot and its hash.
  - Everything is checked before the first write; bad input changes nothing.
options:
  consumer:
    description:
      - Who binds, for example the app cluster's inventory name; with O(cluster_id) it forms the identity
        C(<consumer>#<cluster_id>) that finds the consumer's namespace again on every run.
    type: str
    required: true
  cluster_id:
    description:
      - The app cluster's id as Klutch derives it (from the UID of its C(klutch-bind) namespace);
        M(klutch.bind.klutch_cluster_info) returns it.
    type: str
    required: true
  resources:
    description: The APIs to export, each a CRD C(<resource>.<group>) that an export template exports.
    type: list
    elements: dict
    default: []
    suboptions:
      group:
        description: The API group.
        type: str
        required: true
      resource:
        description: The plural resource name.
        type: str
        required: true
  consumer_scope:
    description:
      - V(Namespaced) lets the consumer work only in the namespaces mapped for it; V(Cluster) grants its
        kinds cluster-wide. Becomes the exports' C(informerScope).
    type: str
    choices: [Namespaced, Cluster]
    default: Namespaced
  external_address:
    description:
      - The control plane's address as app clusters reach it, written into the consumer's
        kubeconfig; default the address this module connects to.
    type: str
  external_ca_data:
    description: Base64 PEM CA for O(external_address); default the cluster's CA from the token Secret.
    type: str
  external_server_name:
    description: The TLS server name to write into the consumer's kubeconfig.
    type: str
  provider_pretty_name:
    description: The name app clusters show for this provider (C(ClusterBinding.spec.providerPrettyName)).
    type: str
    default: klutch.bind
  state:
    description:
      - V(absent) removes the listed exports and requests (all of the consumer's when O(resources) is
        empty) and recomputes the RBAC; instances and Secrets stay.
    type: str
    choices: [present, absent]
    default: present
  delete_namespace:
    description:
      - With O(state=absent) and no O(resources), also delete the consumer's namespace and the namespaces
        mapped for it, and with them every instance and claimed object in them.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for the ServiceAccount token.
    type: int
    default: 30
extends_documentation_fragment:
  - klutch.bind.k8s_auth
  - klutch.bind.attributes
attributes:
  check_mode:
    support: full
    details: Writes are server-side dry runs; for a new consumer the objects in its namespace are
      reported as to be created, as the namespace does not exist yet.
  diff_mode:
    support: full
    details: Secrets are redacted.
notes:
  - The returned RV(kubeconfig) holds the consumer's token; run the task with C(no_log=true) and
    hand it to M(klutch.bind.klutch_binding) only.
seealso:
  - module: klutch.bind.klutch_template
  - module: klutch.bind.klutch_binding
"""

EXAMPLES = r"""
- name: Read the app cluster's id
  klutch.bind.klutch_cluster_info:
  register: app_cluster

- name: Export the sample PostgreSQL API to an app cluster
  klutch.bind.klutch_export_request:
    consumer: "{{ inventory_hostname }}"
    cluster_id: "{{ app_cluster.cluster_id }}"
    resources:
      - group: samples.klutch.bind
        resource: postgresqlinstances
    external_address: https://control-plane.example.com:6443
  delegate_to: localhost
  no_log: true
  register: exported

- name: Remove the consumer, its namespaces and everything in them
  klutch.bind.klutch_export_request:
    consumer: app-1
    cluster_id: X1y2Z3
    state: absent
    delete_namespace: true
"""

RETURN = r"""
consumer_namespace:
  description: The consumer's namespace on the control plane; null in check mode for a new consumer.
  returned: always
  type: str
  sample: cluster-7xk2q
exports:
  description: The consumer's exports after the run.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "postgresqlinstances.samples.klutch.bind", "hash": "2Xq9...", "action": "created"}]
request:
  description: The status written on each request, by name.
  returned: with O(state=present)
  type: dict
  sample: {"postgresqlinstances.samples.klutch.bind": {"phase": "Succeeded"}}
kubeconfig:
  description: The consumer's kubeconfig (YAML text); secret, so run the task with C(no_log).
  returned: with O(state=present), not in check mode for a new consumer
  type: str
results:
  description: What happened to each object, as in M(klutch.bind.klutch_manifest).
  returned: always
  type: list
  elements: dict
diff:
  description: Before and after of every object that changed, Secrets redacted.
  returned: in diff mode
  type: list
  elements: dict
"""

import base64
import random
import string

from ansible_collections.klutch.bind.plugins.module_utils import backend
from ansible_collections.klutch.bind.plugins.module_utils import control_plane as plan
from ansible_collections.klutch.bind.plugins.module_utils.apply import Recorder
from ansible_collections.klutch.bind.plugins.module_utils.errors import ClusterError, ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule
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
except ImportError:  # reported by KlutchModule
    yaml = None


class Run(Recorder):
    """One pass for one consumer: the module's options, its client, and what it changed."""

    def __init__(self, module, client):
        super(Run, self).__init__(client, module.check_mode)
        self.module = module
        self.params = module.params


NAME_CHARACTERS = string.ascii_lowercase + string.digits


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


def main():
    module = KlutchModule(
        argument_spec=dict(
            consumer=dict(type="str", required=True),
            cluster_id=dict(type="str", required=True),
            resources=dict(type="list", elements="dict", default=[], options=dict(
                group=dict(type="str", required=True),
                resource=dict(type="str", required=True),
            )),
            consumer_scope=dict(type="str", choices=["Namespaced", "Cluster"], default="Namespaced"),
            external_address=dict(type="str"),
            external_ca_data=dict(type="str"),
            external_server_name=dict(type="str"),
            provider_pretty_name=dict(type="str", default="klutch.bind"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            delete_namespace=dict(type="bool", default=False),
            wait_timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        if params["state"] == "present" and not params["resources"]:
            raise ConfigError("resources is empty: name the APIs (group and resource) to export to %s."
                              % params["consumer"])
        client = module.client()
        backend.require_klutch_apis(client)
        run = Run(module, client)
        identity = plan.consumer_identity(params["consumer"], params["cluster_id"])
        result = present(run, identity) if params["state"] == "present" else absent(run, identity)
    except ClusterError as error:
        module.fail(error)
    result.update(changed=run.changed, results=run.results)
    if module.diff_mode:
        result["diff"] = run.diffs
    module.exit(**result)


if __name__ == "__main__":
    main()
