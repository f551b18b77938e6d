# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Exposing an API: the APIServiceExportTemplate that exports a CRD, and the checks that make it trustworthy."""

from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import group_version
from ansible_collections.klutch.bind.plugins.module_utils.kinds import EXPORT_TEMPLATES


def permission_claim(claim):
    """A PermissionClaim in Klutch's wire format from the module's claim option."""
    selector = {}
    if claim.get("names"):
        selector["names"] = list(claim["names"])
    if claim.get("namespaces") is not None:
        selector["namespaces"] = list(claim["namespaces"])
    if claim.get("label_selectors"):
        selector["labelSelectors"] = [dict((key, label_value(value)) for key, value in labels.items())
                                      for labels in claim["label_selectors"]]
    if claim.get("owner"):
        selector["owner"] = claim["owner"]
    wire = {"group": claim.get("group") or "", "resource": claim["resource"], "version": claim.get("version") or "v1",
            "required": bool(claim.get("required"))}
    if selector:
        wire["selector"] = selector
    return wire


def label_value(value):
    """Label values are strings; YAML's true and 1 become "true" and "1", as kubectl writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def export_template(name, namespace, group, resource, version=None, permission_claims=None):
    """The APIServiceExportTemplate that exports CRD <resource>.<group>; claims in wire format."""
    selector = {"group": group or "", "resource": resource}
    if version:
        selector["version"] = version
    spec = {"APIServiceSelector": selector}
    if permission_claims:
        spec["permissionClaims"] = list(permission_claims)
    return {"apiVersion": EXPORT_TEMPLATES.api_version, "kind": EXPORT_TEMPLATES.kind,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def served_versions(crd):
    return [item["name"] for item in (crd.get("spec") or {}).get("versions") or [] if item.get("served")]


def exported_api_problem(crd, name, version):
    """Why the CRD `name` cannot be exported as asked, or None."""
    if crd is None:
        return ("the CRD %s is not served on the control plane. Publish the data service first (its XRD creates the "
                "CRD), fix group and resource, or set validate_api: false to skip this check." % name)
    versions = served_versions(crd)
    if not versions:
        return "the CRD %s serves no version, so there is nothing to bind. Serve a version first." % name
    if version and version not in versions:
        return "the CRD %s does not serve version %s; it serves %s. Set version to one of them." % (
            name, version, ", ".join(versions) or "none")
    return None


def claim_problem(claim, served_plurals):
    """Why a permission claim names something the control plane does not serve, or None."""
    if claim["resource"] in served_plurals:
        return None
    where = group_version(claim["group"], claim["version"])
    return ("permission claim %s in %s: the control plane does not serve that resource. Check group, resource "
            "(plural, lower case) and version." % (claim["resource"], where))


def template_key(template):
    return template["metadata"].get("namespace"), template["metadata"]["name"]


def exported_api(template):
    selector = (template.get("spec") or {}).get("APIServiceSelector") or {}
    return selector.get("group", ""), selector.get("resource")


def conflicting_templates(templates, name, namespace, group, resource):
    """Other templates that already export <resource>.<group>; Klutch would silently pick one."""
    return sorted("%s/%s" % template_key(item) for item in templates
                  if exported_api(item) == (group or "", resource) and template_key(item) != (namespace, name))
