#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

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
    version is read. A CustomResourceDefinition applied earlier in the same task is waited for until
    Established, so objects of its kind can follow it.
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
      - With O(state=present), wait until every CustomResourceDefinition is Established and every
        other object meets O(wait_condition) (objects are not waited for without one); with
        O(state=absent), wait until every object is gone.
    type: bool
    default: false
  wait_condition:
    description:
      - The status condition to wait for on objects other than CustomResourceDefinitions, which
        are always waited for until C(Established).
    type: dict
    suboptions:
      type:
        description: The condition type, for example C(Ready) or C(Healthy).
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

- name: Wait for a Crossplane Configuration to be Healthy
  klutch.bind.klutch_manifest:
    definition: "{{ lookup('ansible.builtin.file', 'configuration.yaml') }}"
    wait: true
    wait_condition:
      type: Healthy

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
  sample: [{"apiVersion": "v1", "kind": "ConfigMap", "name": "settings", "namespace": "default", "action": "created"}]
diff:
  description: Before and after of every object that changed, Secrets redacted.
  returned: in diff mode
  type: list
  elements: dict
"""

from ansible_collections.klutch.bind.plugins.module_utils import manifests
from ansible_collections.klutch.bind.plugins.module_utils.errors import ClusterError, ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.objects import condition_holds, diff
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule

CRD_KIND = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")


def plan(client, objects, default_namespace, deleting):
    """(object, Resource or None, namespace) for each object; fails before any write on bad input.

    When deleting, a kind the cluster does not serve has no objects, so it is not an error.
    """
    promised = {}  # kinds that a CRD earlier in the task will serve: {(apiVersion, kind): namespaced}
    planned = []
    for obj in objects:
        kind = (obj["apiVersion"], obj["kind"])
        resource = client.resource_for(*kind)
        if resource is None and kind not in promised:
            if not deleting:
                raise ConfigError(
                    "%s %s: %s does not serve kind %s in %s. Install its CustomResourceDefinition first, or "
                    "list the CRD before this object." % (obj["kind"], obj["metadata"]["name"], client.label, kind[1],
                                                          kind[0]))
            planned.append((obj, None, None))
            continue
        namespaced = resource.namespaced if resource is not None else promised[kind]
        namespace = (obj["metadata"].get("namespace") or default_namespace) if namespaced else None
        if namespaced and not namespace:
            raise ConfigError("%s %s is namespaced but names no namespace: set metadata.namespace or the namespace option."
                              % (obj["kind"], obj["metadata"]["name"]))
        if kind == CRD_KIND:
            promised.update(manifests.served_by(obj))
        planned.append((obj, resource, namespace))
    return planned


def apply_all(module, client, planned):
    results, diffs = [], []
    params = module.params
    for obj, resource, namespace in planned:
        entry = manifests.identity(obj)
        entry["namespace"] = namespace
        if resource is None:
            # Check mode: the CRD that serves this kind was only dry-run applied above.
            resource = client.resource_for(obj["apiVersion"], obj["kind"])
        if resource is None:
            entry["action"] = "created"
            results.append(entry)
            continue
        body = dict(obj, metadata=dict(obj["metadata"], namespace=namespace) if namespace else obj["metadata"])
        change = client.apply(resource, body, force=params["force_conflicts"])
        entry["action"] = "unchanged" if not change.changed else ("created" if change.before is None else "updated")
        results.append(entry)
        if change.changed:
            diffs.append(diff(change))
        name = obj["metadata"]["name"]
        is_crd = (obj["apiVersion"], obj["kind"]) == CRD_KIND
        if is_crd and change.changed:  # its kinds may be new: read their group versions again when used
            for api_version, _kind in manifests.served_by(obj):
                client.forget_group_version(api_version)
        if module.check_mode:
            continue
        # A CRD is ready when Established, whatever the task waits for in its other objects.
        condition = {"type": "Established", "status": "True"} if is_crd else params["wait_condition"]
        if condition and (is_crd and change.changed or params["wait"]):
            client.wait(resource, name, namespace, condition_holds(condition["type"], condition["status"]),
                        params["wait_timeout"],
                        "%s=%s" % (condition["type"], condition["status"]))
    return results, diffs


def delete_all(module, client, planned):
    results, diffs = [], []
    for obj, resource, namespace in reversed(planned):
        entry = manifests.identity(obj)
        entry["namespace"] = namespace
        name = obj["metadata"]["name"]
        change = client.delete(resource, name, namespace) if resource is not None else None
        entry["action"] = "deleted" if change and change.changed else "absent"
        results.append(entry)
        if change and change.changed:
            diffs.append(diff(change))
            if module.params["wait"] and not module.check_mode:
                client.wait(resource, name, namespace, lambda current: current is None, module.params["wait_timeout"],
                            "deleted")
    return results, diffs


def main():
    module = KlutchModule(
        argument_spec=dict(
            definition=dict(type="raw", aliases=["resource_definition", "inline"]),
            src=dict(type="path"),
            namespace=dict(type="str"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            force_conflicts=dict(type="bool", default=False),
            wait=dict(type="bool", default=False),
            wait_condition=dict(type="dict", options=dict(
                type=dict(type="str", required=True),
                status=dict(type="str", choices=["True", "False", "Unknown"], default="True"),
            )),
            wait_timeout=dict(type="int", default=120),
        ),
        mutually_exclusive=[("definition", "src")],
        required_one_of=[("definition", "src")],
        supports_check_mode=True,
    )
    try:
        objects = manifests.load(module.params["definition"], module.params["src"])
        client = module.client()
        planned = plan(client, objects, module.params["namespace"], module.params["state"] == "absent")
        if module.params["state"] == "present":
            results, diffs = apply_all(module, client, planned)
        else:
            results, diffs = delete_all(module, client, planned)
    except ClusterError as error:
        module.fail(error)
    result = dict(changed=any(entry["action"] in ("created", "updated", "deleted") for entry in results),
                  results=results)
    if module.diff_mode:
        result["diff"] = diffs
    module.exit(**result)


if __name__ == "__main__":
    main()
