# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Planning on the control plane: export templates and the checks that make them trustworthy.

Pure functions over plain dicts; the module and the backend agent call them with what they read.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import datetime
import hashlib
import json
import re

from ansible_collections.klutch.bind.plugins.module_utils.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.objects import stable_conditions
from ansible_collections.klutch.bind.plugins.module_utils.resources import EXPORT_TEMPLATES, KLUTCH_API_VERSION

RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"


def group_version(group, version):
    return "%s/%s" % (group, version) if group else version


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


# The consumer's side of the control plane: what Klutch's backend creates per app cluster.
IDENTITY_ANNOTATION = "example-backend.klutch.anynines.com/identity"
API_SERVICE_NAMESPACE_ANNOTATION = "klutch.anynines.com/api-service-namespace"
SPEC_HASH_ANNOTATION = "klutch.anynines.com/source-spec-hash"
BINDER = "klutch-binder"  # the consumer's ServiceAccount, its token Secret, RoleBinding and static ClusterRole
KUBECONFIG_SECRET = "kubeconfig"
NAMESPACE_PREFIX = "cluster"
# Verbs on instances: the konnector creates, updates and deletes them upstream and watches their status.
INSTANCE_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
# On objects the provider owns the konnector only reads and marks them (resource-owner annotation).
PROVIDER_CLAIM_VERBS = ["get", "list", "patch", "update", "watch"]
_BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def base62(data):
    """Big-endian bytes as a base-62 number, with Go's big.Int digits (0-9, a-z, A-Z)."""
    number = int(binascii.hexlify(data), 16) if data else 0
    digits = []
    while number:
        number, digit = divmod(number, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits)) or "0"


def consumer_identity(consumer, app_cluster_id):
    """The identity annotation value; Klutch uses `<OIDC subject>#<cluster id>`."""
    return "%s#%s" % (consumer, app_cluster_id)


def consumer_namespace(namespaces, identity):
    """The name of the namespace that carries `identity`, or None; ConfigError when several do."""
    found = sorted(ns["metadata"]["name"] for ns in namespaces
                   if ((ns["metadata"].get("annotations") or {}).get(IDENTITY_ANNOTATION)) == identity)
    if len(found) > 1:
        raise ConfigError("Namespaces %s all claim consumer identity %s on the control plane, so it is not clear which "
                          "holds this consumer's exports. Remove the %s annotation from all but one."
                          % (", ".join(found), identity, IDENTITY_ANNOTATION))
    return found[0] if found else None


def export_snapshot(crd):
    """The CRD's spec as an APIServiceExport carries it (served versions; storage only under a webhook)."""
    spec = crd["spec"]
    versions = [version for version in spec.get("versions") or [] if version.get("served")]
    if ((spec.get("conversion") or {}).get("strategy")) == "Webhook":
        versions = [dict(version, storage=True) for version in versions if version.get("storage")]
    copied = ("name", "served", "storage", "deprecated", "deprecationWarning", "schema", "subresources",
              "additionalPrinterColumns")
    return {"group": spec["group"], "names": spec["names"], "scope": spec["scope"],
            "versions": [dict((key, version[key]) for key in copied if version.get(key) is not None)
                         for version in versions]}


def spec_hash(snapshot):
    """base62(SHA-224) of the snapshot's JSON with sorted keys: stable across runs.

    Klutch hashes Go's encoding (struct field order), which Python cannot reproduce byte for byte;
    export_hash keeps whatever hash an export already carries while its snapshot is unchanged.
    """
    text = json.dumps(snapshot, sort_keys=True, separators=(",", ":"))
    return base62(hashlib.sha224(text.encode("utf-8")).digest())


def export_hash(snapshot, existing=None):
    """The hash to annotate: the stored one while the stored snapshot equals ours, else ours."""
    if existing is not None:
        stored = dict((key, (existing.get("spec") or {}).get(key)) for key in snapshot)
        kept = ((existing.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
        if stored == snapshot and kept:
            return kept
    return spec_hash(snapshot)


def api_name(group, resource):
    """Klutch's name for an API, its CRD and its export: `<resource>.<group>`, or `<resource>` for the core group."""
    return "%s.%s" % (resource, group) if group else resource


def export_problem(crd, informer_scope, existing=None):
    """Why the CRD cannot be exported with this informer scope, or None (checked before any write)."""
    name = crd["metadata"]["name"]
    if crd["spec"].get("scope") == "Cluster" and informer_scope != "Cluster":
        return ("%s is cluster-scoped, so a consumer can only bind it with consumer_scope Cluster (Klutch's export "
                "rule). Set consumer_scope: Cluster, or export a namespaced API." % name)
    stored = ((existing or {}).get("spec") or {}).get("informerScope")
    if stored and stored != informer_scope:
        return ("The consumer's export %s has informerScope %s, which cannot change. Remove it first (state: absent "
                "for this resource), or keep consumer_scope %s." % (name, stored, stored))
    return None


def api_service_export(crd, namespace, informer_scope, permission_claims, isolation="Prefixed", existing=None):
    snapshot = export_snapshot(crd)
    spec = dict(snapshot, informerScope=informer_scope, permissionClaims=list(permission_claims or []))
    if snapshot["scope"] == "Cluster":
        spec["clusterScopedIsolation"] = isolation
    return {"apiVersion": KLUTCH_API_VERSION, "kind": "APIServiceExport",
            "metadata": {"name": crd["metadata"]["name"], "namespace": namespace,
                         "annotations": {SPEC_HASH_ANNOTATION: export_hash(snapshot, existing)}},
            "spec": spec}


def export_request(name, namespace, group, resource, permission_claims):
    return {"apiVersion": KLUTCH_API_VERSION, "kind": "APIServiceExportRequest",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"resources": [{"group": group or "", "resource": resource,
                                    "permissionClaims": list(permission_claims or [])}]}}


def request_status(now, previous=None, failures=()):
    """The status Klutch's backend writes on a request it served: Succeeded, or Failed with the reasons."""
    if failures:
        message = "; ".join(failures)
        condition = {"status": "False", "severity": "Error", "reason": "ExportFailed", "message": message}
        status = {"phase": "Failed", "terminalMessage": message}
    else:
        condition = {"status": "True"}
        status = {"phase": "Succeeded"}
    wanted = [dict(condition, type=condition_type) for condition_type in ("ExportsReady", "Ready")]
    status["conditions"] = stable_conditions(wanted, (previous or {}).get("conditions"), now)
    return status


def export_differs(stored, wanted):
    """Whether an export needs writing: its hash or a field of its spec that we set differ."""
    if (stored.get("metadata") or {}).get("annotations", {}).get(SPEC_HASH_ANNOTATION) != \
            wanted["metadata"]["annotations"][SPEC_HASH_ANNOTATION]:
        return True
    return any((stored.get("spec") or {}).get(key) != value for key, value in wanted["spec"].items())


def claim_verbs(claim):
    """What the konnector does upstream with a claimed kind: it marks, but never writes, what the provider owns."""
    owner = (claim.get("selector") or {}).get("owner")
    return PROVIDER_CLAIM_VERBS if owner == "Provider" else INSTANCE_VERBS


def _rules(verbs):
    return [{"apiGroups": [group], "resources": [resource], "verbs": sorted(verbs[(group, resource)])}
            for group, resource in sorted(verbs)]


def consumer_rules(exports, claims=True):
    """Rules on each exported kind and, with `claims`, each claimed kind, once, with the least verbs."""
    verbs = {}
    for export in exports:
        spec = export["spec"]
        verbs[(spec["group"], spec["names"]["plural"])] = set(INSTANCE_VERBS)
        for claim in spec.get("permissionClaims") or [] if claims else []:
            claim_key = (claim.get("group") or "", claim["resource"])
            verbs[claim_key] = verbs.get(claim_key, set()) | set(claim_verbs(claim))
    return _rules(verbs)


def dynamic_role(namespace):
    """The consumer's ClusterRole on its kinds, bound in its mapped namespaces; Klutch's name."""
    return "%s-%s" % (BINDER, namespace)


def cluster_wide_role(namespace):
    """In Cluster scope: the exported kinds only, bound cluster-wide (claims stay namespaced)."""
    return dynamic_role(namespace) + "-cluster"


def binder_subject(namespace):
    return [{"kind": "ServiceAccount", "name": BINDER, "namespace": namespace}]


def role_binding(name, namespace, role_kind, role_name, subject_namespace):
    return {"apiVersion": RBAC_API_VERSION, "kind": "RoleBinding", "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
            "subjects": binder_subject(subject_namespace)}


def consumer_scope(exports, default):
    """Cluster when any export was made for a cluster-scoped consumer, else `default`."""
    scopes = set(export["spec"].get("informerScope") for export in exports)
    return "Cluster" if "Cluster" in scopes else (scopes.pop() if scopes else default)


def consumer_rbac(namespace, namespace_uid, exports, scope, mapped_namespaces):
    """RBAC of the consumer's ServiceAccount, least privilege (Klutch's flip-flop fixed).

    The static klutch-binder role in its own namespace; ClusterRole klutch-binder-<P> with the
    exported and claimed kinds, bound in each mapped namespace; in Cluster scope also the exported
    kinds (never the claimed ones, such as Secrets) cluster-wide. The ClusterRoles are owned by the
    consumer namespace, so they go with it.
    """
    owner = [{"apiVersion": "v1", "kind": "Namespace", "name": namespace, "uid": namespace_uid, "controller": True}]

    def cluster_role(name, rules):
        return {"apiVersion": RBAC_API_VERSION, "kind": "ClusterRole",
                "metadata": {"name": name, "ownerReferences": owner}, "rules": rules}

    objects = [role_binding(BINDER, namespace, "ClusterRole", BINDER, namespace),
               cluster_role(dynamic_role(namespace), consumer_rules(exports))]
    objects.extend(role_binding(BINDER, mapped, "ClusterRole", dynamic_role(namespace), namespace)
                   for mapped in mapped_namespaces)
    if scope == "Cluster":
        objects.append(cluster_role(cluster_wide_role(namespace), consumer_rules(exports, claims=False)))
        objects.append({"apiVersion": RBAC_API_VERSION, "kind": "ClusterRoleBinding",
                        "metadata": {"name": cluster_wide_role(namespace), "ownerReferences": owner},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                    "name": cluster_wide_role(namespace)},
                        "subjects": binder_subject(namespace)})
    return objects


def duration_seconds(text):
    """Seconds of a Go duration as Kubernetes prints it ("5m0s", "1h", "2.5s"); None when unreadable."""
    match = re.match(r"^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?$", text or "")
    if not text or not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


def heartbeat_health(status, moment):
    """The ClusterBinding's Healthy condition from the konnector's heartbeat (Klutch's table, ref §2.7).

    Klutch also reports a heartbeat younger than 10 s as HeartbeatTimeDrift, an inverted clock-skew
    check inherited from upstream; that row is left out on purpose.
    """
    status = status or {}
    interval = duration_seconds(status.get("heartbeatInterval"))
    if not status.get("lastHeartbeatTime"):
        return {"status": "False", "reason": "FirstHeartbeatPending", "severity": "Info",
                "message": "Waiting for the first heartbeat of the konnector."}
    if not interval:
        return {"status": "False", "reason": "HeartbeatIntervalMissing", "severity": "Info",
                "message": "The konnector reported no heartbeat interval."}
    last = datetime.datetime.strptime(status["lastHeartbeatTime"], "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=moment.tzinfo)
    if (moment - last).total_seconds() > 2 * interval:
        return {"status": "False", "reason": "HeartbeatTimeout", "severity": "Error",
                "message": "The last heartbeat of the konnector is older than twice its interval (%s)."
                           % status["heartbeatInterval"]}
    return {"status": "True"}


def cluster_binding_conditions(status, moment, now):
    """Healthy and the Ready summary, with transition times kept while they hold."""
    health = heartbeat_health(status, moment)
    wanted = [dict(health, type="Healthy"), dict(health, type="Ready")]
    return stable_conditions(wanted, (status or {}).get("conditions"), now)


def mapped_namespace(provider_namespace, service_namespace):
    """The control-plane namespace that backs consumer namespace N: status.namespace, else <P>-N."""
    return ((service_namespace.get("status") or {}).get("namespace")
            or "%s-%s" % (provider_namespace, service_namespace["metadata"]["name"]))


def kubeconfig(server, ca_data, token, namespace, server_name=None):
    """The consumer's kubeconfig, shaped as Klutch's backend writes it (cluster, user, context "default")."""
    cluster = {"server": server, "certificate-authority-data": ca_data}
    if server_name:
        cluster["tls-server-name"] = server_name
    return {"apiVersion": "v1", "kind": "Config", "current-context": "default",
            "clusters": [{"name": "default", "cluster": cluster}],
            "users": [{"name": "default", "user": {"token": token}}],
            "contexts": [{"name": "default", "context": {"cluster": "default", "user": "default",
                                                         "namespace": namespace}}]}
