#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: klutch_bind
short_description: Bind data-service APIs of the control plane on an app cluster in one step, as kubectl bind does
version_added: 0.1.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - What C(kubectl bind) and Klutch's backend do together for one app cluster, without a browser, in one
    task that runs against the app cluster and reaches the control plane with O(control_plane_kubeconfig).
  - On the control plane, exports O(services) to this consumer as M(klutch.bind.klutch_export_request)
    does, under the identity C(<consumer>#<cluster id>); the cluster id comes from the app cluster's
    C(klutch-bind) namespace, which the C(klutch.bind.konnector) role creates.
  - When that namespace was recreated, the cluster id changes; a consumer bound under its earlier id is then
    refused before any write until O(previous_cluster_id) names the earlier id, and keeps its namespace.
  - On the app cluster, binds each service with the consumer's new kubeconfig as M(klutch.bind.klutch_binding)
    does (so the export is read with the consumer's own rights), then runs one sync pass over these
    bindings as M(klutch.bind.klutch_claim_sync) does (O(sync)).
  - The consumer's kubeconfig stays inside the module; only the app cluster's kubeconfig Secret holds it.
  - Everything the single modules check is checked before their first write.
  - With O(state=absent), unbinds in one task what it bound. Each service's binding, its konnector
    ClusterRoles and kubeconfig Secret go from the app cluster and its instances are released; the CRD,
    and with it every local instance, only with O(delete_crds). The control plane keeps everything unless
    O(control_plane_cleanup) asks (C(playbooks/unbind_app_cluster.yml) runs it).
options:
  control_plane_kubeconfig:
    description:
      - The control plane's kubeconfig, a path, a dict or inline YAML.
      - Without it, the kubeconfig of E(K8S_AUTH_KUBECONFIG) or E(KUBECONFIG) with O(control_plane_context);
        other E(K8S_AUTH_*) variables describe the app cluster and are not read for the control plane.
    type: raw
  control_plane_context:
    description: The context of O(control_plane_kubeconfig) to use.
    type: str
  services:
    description:
      - The APIs to bind, each a CRD C(<resource>.<group>) on the control plane that an export template exports.
      - Required, and not empty, with O(state=present). With O(state=absent), the APIs to unbind; empty
        unbinds every binding of the app cluster.
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
      accept_claims:
        description:
          - The permission claims to accept, as O(klutch.bind.klutch_binding#module:accept_claims); none by
            default, each one consented to by name (or V(*) for all).
        type: list
        elements: str
        default: []
  sync:
    description: Run one sync pass over the bindings after binding them.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for the consumer's token and for each CRD to be Established.
    type: int
    default: 60
  state:
    description:
      - V(present) exports, binds and syncs O(services); V(absent) unbinds them.
    type: str
    choices: [present, absent]
    default: present
  delete_crds:
    description:
      - With O(state=absent), also delete each unbound CRD from the app cluster, and with it every instance of
        it there. The instances on the control plane are not touched.
    type: bool
    default: false
  control_plane_cleanup:
    description:
      - With O(state=absent), what goes on the control plane. V(none) keeps everything, so that binding
        again finds the instances and their data.
      - V(exports) removes this consumer's exports and requests of O(services) (all of them when O(services)
        is empty) and the rights they gave; its namespaces and instances stay.
      - V(everything) also deletes the consumer's namespaces, and with them its instances and their data.
    type: str
    choices: [none, exports, everything]
    default: none
extends_documentation_fragment:
  - klutch.bind.export
  - klutch.bind.k8s_auth
  - klutch.bind.attributes
attributes:
  check_mode:
    support: full
    details:
      - Writes are server-side dry runs on both clusters. Bindings whose export or consumer does not exist
        yet are reported as to be created; check mode syncs only bindings that exist already.
  diff_mode:
    support: full
    details: Secrets are redacted.
notes:
  - Each connection is checked by the first request on it; an unreachable control plane fails before
    anything is written on the app cluster.
seealso:
  - module: klutch.bind.klutch_export_request
  - module: klutch.bind.klutch_binding
  - module: klutch.bind.klutch_claim_sync
"""

EXAMPLES = r"""
- name: Bind the PostgreSQL API on this app cluster
  klutch.bind.klutch_bind:
    kubeconfig: /etc/klutch/app-eu-1.kubeconfig
    control_plane_kubeconfig: /etc/klutch/control-plane.kubeconfig
    consumer: app-eu-1
    services:
      - group: samples.klutch.bind
        resource: postgresqlinstances
        accept_claims: [secrets]
  register: bound

- name: Unbind it again, keeping the CRD and the local instances, and withdraw the export on the control plane
  klutch.bind.klutch_bind:
    kubeconfig: /etc/klutch/app-eu-1.kubeconfig
    control_plane_kubeconfig: /etc/klutch/control-plane.kubeconfig
    consumer: app-eu-1
    services:
      - group: samples.klutch.bind
        resource: postgresqlinstances
    state: absent
    control_plane_cleanup: exports

- name: Bind through two contexts of one kubeconfig, with the control plane's address as app clusters reach it
  klutch.bind.klutch_bind:
    kubeconfig: ~/.kube/config
    context: app-eu-1
    control_plane_context: control-plane
    external_address: https://klutch.example.com:6443
    consumer: app-eu-1
    services:
      - {group: samples.klutch.bind, resource: postgresqlinstances}
      - {group: samples.klutch.bind, resource: redisinstances}
"""

RETURN = r"""
cluster:
  description: How messages name the app cluster, its kubeconfig context and server.
  returned: always
  type: str
  sample: cluster app-eu-1 (https://10.0.0.12:6443)
cluster_id:
  description: The app cluster's id as Klutch derives it.
  returned: always
  type: str
  sample: 3fK9aQ
consumer_namespace:
  description:
    - The consumer's namespace on the control plane; null in check mode for a new consumer, and with
      O(state=absent) unless O(control_plane_cleanup) reached the control plane.
  returned: always
  type: str
  sample: cluster-x7k2p
exports:
  description: Each export's name, spec hash and action on the control plane (with O(state=absent), those deleted).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "postgresqlinstances.samples.klutch.bind", "hash": "3b1f...", "action": "created"}]
unbound:
  description: With O(state=absent), the bindings (C(<resource>.<group>)) that were asked to go.
  returned: with O(state=absent)
  type: list
  elements: str
  sample: ["postgresqlinstances.samples.klutch.bind"]
bindings:
  description:
    - Per service C(<resource>.<group>), its CRD (name, action and served versions, as RV(klutch.bind.klutch_binding#module:crd)),
      its binding's conditions and the claims it rejects (C(rejected_claims), each also a warning).
  returned: with O(state=present)
  type: dict
  sample: {"postgresqlinstances.samples.klutch.bind": {"crd": {"name": "postgresqlinstances.samples.klutch.bind",
           "action": "created", "versions": ["v1"]}, "conditions": [{"type": "Ready", "status": "True"}],
           "rejected_claims": []}}
synced:
  description: Per binding, the writes of the sync pass by direction and kind, as in M(klutch.bind.klutch_claim_sync).
  returned: with O(state=present)
  type: dict
removals_withheld:
  description: >-
    Per binding, why nothing was removed on the control plane for objects missing on this app cluster:
    its cluster id differs from the one the consumer was bound from (a restored or rebuilt cluster,
    or a binding Secret copied to another cluster). Each is also a warning.
  returned: when removals were withheld
  type: dict
  sample: {"postgresqlinstances.samples.klutch.bind": "Binding ...: nothing was removed ..."}
operations:
  description: Each write of the sync pass, as in M(klutch.bind.klutch_claim_sync).
  returned: with O(state=present)
  type: list
  elements: dict
results:
  description:
    - What happened to each object, as in M(klutch.bind.klutch_manifest), with C(cluster) V(control_plane)
      or V(app_cluster).
  returned: always
  type: list
  elements: dict
diff:
  description: Before and after of every object that changed on either cluster, Secrets redacted.
  returned: in diff mode
  type: list
  elements: dict
"""

from ansible_collections.klutch.bind.plugins.module_utils import arguments, validate
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import bind, sync
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule


def main():
    module = KlutchModule(
        argument_spec=dict(
            arguments.EXPORT,
            control_plane_kubeconfig=dict(type="raw", no_log=False),  # its secrets are hidden by input_secrets
            control_plane_context=dict(type="str"),
            services=dict(type="list", elements="dict", default=[], options=dict(
                arguments.API, accept_claims=arguments.ACCEPT_CLAIMS)),
            sync=dict(type="bool", default=True),
            wait_timeout=arguments.WAIT_TIMEOUT,
            state=arguments.STATE,
            delete_crds=dict(type="bool", default=False),
            control_plane_cleanup=dict(type="str", choices=["none", "exports", "everything"], default="none"),
        ),
        # The control plane is reached to bind, and to unbind only when something goes there.
        required_if=[(option, value, ("control_plane_kubeconfig", "control_plane_context"), True) for option, value in
                     (("state", "present"), ("control_plane_cleanup", "exports"), ("control_plane_cleanup", "everything"))],
        checks=dict(arguments.EXPORT_CHECKS, services=validate.services),
        supports_check_mode=True,
    )
    params = module.params
    try:
        reaches_control_plane = params["state"] == "present" or params["control_plane_cleanup"] != "none"
        control_plane = module.client({"kubeconfig": params["control_plane_kubeconfig"],
                                       "context": params["control_plane_context"]},
                                      kubeconfig_from_environment=True) if reaches_control_plane else None
        result, errors = bind.bind_request(module.client(), control_plane, module.check_mode,
                                           lambda config: module.client({"kubeconfig": config}), params)
    except ClusterError as error:
        module.fail(error)
    for message in bind.warnings(result):
        module.warn(message)
    diff = result.pop("diff")
    if module.diff_mode:
        result["diff"] = diff
    if errors:
        module.fail(sync.failed_writes(errors, result["operations"]), **result)
    module.exit(**result)


if __name__ == "__main__":
    main()
