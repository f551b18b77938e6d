# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Binding on an app cluster: the APIServiceBinding, the claims it accepts, the CRD from an export and the
konnector's rights; the app cluster's id.

Pure functions over plain dicts; klutch_binding and the konnector agent call them with what they read.
"""

import hashlib

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import stable_conditions
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CLUSTER_ROLES,
    ROLE_BINDINGS,
    Resource,
    api_name,
    group_version,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_BINDINGS, KLUTCH_API_VERSION
from ansible_collections.klutch.bind.plugins.module_utils.plan.consumers import base62

BIND_NAMESPACE = "klutch-bind"
KUBECONFIG_KEY = "kubeconfig"
KUBECONFIG_SECRET_PREFIX = "kubeconfig-"
# The konnector agent's ServiceAccount, and the ClusterRoles its rights aggregate into: the bound kinds
# cluster-wide, and the claimed kinds, which it binds itself only in the namespaces that are bound.
KONNECTOR = "klutch-bind-konnector"
KONNECTOR_CLAIMS = KONNECTOR + "-claims"
AGGREGATE_LABEL = "klutch.bind/aggregate-to-"
OBJECT_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]


def cluster_id(klutch_bind_namespace_uid):
    """An app cluster's id as Klutch's CLI derives it: from the UID of its klutch-bind namespace."""
    return base62(hashlib.sha224(klutch_bind_namespace_uid.encode("utf-8")).digest())[:6]


def foreign_cluster_problem(identity, bind_namespace):
    """Why an app cluster is not provably the one a consumer was bound from, or None.

    The consumer's identity on the control plane ends in `#<cluster id>`, and the id comes from the
    uid of the app cluster's klutch-bind namespace. A restored or rebuilt cluster, or a binding
    Secret copied to another cluster, shows a different id: there, an object missing on the app
    side says nothing about the consumer's wishes, so nothing is removed for it upstream.
    """
    expected = (identity or "").rpartition("#")[2]
    if bind_namespace is None or not (bind_namespace.get("metadata") or {}).get("uid"):
        return "the app cluster has no namespace %s, so its cluster id is unknown" % BIND_NAMESPACE
    found = cluster_id(bind_namespace["metadata"]["uid"])
    if not expected:
        return "the consumer's namespace carries no identity with a cluster id"
    if found != expected:
        return "this app cluster's id is %s, but the consumer was bound from cluster %s" % (found, expected)
    return None


def claim_api_version(claim):
    return group_version(claim.get("group"), claim["version"])


def acceptable_claims(binding_name, claims, accepted):
    """Each claim with state Accepted or Rejected; ConfigError when a required claim would be rejected.

    `accepted` lists claim names (`<resource>[.<group>]`, as api_name makes them); "*" accepts every claim.
    """
    unknown = sorted(set(accepted) - {"*"} - set(api_name(claim.get("group"), claim["resource"]) for claim in claims))
    if unknown:
        raise ConfigError("accept_claims names %s, which the export %s does not claim (a typo?). Its claims are: %s. "
                          "Remove or correct it." % (", ".join(unknown), binding_name,
                                                     ", ".join(sorted(api_name(claim.get("group"), claim["resource"]) for claim in claims)) or "none"))
    decided = []
    for claim in claims:
        state = "Accepted" if "*" in accepted or api_name(claim.get("group"), claim["resource"]) in accepted else "Rejected"
        if state == "Rejected" and claim.get("required"):
            raise ConfigError("The export %s requires the permission claim on %s, and accept_claims does not accept "
                              "it. Add %s to accept_claims, or do not bind this API." % (
                                  binding_name, api_name(claim.get("group"), claim["resource"]), api_name(claim.get("group"), claim["resource"])))
        decided.append(dict(claim, state=state))
    return decided


def instance_version(export_spec):
    """The version through which the konnector reads and writes a bound kind: the storage version.

    With several served versions and no conversion webhook, the API server prunes a write to the
    schema of the version it was sent through; only the storage version holds every field, so a
    write through it never drops what another writer set through another version.
    """
    served = [item for item in export_spec.get("versions") or [] if item.get("served", True)]
    return next((item["name"] for item in served if item.get("storage")), None) or \
        next((item["name"] for item in served), None)


def instance_resource(spec):
    """The Resource through which a bound kind's instances are read and written (instance_version), from an
    export's or a CRD's spec, which have the same shape; None when it serves no version."""
    version = instance_version(spec)
    if version is None:
        return None
    return Resource(group_version(spec["group"], version), spec["names"]["kind"], spec["names"]["plural"],
                    namespaced=spec["scope"] == "Namespaced")


def binding(name, secret_name, claims):
    return {"apiVersion": KLUTCH_API_VERSION, "kind": API_SERVICE_BINDINGS.kind,
            "metadata": {"name": name, "namespace": BIND_NAMESPACE},
            "spec": {"kubeconfigSecretRef": {"namespace": BIND_NAMESPACE, "name": secret_name, "key": KUBECONFIG_KEY},
                     "permissionClaims": claims}}


def binding_status(provider_pretty_name, now, previous=None, problem=None):
    """What the binding says: all conditions True once its export is read and its CRD in place.

    `problem` (condition, reason, message) is what the konnector found wrong: that condition and the
    ones that depend on it (SecretValid -> Connected -> Ready) are False with that reason.
    """
    order = ("SecretValid", "Connected", "Ready")
    failed_from = order.index(problem[0]) if problem else len(order)
    wanted = [{"type": condition, "status": "True"} if index < failed_from else
              {"type": condition, "status": "False", "reason": problem[1], "message": problem[2]}
              for index, condition in enumerate(order)]
    return {"providerPrettyName": provider_pretty_name,
            "conditions": stable_conditions(wanted, (previous or {}).get("conditions"), now)}


def owner_reference(bound):
    return {"apiVersion": KLUTCH_API_VERSION, "kind": API_SERVICE_BINDINGS.kind, "name": bound["metadata"]["name"],
            "uid": bound["metadata"]["uid"], "controller": True}


def crd_from_export(export, bound):
    """The CRD an export describes, owned by its binding, as the konnector creates it."""
    spec = export["spec"]
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": export["metadata"]["name"], "ownerReferences": [owner_reference(bound)]},
            "spec": {"group": spec["group"], "names": spec["names"], "scope": spec["scope"],
                     "versions": spec["versions"]}}


def foreign_crd_problem(crd, binding_name):
    """Why an existing CRD is not ours to change (Klutch's ForeignCustomResourceDefinition), or None."""
    if crd is None:
        return None
    owners = [ref for ref in (crd["metadata"].get("ownerReferences") or [])
              if ref.get("kind") == API_SERVICE_BINDINGS.kind and ref.get("name") == binding_name
              and str(ref.get("apiVersion", "")).startswith("klutch.anynines.com/")]
    if owners:
        return None
    return ("The app cluster already has CRD %s, and no APIServiceBinding %s owns it "
            "(ForeignCustomResourceDefinition). Remove that CRD first, or do not bind this API on this cluster."
            % (crd["metadata"]["name"], binding_name))


def kubeconfig_target(config):
    """(server, namespace) of a kubeconfig's current context: how Klutch's CLI recognises its Secret."""
    contexts = dict((item.get("name"), item.get("context") or {}) for item in config.get("contexts") or [])
    context = contexts.get(config.get("current-context")) or {}
    clusters = dict((item.get("name"), item.get("cluster") or {}) for item in config.get("clusters") or [])
    return (clusters.get(context.get("cluster")) or {}).get("server"), context.get("namespace")


def konnector_roles(binding_name, export_spec, claims):
    """The konnector agent's rights for one binding, as two ClusterRoles that Kubernetes aggregates.

    Into klutch-bind-konnector: the bound kind (and its status) everywhere, its own CRD by name (list and
    watch too, which the API server allows by name only to a request that selects that name).
    Into klutch-bind-konnector-claims: each accepted claim's kind, which the agent holds only in the
    namespaces it binds that role in. A binding added later extends the agent without redeploying it.
    """
    crd_rule = {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
                "resourceNames": [binding_name], "verbs": ["get", "list", "watch", "update", "patch"]}
    plural = export_spec["names"]["plural"]
    instance_rule = {"apiGroups": [export_spec["group"]], "resources": [plural, plural + "/status"],
                     "verbs": OBJECT_VERBS}
    claim_rules = [{"apiGroups": [claim.get("group") or ""], "resources": [claim["resource"]], "verbs": OBJECT_VERBS}
                   for claim in claims if claim.get("state") == "Accepted"]
    return [{"apiVersion": CLUSTER_ROLES.api_version, "kind": CLUSTER_ROLES.kind,
             "metadata": {"name": name, "labels": {AGGREGATE_LABEL + into: "true"}}, "rules": rules}
            for (into, name), rules in zip(konnector_role_names(binding_name),
                                           ([crd_rule, instance_rule], claim_rules))]


def konnector_role_names(binding_name):
    """(aggregated into, name) of the binding's two ClusterRoles."""
    return [(into, "%s-%s" % (into, binding_name)) for into in (KONNECTOR, KONNECTOR_CLAIMS)]


def claims_role_binding(namespace, service_account):
    """What the konnector agent writes in each bound namespace: its claimed-kind rights there.

    `service_account` is `<namespace>/<name>`; the agent may create this only because it holds
    `bind` on exactly that ClusterRole.
    """
    account_namespace, _sep, account_name = service_account.partition("/")
    return {"apiVersion": ROLE_BINDINGS.api_version, "kind": ROLE_BINDINGS.kind,
            "metadata": {"name": KONNECTOR_CLAIMS, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": KONNECTOR_CLAIMS},
            "subjects": [{"kind": "ServiceAccount", "name": account_name, "namespace": account_namespace}]}
