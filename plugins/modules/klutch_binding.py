#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: klutch_binding
short_description: Bind an exported data-service API on an app cluster, as kubectl-bind and the konnector do
version_added: 0.1.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - Binds one API that the control plane exports to this consumer (see M(klutch.bind.klutch_export_request))
    on an app cluster, without a browser.
  - Reads the C(APIServiceExport) and the C(ClusterBinding) from the control plane with the consumer's own
    kubeconfig O(provider_kubeconfig), so with the consumer's limited rights.
  - Writes the C(klutch-bind) namespace, the kubeconfig as a Secret there (reused when one for the same
    control plane and namespace exists, as Klutch's CLI does), the C(APIServiceBinding) named like the
    export with each permission claim Accepted or Rejected, and the CRD from the export's snapshot,
    owned by the binding. A schema change on the provider reaches the CRD on the next run.
  - Also writes the rights of the konnector agent (see the role C(klutch.bind.konnector)) for this binding,
    two ClusterRoles labelled for aggregation into C(klutch-bind-konnector) (the bound kind and its CRD)
    and C(klutch-bind-konnector-claims) (the accepted claims' kinds), so a running agent can serve a
    binding added later; O(state=absent) removes them.
  - Refuses a CRD of the same name that the binding does not own (C(ForeignCustomResourceDefinition)), and
    rejecting a required claim, before any write.
  - Never writes to the control plane.
options:
  name:
    description: The export's name, C(<plural>.<group>), for example C(postgresqlinstances.samples.klutch.bind).
    type: str
    required: true
  provider_kubeconfig:
    description:
      - The consumer's kubeconfig for the control plane, as M(klutch.bind.klutch_export_request) returns it
        (YAML text or a dict), or a path to it. Its context namespace is the consumer's namespace.
      - Required with O(state=present).
    type: raw
  accept_claims:
    description:
      - The permission claims to accept, by C(<resource>) for the core group or C(<resource>.<group>);
        V(*) accepts all. Claims not listed are Rejected; rejecting a claim that the export marks
        required fails.
    type: list
    elements: str
    default: ["*"]
  sync_crd:
    description: Create or update the CRD from the export. Without it only the binding is written.
    type: bool
    default: true
  state:
    description:
      - V(absent) deletes the binding, and its kubeconfig Secret when no other binding uses it; the CRD
        and with it every local instance only with O(delete_crd).
    type: str
    choices: [present, absent]
    default: present
  delete_crd:
    description: With O(state=absent), also delete the CRD and so every instance of it on the app cluster.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for the CRD to be Established.
    type: int
    default: 60
extends_documentation_fragment:
  - klutch.bind.k8s_auth
  - klutch.bind.attributes
attributes:
  check_mode:
    support: full
    details: Writes are server-side dry runs; the control plane is only read.
  diff_mode:
    support: full
    details: The kubeconfig Secret is redacted.
seealso:
  - module: klutch.bind.klutch_export_request
"""

EXAMPLES = r"""
- name: Bind the PostgreSQL API on an app cluster with the consumer's kubeconfig
  klutch.bind.klutch_binding:
    kubeconfig: "{{ app_kubeconfig }}"
    name: postgresqlinstances.samples.klutch.bind
    provider_kubeconfig: "{{ exported.kubeconfig }}"
    accept_claims: [secrets]

- name: Unbind, and remove the CRD and every local instance
  klutch.bind.klutch_binding:
    name: postgresqlinstances.samples.klutch.bind
    state: absent
    delete_crd: true
"""

RETURN = r"""
binding:
  description: The APIServiceBinding after the run.
  returned: with O(state=present), except in check mode on a cluster without the C(klutch-bind) namespace
  type: dict
crd:
  description: The CRD's name, its action (created, updated, unchanged) and its served versions.
  returned: with O(state=present) and O(sync_crd), except in check mode on a cluster without the C(klutch-bind) namespace
  type: dict
  sample: {"name": "postgresqlinstances.samples.klutch.bind", "action": "created", "versions": ["v1"]}
conditions:
  description: The binding's conditions.
  returned: with O(state=present)
  type: list
  elements: dict
cluster_id:
  description: This app cluster's id as Klutch derives it, for M(klutch.bind.klutch_export_request).
  returned: when the C(klutch-bind) namespace exists
  type: str
  sample: 3fK9aQ
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

from ansible_collections.klutch.bind.plugins.module_utils import app_cluster as plan
from ansible_collections.klutch.bind.plugins.module_utils.connection import parse_kubeconfig
from ansible_collections.klutch.bind.plugins.module_utils.errors import ClusterError, ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.apply import Recorder, now
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule
from ansible_collections.klutch.bind.plugins.module_utils.resources import (
    API_SERVICE_BINDINGS,
    API_SERVICE_EXPORTS,
    CLUSTER_BINDINGS,
    CLUSTER_ROLES,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
)

try:
    import yaml
except ImportError:  # reported by KlutchModule
    yaml = None


def provider_config(value):
    """The provider kubeconfig as a dict, from inline YAML, a dict or a file."""
    config = parse_kubeconfig(value)
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
    server, namespace = plan.kubeconfig_target(config)
    if not server or not namespace:
        raise ConfigError("provider_kubeconfig names no %s in its current context: give the kubeconfig that "
                          "klutch_export_request returned, whose context names the consumer's namespace."
                          % ("server" if not server else "namespace"))
    return config, server, namespace


def read_provider(module, config, namespace):
    """The export and the provider's pretty name, read with the consumer's own rights."""
    params = module.params
    provider = module.client({"kubeconfig": config})
    export = provider.get(API_SERVICE_EXPORTS, params["name"], namespace)
    if export is None:
        raise ConfigError("The control plane has no APIServiceExport %s for this consumer (namespace %s on %s). Export "
                          "it first with klutch_export_request, or check the name (<plural>.<group>)."
                          % (params["name"], namespace, provider.label))
    cluster_binding = provider.get(CLUSTER_BINDINGS, "cluster", namespace) or {}
    return export, (cluster_binding.get("spec") or {}).get("providerPrettyName", "")


def secret_name(client, bound, server, namespace):
    """The Secret for this kubeconfig: the binding's own, one for the same control plane, or a new name."""
    if bound is not None:
        return bound["spec"]["kubeconfigSecretRef"]["name"]
    taken = set()
    for secret in client.list(SECRETS, plan.BIND_NAMESPACE)[0]:
        taken.add(secret["metadata"]["name"])
        encoded = (secret.get("data") or {}).get(plan.KUBECONFIG_KEY)
        if not encoded or not secret["metadata"]["name"].startswith(plan.KUBECONFIG_SECRET_PREFIX):
            continue
        try:
            stored = yaml.safe_load(base64.b64decode(encoded))
        except (ValueError, yaml.YAMLError):
            continue
        if isinstance(stored, dict) and plan.kubeconfig_target(stored) == (server, namespace):
            return secret["metadata"]["name"]
    while True:
        name = plan.KUBECONFIG_SECRET_PREFIX + "".join(random.sample(string.ascii_lowercase + string.digits, 5))
        if name not in taken:
            return name


def present(module, client, recorder):
    params = module.params
    if client.resource_for(API_SERVICE_BINDINGS.api_version, API_SERVICE_BINDINGS.kind) is None:
        raise ConfigError("%s does not serve APIServiceBinding: install the Klutch CRDs on the app cluster first "
                          "(klutch.bind.klutch_manifest with the collection's klutch-crds.yaml)." % client.label)
    config, server, namespace = provider_config(params["provider_kubeconfig"])
    export, pretty_name = read_provider(module, config, namespace)
    claims = plan.acceptable_claims(params["name"], export["spec"].get("permissionClaims") or [],
                                    params["accept_claims"])
    crd = client.get(CUSTOM_RESOURCE_DEFINITIONS, params["name"]) if params["sync_crd"] else None
    problem = plan.foreign_crd_problem(crd, params["name"])
    if problem:
        raise ConfigError(problem)
    for role in plan.konnector_roles(params["name"], export["spec"], claims):
        recorder.apply(role)
    recorder.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": plan.BIND_NAMESPACE}})
    if module.check_mode and client.get(NAMESPACES, plan.BIND_NAMESPACE) is None:
        for kind in ("Secret", API_SERVICE_BINDINGS.kind, "CustomResourceDefinition"):
            recorder.planned({"apiVersion": "", "kind": kind,
                              "metadata": {"name": params["name"], "namespace": plan.BIND_NAMESPACE}})
        return {"conditions": []}
    existing = client.get(API_SERVICE_BINDINGS, params["name"], plan.BIND_NAMESPACE)
    name = secret_name(client, existing, server, namespace)
    text = yaml.safe_dump(config, default_flow_style=False, sort_keys=False)
    recorder.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": name, "namespace": plan.BIND_NAMESPACE},
                    "data": {plan.KUBECONFIG_KEY: base64.b64encode(text.encode("utf-8")).decode("ascii")}})
    bound = recorder.apply(plan.binding(params["name"], name, claims), API_SERVICE_BINDINGS)
    result = {}
    if params["sync_crd"]:
        wanted = plan.crd_from_export(export, bound)
        before = len(recorder.results)
        recorder.apply(wanted, definition_wait=params["wait_timeout"])
        result["crd"] = {"name": params["name"], "action": recorder.results[before]["action"],
                         "versions": [version["name"] for version in wanted["spec"]["versions"]]}
    status = plan.binding_status(pretty_name, now(), bound.get("status"))
    if existing is None and module.check_mode:
        bound = dict(bound, status=status)  # a dry-run binding has no status subresource to dry-run against
    else:
        bound = recorder.apply(dict(plan.binding(params["name"], name, claims), status=status), API_SERVICE_BINDINGS,
                               subresource="status")
    result.update(binding=bound, conditions=(bound.get("status") or {}).get("conditions") or [])
    return result


def absent(module, client, recorder):
    params = module.params
    bound = client.get(API_SERVICE_BINDINGS, params["name"], plan.BIND_NAMESPACE)
    recorder.delete(API_SERVICE_BINDINGS, params["name"], plan.BIND_NAMESPACE)
    if bound is not None:
        name = bound["spec"]["kubeconfigSecretRef"]["name"]
        others = [item for item in client.list(API_SERVICE_BINDINGS, plan.BIND_NAMESPACE)[0]
                  if item["metadata"]["name"] != params["name"] and item["spec"]["kubeconfigSecretRef"]["name"] == name]
        if not others:
            recorder.delete(SECRETS, name, plan.BIND_NAMESPACE)
    for _into, role_name in plan.konnector_role_names(params["name"]):
        recorder.delete(CLUSTER_ROLES, role_name)
    if params["delete_crd"]:
        recorder.delete(CUSTOM_RESOURCE_DEFINITIONS, params["name"])
    return {}


def main():
    module = KlutchModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            provider_kubeconfig=dict(type="raw", no_log=False),  # its token is hidden by input_secrets
            accept_claims=dict(type="list", elements="str", default=["*"]),
            sync_crd=dict(type="bool", default=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            delete_crd=dict(type="bool", default=False),
            wait_timeout=dict(type="int", default=60),
        ),
        required_if=[("state", "present", ["provider_kubeconfig"])],
        supports_check_mode=True,
    )
    try:
        client = module.client()
        recorder = Recorder(client, module.check_mode)
        if module.params["state"] == "present":
            result = present(module, client, recorder)
        else:
            result = absent(module, client, recorder)
        namespace = client.get(NAMESPACES, plan.BIND_NAMESPACE)
        if namespace is not None and namespace["metadata"].get("uid"):
            result["cluster_id"] = plan.cluster_id(namespace["metadata"]["uid"])
    except ClusterError as error:
        module.fail(error)
    result.update(changed=recorder.changed, results=recorder.results)
    if module.diff_mode:
        result["diff"] = recorder.diffs
    module.exit(**result)


if __name__ == "__main__":
    main()
