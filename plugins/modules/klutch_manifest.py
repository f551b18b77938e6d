#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: klutch_manifest
short_description: Server-side apply or delete Kubernetes manifests, writing only what changes
version_added: 0.1.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - Applies objects from inline definitions, a YAML file or a directory of YAML files with
    server-side apply (field manager C(klutch.bind)), or deletes them.
  - Each apply is planned with a server-side dry run first and only sent when it changes the
    object, so a run that changes nothing makes no write request at all.
  - Every kind and its namespace are checked before the first write, so a manifest with an unknown
    kind or a missing name changes nothing.
  - Resource types are known without discovery for core kinds; for other kinds only their own group
    version is read. A CustomResourceDefinition or Crossplane CompositeResourceDefinition applied
    earlier in the same task is waited for, so objects of its kinds can follow it.
  - The roles of this collection use it for CRDs, RBAC and Crossplane packages.
options:
  definition:
    description:
      - The objects, as a dict, a list of dicts, or YAML text with one or more documents.
      - C(List) kinds are unpacked.
      - Mutually exclusive with O(src).
    type: raw
    aliases: [resource_definition, inline]
  src:
    description:
      - A YAML file, or a directory whose C(.yaml) and C(.yml) files, subdirectories included, are
        read in path order, on the host that runs the module.
      - Mutually exclusive with O(definition).
    type: path
  namespace:
    description:
      - The namespace of namespaced objects that do not name one.
    type: str
  state:
    description:
      - V(present) applies the objects in order; V(absent) deletes them in reverse order.
    type: str
    choices: [present, absent]
    default: present
  force_conflicts:
    description:
      - Take over fields that another field manager owns, instead of failing with a conflict.
    type: bool
    default: false
  wait:
    description:
      - With O(state=present), wait until every object is ready after it is applied. Objects meet
        O(wait_condition) when it is given; otherwise CustomResourceDefinitions are ready when
        Established, Crossplane CompositeResourceDefinitions when Established and, if they name
        claims, Offered, Crossplane packages (Configuration, Provider, Function) when Installed
        and Healthy on the package they name, and Deployments when rolled out as
        C(kubectl rollout status) judges it (every replica updated and available, no old one left).
        Other kinds are not waited for without O(wait_condition).
      - A Deployment that does not roll out in time fails the task with each Pod's reason, such as an image
        that does not pull (with its name), a container that keeps crashing (with the last lines of
        its previous run's log), a Pod the scheduler cannot place (with its message).
      - CRDs and XRDs that changed are always waited for, so that objects of their kinds can follow
        them in the same task.
      - With O(state=absent), wait until every object is gone.
    type: bool
    default: false
  wait_condition:
    description:
      - The status condition to wait for on every object except CRDs and XRDs.
    type: dict
    suboptions:
      type:
        description: The condition type, for example C(Ready) or C(Synced).
        type: str
        required: true
      status:
        description: The condition status to wait for.
        type: str
        choices: ["True", "False", "Unknown"]
        default: "True"
  wait_timeout:
    description:
      - Seconds to wait for each object.
    type: int
    default: 120
extends_documentation_fragment:
  - klutch.bind.k8s_auth
  - klutch.bind.attributes
attributes:
  check_mode:
    support: full
    details: Every write is sent with C(dryRun=All); objects of a kind whose CRD is in the same task and not yet installed are reported as to be created.
  diff_mode:
    support: full
    details: Secret values are redacted in the diff.
notes:
  - Values of Secrets given in O(definition) are hidden from the module's logs and results; values
    read from files with O(src) are not task input and never shown.
"""

EXAMPLES = r"""
- name: Install CRDs shipped in a directory and wait until they are Established
  klutch.bind.klutch_manifest:
    src: "{{ role_path }}/files/crds"
    wait: true

- name: Apply a ClusterRole given inline
  klutch.bind.klutch_manifest:
    definition:
      apiVersion: rbac.authorization.k8s.io/v1
      kind: ClusterRole
      metadata:
        name: example-reader
      rules:
        - apiGroups: [""]
          resources: [configmaps]
          verbs: [get, list]

- name: Install a Crossplane Configuration and wait until its package is Installed and Healthy
  klutch.bind.klutch_manifest:
    definition: "{{ lookup('ansible.builtin.file', 'configuration.yaml') }}"
    wait: true

- name: Run a Deployment and wait until it is rolled out
  klutch.bind.klutch_manifest:
    src: manifests/agent-deployment.yaml
    wait: true
    wait_timeout: 300

- name: Wait for a claim to be Ready
  klutch.bind.klutch_manifest:
    src: claims/database.yaml
    wait: true
    wait_condition:
      type: Ready

- name: Remove objects again
  klutch.bind.klutch_manifest:
    src: manifests/
    state: absent
    wait: true
"""

RETURN = r"""
results:
  description: What happened to each object, in the order handled.
  returned: always
  type: list
  elements: dict
  contains:
    apiVersion:
      description: The object's apiVersion.
      type: str
    kind:
      description: The object's kind.
      type: str
    name:
      description: The object's name.
      type: str
    namespace:
      description: The object's namespace, null for cluster-scoped objects.
      type: str
    action:
      description: One of V(created), V(updated), V(unchanged), V(deleted), V(absent).
      type: str
    uid:
      description:
        - The object's uid on the cluster after the apply.
        - Null when the object is not on the cluster after the task (deleted, absent, or created only by the
          dry run of check mode).
      type: str
  sample: [{"apiVersion": "v1", "kind": "ConfigMap", "name": "settings", "namespace": "default", "action": "created",
            "uid": "6f1d2a4e-8c1b-4f57-9a0e-3b2c1d4e5f60"}]
diff:
  description: Before and after of every object that changed, Secrets redacted.
  returned: in diff mode
  type: list
  elements: dict
"""

from ansible_collections.klutch.bind.plugins.module_utils import arguments, validate
from ansible_collections.klutch.bind.plugins.module_utils.k8s import apply, manifests
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule


def main():
    module = KlutchModule(
        argument_spec=dict(
            definition=dict(type="raw", aliases=["resource_definition", "inline"]),
            src=arguments.SRC,
            namespace=dict(type="str"),
            state=arguments.STATE,
            force_conflicts=arguments.FORCE_CONFLICTS,
            wait=dict(type="bool", default=False),
            wait_condition=dict(type="dict", options=dict(
                type=dict(type="str", required=True),
                status=dict(type="str", choices=["True", "False", "Unknown"], default="True"),
            )),
            wait_timeout=dict(type="int", default=120),
        ),
        mutually_exclusive=[("definition", "src")],
        required_one_of=[("definition", "src")],
        checks={"namespace": validate.kubernetes_name("a namespace", "label"), "wait_timeout": validate.positive()},
        supports_check_mode=True,
    )
    params = module.params
    try:
        objects = manifests.load(params["definition"], params["src"])
        client = module.client()
        planned = apply.plan(client, objects, params["namespace"], params["state"] == "absent")
        if params["state"] == "present":
            results, diffs, _final = apply.apply_planned(
                client, planned, module.check_mode, force=params["force_conflicts"], wait=params["wait"],
                wait_condition=params["wait_condition"], wait_timeout=params["wait_timeout"])
        else:
            results, diffs = apply.delete_planned(client, planned, module.check_mode, params["wait"],
                                                  params["wait_timeout"])
    except ClusterError as error:
        module.fail(error)
    result = dict(changed=apply.changed(results), results=results)
    if module.diff_mode:
        result["diff"] = diffs
    module.exit(**result)


if __name__ == "__main__":
    main()
