# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An APIServiceExportTemplate on the control plane, as klutch_template writes it: the exported API and its
permission claims checked against what the cluster serves, and no second template for the same API. The
template and its checks are plan/templates.py's."""

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import diff, for_output
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    api_name,
    group_version,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import EXPORT_TEMPLATES
from ansible_collections.klutch.bind.plugins.module_utils.plan import templates


def refuse(name, namespace, problem):
    raise ConfigError("APIServiceExportTemplate %s/%s: %s" % (namespace, name, problem))


def check_exported_api(client, params, claims):
    name, namespace = params["name"], params["namespace"]
    crd_name = api_name(params["group"], params["resource"])
    problem = templates.exported_api_problem(
        client.get(CUSTOM_RESOURCE_DEFINITIONS, crd_name), crd_name, params["version"])
    if problem:
        refuse(name, namespace, problem)
    for claim in claims:
        api_version = group_version(claim["group"], claim["version"])
        served = set(entry.get("name") for entry in client.api_resources(api_version).get("resources") or [])
        problem = templates.claim_problem(claim, served)
        if problem:
            refuse(name, namespace, problem)


def permission_claims(params):
    return [templates.permission_claim(claim) for claim in params["permission_claims"]]


def unvalidated(params, warn, reason):
    """Check mode on a control plane that an earlier task only dry-ran: what would be created."""
    warn("Check mode: %s The template was not validated by the API server." % reason)
    return {"changed": True, "template": templates.export_template(
        params["name"], params["namespace"], params["group"], params["resource"], params["version"],
        permission_claims(params))}


def without_template_crd(client, check_mode, params, warn):
    """The result on a control plane that does not serve templates: nothing to delete, or check mode's guess."""
    missing = ("%s does not serve APIServiceExportTemplates. Install the Klutch CRDs first, with the "
               "klutch.bind.control_plane role." % client.label)
    if params["state"] == "absent":
        return {"changed": False, "template": {}}
    if not check_mode:
        refuse(params["name"], params["namespace"], missing)
    # In check mode the CRDs may be about to be installed by an earlier task that only dry-ran.
    return unvalidated(params, warn, missing)


def check_api(client, params, claims, warn):
    """The exported API and the claims as validate_api asks; without it, a warning when the CRD is missing."""
    if params["validate_api"]:
        check_exported_api(client, params, claims)
    elif client.get(CUSTOM_RESOURCE_DEFINITIONS, api_name(params["group"], params["resource"])) is None:
        warn("validate_api is false and %s has no CRD %s.%s yet: the template exports nothing until "
             "it exists." % (client.label, params["resource"], params["group"]))


def apply_template(client, params, claims):
    """Apply the template unless another one exports the same API; the Change."""
    name, namespace = params["name"], params["namespace"]
    existing = client.list(EXPORT_TEMPLATES)[0]
    others = templates.conflicting_templates(existing, name, namespace, params["group"], params["resource"])
    if others:
        refuse(name, namespace, "%s.%s is already exported by template %s; Klutch would use only one of "
               "them. Change that template instead, or delete it first." % (
                   params["resource"], params["group"], ", ".join(others)))
    desired = templates.export_template(name, namespace, params["group"], params["resource"],
                                        params["version"], claims)
    current = next((item for item in existing if templates.template_key(item) == (namespace, name)), None)
    return client.apply(EXPORT_TEMPLATES, desired, before=current)


def template(client, check_mode, params, warn):
    """Write (state present) or delete (absent) the template of klutch_template's options: (result, diff or None).

    `warn(message)` reports what the run could not check."""
    if client.resource_for(EXPORT_TEMPLATES.api_version, EXPORT_TEMPLATES.kind) is None:
        return without_template_crd(client, check_mode, params, warn), None
    if params["state"] == "absent":
        change = client.delete(EXPORT_TEMPLATES, params["name"], params["namespace"])
    else:
        claims = permission_claims(params)
        check_api(client, params, claims, warn)
        if check_mode and client.get(NAMESPACES, params["namespace"]) is None:
            return unvalidated(params, warn, "the namespace %s does not exist yet." % params["namespace"]), None
        change = apply_template(client, params, claims)
    return {"changed": change.changed, "template": for_output(change.after) or {}}, diff(change) if change.changed else None
