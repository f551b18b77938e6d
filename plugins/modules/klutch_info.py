#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: klutch_info
short_description: What is bound where, whether it is healthy, and whether anything drifts
version_added: 0.1.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - Reads one cluster and reports its side of the Klutch lifecycle; writes nothing.
  - On a control plane, its export templates and each consumer with its cluster id, exports (and their spec
    hashes), requests, mapped and unmapped namespaces, the konnector's last heartbeat and whether it is healthy.
  - On an app cluster, its cluster id and each binding with its claims, conditions, its CRD (present, in step
    with the export, the export's spec hash), the number of local instances, and what its next sync pass would
    write (C(pending) in RV(bindings)); a binding whose next pass would write something is drifting. Also instances
    that the syncer's finalizer holds after their binding went.
  - Each report has RV(problems), one sentence per thing to act on; an empty list means all is well, which a
    playbook can C(assert).
  - Reads an app cluster's control plane with each binding's own kubeconfig, so with the consumer's rights.
options:
  side:
    description:
      - Which side to report. V(auto) is V(control_plane) on a cluster that serves APIServiceExports, else
        V(app_cluster) on one that serves APIServiceBindings.
    type: str
    choices: [auto, control_plane, app_cluster]
    default: auto
extends_documentation_fragment:
  - klutch.bind.k8s_auth
  - klutch.bind.attributes
  - klutch.bind.attributes.info_module
seealso:
  - module: klutch.bind.klutch_cluster_info
  - module: klutch.bind.klutch_claim_sync
"""

EXAMPLES = r"""
- name: Read an app cluster's bindings
  klutch.bind.klutch_info:
    kubeconfig: /etc/klutch/app-eu-1.kubeconfig
  register: app_cluster

- name: Fail when anything is unhealthy or drifting, saying what
  ansible.builtin.assert:
    that: app_cluster.problems | length == 0
    fail_msg: "{{ app_cluster.problems | join('; ') }}"

- name: List the control plane's consumers and their health
  klutch.bind.klutch_info:
    kubeconfig: /etc/klutch/control-plane.kubeconfig
  register: control_plane

- name: Show them
  ansible.builtin.debug:
    msg: "{{ control_plane.consumers | items2dict(key_name='consumer', value_name='healthy') }}"
"""

RETURN = r"""
side:
  description: The side reported, V(control_plane) or V(app_cluster); null for a cluster with no Klutch API.
  returned: always
  type: str
  sample: app_cluster
cluster:
  description: How messages name this cluster, its kubeconfig context and server.
  returned: always
  type: str
  sample: cluster app-eu-1 (https://10.0.0.12:6443)
problems:
  description: One sentence per thing to act on, each naming its consumer or binding; empty when all is well.
  returned: always
  type: list
  elements: str
  sample: ["binding postgresqlinstances.samples.klutch.bind: its next sync pass would write 2 objects (up 2 instances)"]
templates:
  description: The control plane's export templates, each with its namespace, name and the API it exports.
  returned: on a control plane
  type: list
  elements: dict
  sample: [{"namespace": "crossplane-system", "name": "postgresqlinstances",
            "exports": "postgresqlinstances.samples.klutch.bind"}]
consumers:
  description:
    - The control plane's consumers, each with C(consumer), C(cluster_id), C(namespace), C(exports) (name and
      hash), C(requests) (phase by name), C(mapped_namespaces), C(unmapped_namespaces), C(last_heartbeat),
      C(healthy), C(credentials) and its C(problems).
    - C(credentials) has C(token_secret) (the token Secret its kubeconfig carries), C(issued) (when),
      C(retiring) (tokens a rotation replaced, with the time they are deleted) and C(revoked_at).
  returned: on a control plane
  type: list
  elements: dict
cluster_id:
  description: The app cluster's id as Klutch derives it; null before the konnector role ran.
  returned: on an app cluster
  type: str
  sample: 3fK9aQ
bindings:
  description:
    - The app cluster's bindings, each with C(name), C(claims) (group, resource, state), C(conditions) (status by
      type), C(crd) (C(present), C(in_step_with_export), C(export_hash)), C(instances) (local count), C(pending)
      (the next sync pass's writes by direction and kind), C(drifting) and its C(problems). Fields that need the
      control plane are null when it cannot be read with the binding's kubeconfig.
  returned: on an app cluster
  type: list
  elements: dict
orphaned_instances:
  description: CRDs whose binding is gone while the syncer's finalizer still holds instances, with their count.
  returned: on an app cluster
  type: list
  elements: dict
  sample: [{"crd": "postgresqlinstances.samples.klutch.bind", "count": 3}]
"""

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import report
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule


def main():
    module = KlutchModule(
        argument_spec=dict(side=dict(type="str", choices=["auto", "control_plane", "app_cluster"], default="auto")),
        supports_check_mode=True)
    try:
        client = module.client()
        side = module.params["side"] if module.params["side"] != "auto" else report.side_of(client)
        if side == "control_plane":
            found = report.control_plane_report(client)
        elif side == "app_cluster":
            found = report.app_cluster_report(client, lambda config: module.client({"kubeconfig": config}))
        else:
            found = {"side": None, "problems": ["%s serves no Klutch API: run the klutch.bind.control_plane or "
                                                "klutch.bind.konnector role on it first" % client.label]}
    except ClusterError as error:
        module.fail(error)
    module.exit(changed=False, cluster=client.label, **found)


if __name__ == "__main__":
    main()
