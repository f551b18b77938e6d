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
        M(klutch.bind.klutch_binding) returns it.
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
  - The returned O(ignore:kubeconfig) holds the consumer's token; run the task with C(no_log=true) and
    hand it to M(klutch.bind.klutch_binding) only.
seealso:
  - module: klutch.bind.klutch_template
  - module: klutch.bind.klutch_binding
"""

EXAMPLES = r"""
- name: Export the sample PostgreSQL API to an app cluster
  klutch.bind.klutch_export_request:
    consumer: "{{ inventory_hostname }}"
    cluster_id: "{{ binding_info.cluster_id }}"
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
import datetime
import random
import string

from ansible_collections.klutch.bind.plugins.module_utils import control_plane as plan
from ansible_collections.klutch.bind.plugins.module_utils.errors import ClusterError, ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule
from ansible_collections.klutch.bind.plugins.module_utils.objects import diff
from ansible_collections.klutch.bind.plugins.module_utils.resources import (
    API_SERVICE_EXPORT_REQUESTS,
    API_SERVICE_EXPORTS,
    API_SERVICE_NAMESPACES,
    CLUSTER_BINDINGS,
    CLUSTER_ROLE_BINDINGS,
    CLUSTER_ROLES,
    CUSTOM_RESOURCE_DEFINITIONS,
    EXPORT_TEMPLATES,
    KNOWN,
    NAMESPACES,
    SECRETS,
)

try:
    import yaml
except ImportError:  # reported by KlutchModule
    yaml = None


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Run:
    """One pass for one consumer: reads first, then writes, recording what changed."""

    def __init__(self, module, client):
        self.module = module
        self.client = client
        self.results = []
        self.diffs = []

    def apply(self, obj, resource=None, subresource=None):
        resource = resource or KNOWN[(obj["apiVersion"], obj["kind"])]
        change = self.client.apply(resource, obj, subresource=subresource)
        self.record(obj, change, "updated" if change.before is not None else "created")
        return change.after

    def delete(self, resource, name, namespace=None):
        change = self.client.delete(resource, name, namespace)
        self.record({"apiVersion": resource.api_version, "kind": resource.kind,
                     "metadata": {"name": name, "namespace": namespace}}, change, "deleted")

    def record(self, obj, change, action):
        self.results.append({"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
                             "namespace": obj["metadata"].get("namespace"),
                             "action": action if change.changed else "unchanged"})
        if change.changed:
            self.diffs.append(diff(change))

    def planned(self, obj):
        """An object that check mode cannot dry-run, because its namespace is still to be created."""
        self.results.append({"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
                             "namespace": obj["metadata"].get("namespace"), "action": "created"})


def require_klutch_apis(client):
    for resource in (API_SERVICE_EXPORTS, API_SERVICE_EXPORT_REQUESTS, CLUSTER_BINDINGS, EXPORT_TEMPLATES):
        if client.resource_for(resource.api_version, resource.kind) is None:
            raise ConfigError("%s does not serve %s: install the Klutch CRDs on the control plane first (role "
                              "klutch.bind.control_plane)." % (client.label, resource.kind))


def exported_apis(module, client):
    """{name: (crd, claims)} for the requested resources; ConfigError naming the first problem."""
    templates = client.list(EXPORT_TEMPLATES)[0]
    found = {}
    for item in module.params["resources"]:
        name = "%s.%s" % (item["resource"], item["group"]) if item["group"] else item["resource"]
        crd = client.get(CUSTOM_RESOURCE_DEFINITIONS, name)
        if crd is None:
            raise ConfigError("Cannot export %s: %s has no CRD %s. Check group and resource, or publish the data "
                              "service first." % (name, client.label, name))
        template = next((t for t in templates if plan.exported_api(t) == (item["group"], item["resource"])), None)
        if template is None:
            raise ConfigError("Cannot export %s: no APIServiceExportTemplate on %s exports it. Publish one (module "
                              "klutch.bind.klutch_template) first." % (name, client.label))
        found[name] = (crd, (template.get("spec") or {}).get("permissionClaims") or [])
    return found


NAME_CHARACTERS = string.ascii_lowercase + string.digits


def new_namespace_name(existing):
    """cluster-<5 random characters>, as Kubernetes' generateName would make it, and not taken."""
    while True:
        name = "%s-%s" % (plan.NAMESPACE_PREFIX, "".join(random.sample(NAME_CHARACTERS, 5)))
        if name not in existing:
            return name


def ensure_consumer(run, namespaces, identity):
    """The consumer namespace, its ServiceAccount, token, and the token's (ca, token) once issued."""
    params = run.module.params
    namespace = plan.consumer_namespace(namespaces, identity)
    is_new = namespace is None
    if is_new:
        namespace = new_namespace_name(set(ns["metadata"]["name"] for ns in namespaces))
    created = run.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": namespace, "annotations": {plan.IDENTITY_ANNOTATION: identity}}})
    in_namespace = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": plan.BINDER, "namespace": namespace}},
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
         "metadata": {"name": plan.BINDER, "namespace": namespace,
                      "annotations": {"kubernetes.io/service-account.name": plan.BINDER}}},
    ]
    if is_new and run.module.check_mode:
        for obj in in_namespace:
            run.planned(obj)
        return namespace, None, None
    for obj in in_namespace:
        run.apply(obj)
    if run.module.check_mode:
        token_secret = run.client.get(SECRETS, plan.BINDER, namespace)
        if not ((token_secret or {}).get("data") or {}).get("token"):
            return namespace, None, None
    else:
        token_secret = run.client.wait(SECRETS, plan.BINDER, namespace,
                                       lambda obj: bool(((obj or {}).get("data") or {}).get("token")),
                                       params["wait_timeout"], "issued a token by the token controller")
    return namespace, (created or {}).get("metadata", {}).get("uid"), token_secret


def consumer_kubeconfig(run, namespace, token_secret):
    params = run.module.params
    data = token_secret["data"]
    server = params["external_address"] or run.client.configuration.host
    config = plan.kubeconfig(server, params["external_ca_data"] or data.get("ca.crt"),
                             base64.b64decode(data["token"]).decode("utf-8"), namespace, params["external_server_name"])
    return yaml.safe_dump(config, default_flow_style=False, sort_keys=False)


def map_namespaces(run, namespace):
    """Namespace <P>-N and its status for each APIServiceNamespace N the consumer created."""
    mapped = []
    for service_namespace in run.client.list(API_SERVICE_NAMESPACES, namespace)[0]:
        target = plan.mapped_namespace(namespace, service_namespace)
        source = "%s/%s" % (namespace, service_namespace["metadata"]["name"])
        run.apply({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": target, "annotations": {plan.API_SERVICE_NAMESPACE_ANNOTATION: source}}})
        run.apply({"apiVersion": API_SERVICE_NAMESPACES.api_version, "kind": API_SERVICE_NAMESPACES.kind,
                   "metadata": {"name": service_namespace["metadata"]["name"], "namespace": namespace},
                   "status": {"namespace": target}}, API_SERVICE_NAMESPACES, subresource="status")
        mapped.append(target)
    return mapped


def present(run, identity):
    params = run.module.params
    client = run.client
    apis = exported_apis(run.module, client)
    namespace, namespace_uid, token_secret = ensure_consumer(run, client.list(NAMESPACES)[0], identity)
    result = {"consumer_namespace": namespace, "request": {}, "exports": []}
    cluster_binding = {"apiVersion": CLUSTER_BINDINGS.api_version, "kind": CLUSTER_BINDINGS.kind,
                       "metadata": {"name": "cluster", "namespace": namespace},
                       "spec": {"kubeconfigSecretRef": {"name": plan.KUBECONFIG_SECRET, "key": "kubeconfig"},
                                "providerPrettyName": params["provider_pretty_name"]}}
    exports = [plan.api_service_export(crd, namespace, params["consumer_scope"], claims)
               for crd, claims in apis.values()]
    requests = [plan.export_request(name, namespace, crd["spec"]["group"], crd["spec"]["names"]["plural"], claims)
                for name, (crd, claims) in apis.items()]
    if token_secret is None:  # check mode for a new consumer: nothing in its namespace can be dry-run
        result["consumer_namespace"] = None
        for obj in [cluster_binding] + requests + exports:
            run.planned(obj)
        result["exports"] = [{"name": export["metadata"]["name"], "action": "created"} for export in exports]
        return result
    kubeconfig = consumer_kubeconfig(run, namespace, token_secret)
    run.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": plan.KUBECONFIG_SECRET, "namespace": namespace},
               "data": {"kubeconfig": base64.b64encode(kubeconfig.encode("utf-8")).decode("ascii")}})
    run.apply(cluster_binding, CLUSTER_BINDINGS)
    for request, export in zip(requests, exports):
        stored = run.apply(request, API_SERVICE_EXPORT_REQUESTS)
        status = plan.request_status([], now(), (stored or {}).get("status"))
        run.apply({"apiVersion": request["apiVersion"], "kind": request["kind"], "metadata": request["metadata"],
                   "status": status}, API_SERVICE_EXPORT_REQUESTS, subresource="status")
        result["request"][request["metadata"]["name"]] = {"phase": status["phase"]}
        before = len(run.results)
        run.apply(export, API_SERVICE_EXPORTS)
        result["exports"].append({"name": export["metadata"]["name"], "action": run.results[before]["action"],
                                  "hash": export["metadata"]["annotations"][plan.SPEC_HASH_ANNOTATION]})
    all_exports = client.list(API_SERVICE_EXPORTS, namespace)[0]
    rbac(run, namespace, namespace_uid, all_exports, map_namespaces(run, namespace))
    result["kubeconfig"] = kubeconfig
    return result


def rbac(run, namespace, namespace_uid, exports, mapped):
    """The consumer's RBAC as planned, and no binding that the plan does not hold (e.g. after a scope change)."""
    wanted = plan.consumer_rbac(namespace, namespace_uid, exports, run.module.params["consumer_scope"], mapped)
    for obj in wanted:
        run.apply(obj)
    dynamic = "%s-%s" % (plan.BINDER, namespace)
    if not any(obj["kind"] == "ClusterRoleBinding" for obj in wanted):
        run.delete(CLUSTER_ROLE_BINDINGS, dynamic)


def absent(run, identity):
    params = run.module.params
    client = run.client
    namespace = plan.consumer_namespace(client.list(NAMESPACES)[0], identity)
    result = {"consumer_namespace": namespace, "exports": []}
    if namespace is None:
        return result
    names = ["%s.%s" % (item["resource"], item["group"]) if item["group"] else item["resource"]
             for item in params["resources"]]
    exports = client.list(API_SERVICE_EXPORTS, namespace)[0]
    removed = [export["metadata"]["name"] for export in exports if not names or export["metadata"]["name"] in names]
    for name in removed:
        run.delete(API_SERVICE_EXPORTS, name, namespace)
        run.delete(API_SERVICE_EXPORT_REQUESTS, name, namespace)
        result["exports"].append({"name": name, "action": "deleted"})
    if params["delete_namespace"] and not names:
        mapped = [plan.mapped_namespace(namespace, item) for item in client.list(API_SERVICE_NAMESPACES, namespace)[0]]
        for target in mapped + [namespace]:
            run.delete(NAMESPACES, target)
        run.delete(CLUSTER_ROLE_BINDINGS, "%s-%s" % (plan.BINDER, namespace))
        run.delete(CLUSTER_ROLES, "%s-%s" % (plan.BINDER, namespace))
        return result
    remaining = [export for export in exports if export["metadata"]["name"] not in removed]
    uid = client.get(NAMESPACES, namespace)["metadata"]["uid"]
    mapped = [plan.mapped_namespace(namespace, item) for item in client.list(API_SERVICE_NAMESPACES, namespace)[0]]
    rbac(run, namespace, uid, remaining, mapped)
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
        require_klutch_apis(client)
        run = Run(module, client)
        identity = plan.consumer_identity(params["consumer"], params["cluster_id"])
        result = present(run, identity) if params["state"] == "present" else absent(run, identity)
    except ClusterError as error:
        module.fail(error)
    result.update(changed=any(entry["action"] != "unchanged" for entry in run.results), results=run.results)
    if module.diff_mode:
        result["diff"] = run.diffs
    module.exit(**result)


if __name__ == "__main__":
    main()
