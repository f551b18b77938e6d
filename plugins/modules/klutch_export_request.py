#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

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
    creates C(cluster-<5 characters>), a name derived from the identity, so that two first runs for
    one consumer at the same time make one namespace; creates the ServiceAccount C(klutch-binder), its
    token Secret, the kubeconfig Secret C(kubeconfig) and C(ClusterBinding cluster).
  - A consumer that has a namespace under another cluster id is refused, unless O(previous_cluster_id)
    names that id, since a new namespace would provision its instances again, empty.
  - For each of O(resources), checks that the CRD and an export template exist, then writes the
    C(APIServiceExportRequest) and the C(APIServiceExport) with the CRD snapshot, its hash, the
    informer scope and the template's permission claims, and marks the request Succeeded.
  - Grants least privilege, unlike Klutch; the static C(klutch-binder) role in the consumer
    namespace, and a C(klutch-binder-<namespace>) ClusterRole with the exported kinds and
    the claimed kinds (read-only for claims the provider owns), bound only in the namespaces mapped
    for the consumer (O(consumer_scope=Namespaced)) or cluster-wide (O(consumer_scope=Cluster)).
  - Maps each C(APIServiceNamespace) the consumer created to namespace C(<namespace>-<name>) with
    its RoleBinding, and records it in the object's status; when that name would be longer than 63
    characters, to C(<namespace>-<start of name>-<hash>). One that cannot be mapped fails the task
    after everything else was done.
  - The consumer's RBAC, credentials, C(ClusterBinding) spec and exports are applied with force, so a
    consumer that Klutch's backend served before is taken over instead of failing with a conflict.
  - Re-running after the provider's CRD changed updates the snapshot and its hash.
  - Everything is checked before the first write; bad input changes nothing.
options:
  cluster_id:
    description:
      - The app cluster's id as Klutch derives it (from the UID of its C(klutch-bind) namespace);
        M(klutch.bind.klutch_cluster_info) returns it.
    type: str
    required: true
  resources:
    description:
      - The APIs to export, each a CRD C(<resource>.<group>) that an export template exports.
      - Required, and not empty, with O(state=present). With O(state=absent), the APIs to withdraw;
        empty withdraws them all.
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
  state:
    description:
      - V(absent) removes the listed exports and requests (all of the consumer's when O(resources) is
        empty) and recomputes the RBAC; instances and Secrets stay.
      - V(revoked) deletes the consumer's ServiceAccount and token Secrets, so that every token it holds is
        refused from then on, and marks its namespace revoked. Its exports, namespaces, instances and
        Secrets stay; its app cluster reports the binding as not connected. Later runs with
        O(state=present) are refused until O(reinstate) is set.
    type: str
    choices: [present, absent, revoked]
    default: present
  delete_namespace:
    description:
      - With O(state=absent) and no O(resources), also delete the consumer's namespace and the namespaces
        mapped for it, and with them every instance and claimed object in them.
      - Together with O(resources) it is refused, before anything is changed, since it would remove more
        than those APIs.
    type: bool
    default: false
  wait_timeout:
    description: Seconds to wait for the ServiceAccount token.
    type: int
    default: 30
extends_documentation_fragment:
  - klutch.bind.export
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
  - The returned RV(kubeconfig) holds the consumer's token. The module's action hides every result that
    carries it from output, as C(no_log=true) would (register it to use it); hand it to
    M(klutch.bind.klutch_binding) only.
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
  register: exported

- name: Rotate the consumer's token once it is 30 days old (run daily); the old one works 5 more minutes
  klutch.bind.klutch_export_request:
    consumer: app-1
    cluster_id: X1y2Z3
    resources:
      - group: samples.klutch.bind
        resource: postgresqlinstances
    rotate_after: 30d
    rotation_grace: 300

- name: Lock a consumer out at once and keep its data
  klutch.bind.klutch_export_request:
    consumer: app-1
    cluster_id: X1y2Z3
    state: revoked

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
  description: The consumer's kubeconfig (YAML text); secret, so the result that holds it is hidden from
    output.
  returned: with O(state=present), not in check mode for a new consumer
  type: str
revoked_at:
  description: When the consumer's credentials were revoked.
  returned: with O(state=revoked)
  type: str
  sample: "2026-12-07T20:15:00Z"
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
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle.export import export_request
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule


def main():
    module = KlutchModule(
        argument_spec=dict(
            arguments.EXPORT,
            cluster_id=dict(type="str", required=True),
            resources=dict(type="list", elements="dict", default=[], options=arguments.API),
            state=dict(type="str", choices=["present", "absent", "revoked"], default="present"),
            delete_namespace=dict(type="bool", default=False),
            wait_timeout=dict(type="int", default=30),
        ),
        checks=dict(arguments.EXPORT_CHECKS, resources=validate.apis),
        supports_check_mode=True,
    )
    try:
        result, run = export_request(module.client(), module.check_mode, module.params)
    except ClusterError as error:
        module.fail(error)
    result.update(changed=run.changed, results=run.results)
    if module.diff_mode:
        result["diff"] = run.diffs
    module.exit(**result)


if __name__ == "__main__":
    main()
