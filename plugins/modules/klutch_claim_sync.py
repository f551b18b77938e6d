#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: klutch_claim_sync
short_description: One full konnector pass on an app cluster, from a playbook
version_added: 0.1.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - Does once what Klutch's konnector does continuously, for all or the named APIServiceBindings
    of an app cluster, reaching the control plane through each binding's kubeconfig Secret (so
    with the consumer's limited rights).
  - "Instances: the consumer's spec goes up (the consumer wins), the provider's status comes down
    (the provider wins); instances the provider created are adopted; the C(klutch.anynines.com/syncer)
    finalizer makes a consumer's delete reach the control plane; an instance the provider deleted
    while the consumer still has it is created again. A consumer namespace C(N) is mapped to
    C(<P>-N) through an C(APIServiceNamespace), which the control plane's backend (or
    M(klutch.bind.klutch_export_request)) fills in; its objects follow on the next pass."
  - "Claimed objects (the binding's accepted permission claims, for example the connection Secrets of
    claims): the owner side wins, its copy is created, reverted and deleted with it; C(names) and
    C(labelSelectors) are honoured. Unlike Klutch, under C(owner: Provider) an object that the
    consumer made itself is never uploaded to the control plane."
  - Lists each kind once per side (on the control plane once per mapped namespace when the consumer
    may not list cluster-wide), never reads objects one by one, and writes concurrently.
options:
  bindings:
    description: Names of the APIServiceBindings to sync; all in C(klutch-bind) when empty.
    type: list
    elements: str
    default: []
  prune:
    description:
      - Delete objects whose counterpart is gone, that is bound instances on the control plane whose
        consumer object was deleted while nothing ran, and copies of claimed objects whose owner
        deleted them.
    type: bool
    default: true
  concurrency:
    description: How many objects are written at the same time.
    type: int
    default: 8
extends_documentation_fragment:
  - klutch.bind.k8s_auth
  - klutch.bind.attributes
attributes:
  check_mode:
    support: full
    details: Plans the same RV(operations) and sends every write as a server-side dry run.
  diff_mode:
    support: none
    details: Operations are reported per object in RV(operations) instead, without Secret data.
notes:
  - The agent in the C(klutch.bind.konnector) role runs the same pass continuously.
seealso:
  - module: klutch.bind.klutch_binding
"""

EXAMPLES = r"""
- name: Sync every binding of an app cluster once
  klutch.bind.klutch_claim_sync:
    kubeconfig: "{{ kubeconfig }}"
  register: synced

- name: Show what a pass would do
  klutch.bind.klutch_claim_sync:
    bindings: [postgresqlinstances.samples.klutch.bind]
  check_mode: true
"""

RETURN = r"""
synced:
  description: Writes per binding, direction (C(up) to the control plane, C(down) to the app cluster) and kind.
  returned: always
  type: dict
  sample: {"postgresqlinstances.samples.klutch.bind": {"up": {"instances": 1}, "down": {"secrets": 1}}}
removals_withheld:
  description: >-
    Per binding, why nothing was removed on the control plane for objects missing on this app cluster:
    its cluster id differs from the one the consumer was bound from (a restored or rebuilt cluster,
    or a binding Secret copied to another cluster). Each is also a warning.
  returned: when removals were withheld
  type: dict
  sample: {"postgresqlinstances.samples.klutch.bind": "Binding ...: nothing was removed ..."}
operations:
  description: Each write of the pass, without bodies; in check mode the writes it would make.
  returned: always
  type: list
  elements: dict
  contains:
    binding:
      description: The APIServiceBinding the write belongs to.
      type: str
    direction:
      description: C(up) to the control plane or C(down) to the app cluster.
      type: str
    action:
      description: >-
        What the write does, for example create, delete, update_spec, update_status, annotate,
        add_finalizer, remove_finalizer, map_namespace.
      type: str
    kind:
      description: C(instances), or the plural of the claimed kind (C(secrets), C(configmaps)).
      type: str
    namespace:
      description: The object's namespace on the side it is written to; null for cluster-scoped objects.
      type: str
    name:
      description: The object's name on the side it is written to.
      type: str
  sample: [{"binding": "postgresqlinstances.samples.klutch.bind", "direction": "down", "action": "create",
            "kind": "secrets", "namespace": "shop", "name": "orders-creds"}]
"""

from ansible_collections.klutch.bind.plugins.module_utils import validate
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import sync
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule


def main():
    module = KlutchModule(
        argument_spec=dict(
            bindings=dict(type="list", elements="str", default=[]),
            prune=dict(type="bool", default=True),
            concurrency=dict(type="int", default=sync.CONCURRENCY),
        ),
        checks={"bindings": validate.each(validate.kubernetes_name("an APIServiceBinding (<plural>.<group>)")),
                "concurrency": validate.positive(unit="workers")},
        supports_check_mode=True,
    )
    params = module.params
    result = {"synced": {}, "operations": []}
    try:
        written, errors = sync.sync_once(module.client(), params["bindings"],
                                         lambda config: module.client({"kubeconfig": config}),
                                         params["prune"], params["concurrency"], result)
    except ClusterError as error:
        module.fail(error, **result)
    result["changed"] = written > 0 or (module.check_mode and bool(result["operations"]))
    for message in result.get("removals_withheld", {}).values():
        module.warn(message)
    if errors:
        module.fail(sync.failed_writes(errors, result["operations"]), **result)
    module.exit(**result)


if __name__ == "__main__":
    main()
