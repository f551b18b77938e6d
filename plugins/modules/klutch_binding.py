#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

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
    description:
      - The export's name, C(<plural>.<group>), for example C(postgresqlinstances.samples.klutch.bind).
      - Must be a valid Kubernetes name; an empty one (an undefined variable) is refused before any request.
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
        V(*) accepts all. Claims not listed are Rejected, and a warning names them; rejecting a claim that
        the export marks required fails.
      - None is accepted by default. A claim lets the control plane's side read or write objects of its kind
        in the bound namespaces (with C(owner=Provider), it writes Secrets there), so each one needs the
        app cluster's consent, as Klutch's CLI asks for it claim by claim with No as its default answer.
      - A name the export does not claim (a typo) fails, and so does an accepted claim on a kind the
        app cluster does not serve, before anything is written.
    type: list
    elements: str
    default: []
  sync_crd:
    description: Create or update the CRD from the export. Without it only the binding is written.
    type: bool
    default: true
  state:
    description:
      - V(absent) deletes the binding, and its kubeconfig Secret when no other binding uses it; the CRD
        and with it every local instance only with O(delete_crd).
      - V(absent) also takes the syncer finalizer C(klutch.anynines.com/syncer) off the binding's instances,
        so that deleting them, their namespaces or the CRD afterwards does not hang. It reads and writes
        only the app cluster, so it also releases a binding whose control plane is gone or unreachable;
        the instances' copies on the control plane are left alone.
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
rejected_claims:
  description: The export's permission claims that this binding rejects, by name as in O(accept_claims).
  returned: with O(state=present)
  type: list
  elements: str
  sample: [configmaps]
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

from ansible_collections.klutch.bind.plugins.module_utils import arguments, validate
from ansible_collections.klutch.bind.plugins.module_utils.k8s.apply import Recorder
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import NAMESPACES
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import bind
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule
from ansible_collections.klutch.bind.plugins.module_utils.plan.bindings import BIND_NAMESPACE, cluster_id


def main():
    module = KlutchModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            provider_kubeconfig=dict(type="raw", no_log=False),  # its token is hidden by input_secrets
            accept_claims=arguments.ACCEPT_CLAIMS,
            sync_crd=dict(type="bool", default=True),
            state=arguments.STATE,
            delete_crd=dict(type="bool", default=False),
            wait_timeout=arguments.WAIT_TIMEOUT,
        ),
        required_if=[("state", "present", ["provider_kubeconfig"])],
        checks={"name": validate.kubernetes_name("an APIServiceBinding (<plural>.<group>)"),
                "accept_claims": validate.claim_names, "wait_timeout": validate.positive()},
        supports_check_mode=True,
    )
    params = module.params
    try:
        client = module.client()
        recorder = Recorder(client, module.check_mode)
        if module.params["state"] == "present":
            result = bind.bind(client, recorder, lambda config: module.client({"kubeconfig": config}),
                               name=params["name"], kubeconfig=params["provider_kubeconfig"],
                               accept_claims=params["accept_claims"], sync_crd=params["sync_crd"],
                               wait_timeout=params["wait_timeout"])
        else:
            result = bind.unbind(client, recorder, params["name"], params["delete_crd"])
        namespace = client.get(NAMESPACES, BIND_NAMESPACE)
        if namespace is not None and namespace["metadata"].get("uid"):
            result["cluster_id"] = cluster_id(namespace["metadata"]["uid"])
    except ClusterError as error:
        module.fail(error)
    if result.get("rejected_claims"):
        module.warn(bind.rejected_claims_warning(params["name"], result["rejected_claims"]))
    result.update(changed=recorder.changed, results=recorder.results)
    if module.diff_mode:
        result["diff"] = recorder.diffs
    module.exit(**result)


if __name__ == "__main__":
    main()
