#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: klutch_template
short_description: Make a data-service API available for binding with an APIServiceExportTemplate
version_added: 0.1.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - Creates, updates or deletes an C(APIServiceExportTemplate) (C(example-backend.klutch.anynines.com/v1alpha1))
    on the control plane, in Klutch's wire format, so that app clusters can bind the CRD
    C(<resource>.<group>).
  - Unlike Klutch, which accepts any template and then silently exports nothing, the module refuses,
    before writing anything, a template whose CRD or version the control plane does not serve, a
    permission claim on a resource the control plane does not serve, and a second template for an
    API that another template already exports.
  - Writes are server-side applies planned by a dry run, so a run that changes nothing makes no write request.
options:
  name:
    description:
      - The template's name. Klutch's own templates are named after the resource, for example C(postgresqlinstances).
    type: str
    required: true
  namespace:
    description:
      - The template's namespace. Klutch looks templates up in every namespace.
    type: str
    default: crossplane-system
  state:
    description:
      - V(present) creates or updates the template, V(absent) deletes it.
    type: str
    choices: [present, absent]
    default: present
  group:
    description:
      - The API group of the exported CRD, for example C(anynines.com). Required with O(state=present).
    type: str
  resource:
    description:
      - The plural resource name of the exported CRD, for example C(postgresqlinstances). Required with O(state=present).
    type: str
  version:
    description:
      - A version of the CRD to name in the template; it must be served. Klutch exports every served version either way.
    type: str
  permission_claims:
    description:
      - Other resources that are synchronised between the clusters for each bound object, such as the
        connection Secret of a database.
    type: list
    elements: dict
    default: []
    suboptions:
      group:
        description: The API group of the claimed resource; empty for the core group.
        type: str
        default: ""
      resource:
        description: The plural resource name, for example C(secrets).
        type: str
        required: true
      version:
        description: The API version of the claimed resource.
        type: str
        default: v1
      owner:
        description:
          - Which side owns the claimed objects. V(Provider) objects are created on the control plane and
            copied to the app cluster, V(Consumer) objects the other way. Both when unset.
        type: str
        choices: [Provider, Consumer]
      names:
        description: Only objects with these names; all when unset.
        type: list
        elements: str
      namespaces:
        description:
          - Only objects in these namespaces; all when unset.
          - Set to V([]) for a cluster-scoped resource, as Klutch requires.
        type: list
        elements: str
      label_selectors:
        description: Only objects whose labels match one of these maps (values are strings); all when unset.
        type: list
        elements: dict
      required:
        description: Whether a binding needs this claim to be accepted.
        type: bool
        default: false
  validate_api:
    description:
      - Check that the control plane serves the exported CRD (and O(version)) and every claimed resource.
      - Set to V(false) to create a template before its CRD exists.
    type: bool
    default: true
extends_documentation_fragment:
  - klutch.bind.k8s_auth
  - klutch.bind.attributes
attributes:
  check_mode:
    support: full
    details: >-
      The apply is sent with C(dryRun=All), so the API server validates the template without storing it.
      On a cluster without the Klutch CRDs or without the template's namespace (an earlier task of the
      same check run would make them) it reports the template as created, with a warning, unvalidated.
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Make PostgreSQL instances bindable
  klutch.bind.klutch_template:
    name: postgresqlinstances
    group: anynines.com
    resource: postgresqlinstances
    version: v1

- name: Service bindings bring their credentials along
  klutch.bind.klutch_template:
    name: servicebindings
    group: anynines.com
    resource: servicebindings
    permission_claims:
      - resource: secrets
        owner: Provider
      - resource: configmaps
        owner: Provider
        label_selectors:
          - klutch.anynines.com/export: "true"

- name: Stop offering an API for new bindings
  klutch.bind.klutch_template:
    name: servicebindings
    state: absent
"""

RETURN = r"""
template:
  description: The template as the API server stored it (or would store it, in check mode); empty after a delete.
  returned: always
  type: dict
  sample:
    apiVersion: example-backend.klutch.anynines.com/v1alpha1
    kind: APIServiceExportTemplate
    metadata: {name: servicebindings, namespace: crossplane-system}
    spec:
      APIServiceSelector: {group: anynines.com, resource: servicebindings}
      permissionClaims:
        - {group: "", resource: secrets, version: v1, required: false, selector: {names: ["*"], namespaces: ["*"], owner: Provider}}
diff:
  description: The template before and after.
  returned: in diff mode, when changed
  type: dict
"""

from ansible_collections.klutch.bind.plugins.module_utils import arguments, validate
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import expose
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule


def main():
    module = KlutchModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            namespace=dict(type="str", default="crossplane-system"),
            state=arguments.STATE,
            group=dict(type="str"),
            resource=dict(type="str"),
            version=dict(type="str"),
            permission_claims=dict(type="list", elements="dict", default=[], options=dict(
                group=dict(type="str", default=""),
                resource=dict(type="str", required=True),
                version=dict(type="str", default="v1"),
                owner=dict(type="str", choices=["Provider", "Consumer"]),
                names=dict(type="list", elements="str"),
                namespaces=dict(type="list", elements="str"),
                label_selectors=dict(type="list", elements="dict"),
                required=dict(type="bool", default=False),
            )),
            validate_api=dict(type="bool", default=True),
        ),
        required_if=[("state", "present", ("group", "resource"))],
        checks={"name": validate.kubernetes_name("an APIServiceExportTemplate"),
                "namespace": validate.kubernetes_name("a namespace", "label"),
                "group": validate.kubernetes_name("an API group"),
                "resource": validate.kubernetes_name("a resource (the plural name)", "label"),
                "permission_claims": validate.permission_claims},
        supports_check_mode=True,
    )
    try:
        result, diff = expose.template(module.client(), module.check_mode, module.params, module.warn)
    except ClusterError as error:
        module.fail(error)
    if module.diff_mode and diff is not None:
        result["diff"] = diff
    module.exit(**result)


if __name__ == "__main__":
    main()
