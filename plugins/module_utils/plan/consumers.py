# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Klutch's backend creates on the control plane for each consumer, the account an app cluster
holds there: its namespace and identity, its exports and requests, its RBAC, its credentials
(tokens and kubeconfig) and the namespaces mapped for it."""

import binascii
import hashlib
import json
import string

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import parse_time, stable_conditions
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import RBAC_API_VERSION
from ansible_collections.klutch.bind.plugins.module_utils.kinds import KLUTCH_API_VERSION


# The consumer's side of the control plane: what Klutch's backend creates per app cluster.
IDENTITY_ANNOTATION = "example-backend.klutch.anynines.com/identity"
API_SERVICE_NAMESPACE_ANNOTATION = "klutch.anynines.com/api-service-namespace"
SPEC_HASH_ANNOTATION = "klutch.anynines.com/source-spec-hash"
BINDER = "klutch-binder"  # the consumer's ServiceAccount, its token Secret, RoleBinding and static ClusterRole
KUBECONFIG_SECRET = "kubeconfig"
NAMESPACE_PREFIX = "cluster"
NAME_CHARACTERS = string.ascii_lowercase + string.digits
MAX_NAMESPACE = 63  # a namespace name is a DNS label
# Verbs on instances: the konnector creates, updates and deletes them upstream and watches their status.
INSTANCE_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
# On objects the provider owns the konnector only reads and marks them (resource-owner annotation).
CONTROL_PLANE_OWNED_VERBS = ["get", "list", "patch", "update", "watch"]
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


def consumer_namespace_names(identity):
    """Names for a new consumer namespace, cluster-<5 characters> as Klutch's, derived from the identity:
    two first binds of one consumer at the same time pick the same name, so only one is made. The next
    candidate is for a name that another identity holds already."""
    attempt = 0
    while True:
        number = int(short_hash("%s/%d" % (identity, attempt), 16), 16)
        characters = []
        for _index in range(5):
            number, digit = divmod(number, len(NAME_CHARACTERS))
            characters.append(NAME_CHARACTERS[digit])
        yield "%s-%s" % (NAMESPACE_PREFIX, "".join(characters))
        attempt += 1


def other_cluster_ids(namespaces, consumer, app_cluster_id):
    """[(namespace, cluster id)] of the consumer's namespaces under another cluster id than `app_cluster_id`."""
    found = []
    for namespace in namespaces:
        identity = (namespace["metadata"].get("annotations") or {}).get(IDENTITY_ANNOTATION) or ""
        owner, _sep, cluster_id = identity.partition("#")
        if owner == consumer and cluster_id and "#" not in cluster_id and cluster_id != app_cluster_id:
            found.append((namespace["metadata"]["name"], cluster_id))
    return sorted(found)


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
    return CONTROL_PLANE_OWNED_VERBS if owner == "Provider" else INSTANCE_VERBS


def claimed_names(claims):
    """{(group, resource): the names its claims select, or None for every object} of the claimed kinds."""
    found = {}
    for claim in claims:
        key = (claim.get("group") or "", claim["resource"])
        names = (claim.get("selector") or {}).get("names") or ["*"]
        if "*" in names or (key in found and found[key] is None):
            found[key] = None
        else:
            found[key] = found.get(key, set()) | set(names)
    return found


def _rules(verbs, names):
    """One rule per kind; a kind whose claims all name their objects is granted on those names only
    (resourceNames), except create, which RBAC cannot limit by name."""
    rules = []
    for group, resource in sorted(verbs):
        allowed, selected = sorted(verbs[(group, resource)]), names.get((group, resource))
        if selected is None:
            rules.append({"apiGroups": [group], "resources": [resource], "verbs": allowed})
            continue
        rules.append({"apiGroups": [group], "resources": [resource], "resourceNames": sorted(selected),
                      "verbs": [verb for verb in allowed if verb != "create"]})
        if "create" in allowed:
            rules.append({"apiGroups": [group], "resources": [resource], "verbs": ["create"]})
    return rules


def consumer_rules(exports, claims=True):
    """Rules on each exported kind and, with `claims`, each claimed kind, once, with the least verbs and,
    where the claims name their objects, on those names only."""
    verbs = {}
    claimed = [claim for export in exports for claim in export["spec"].get("permissionClaims") or []] if claims else []
    for claim in claimed:
        claim_key = (claim.get("group") or "", claim["resource"])
        verbs[claim_key] = verbs.get(claim_key, set()) | set(claim_verbs(claim))
    names = claimed_names(claimed)
    for export in exports:  # an exported kind is granted whole, even where a claim names some of its objects
        kind = (export["spec"]["group"], export["spec"]["names"]["plural"])
        verbs[kind], names[kind] = set(INSTANCE_VERBS), None
    return _rules(verbs, names)


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
    kinds that are cluster-scoped (never namespaced or claimed ones, such as Secrets) cluster-wide.
    The ClusterRoles are owned by the consumer namespace, so they go with it.
    """
    owner = [{"apiVersion": "v1", "kind": "Namespace", "name": namespace, "uid": namespace_uid, "controller": True}]

    def cluster_role(name, rules):
        return {"apiVersion": RBAC_API_VERSION, "kind": "ClusterRole",
                "metadata": {"name": name, "ownerReferences": owner}, "rules": rules}

    objects = [role_binding(BINDER, namespace, "ClusterRole", BINDER, namespace),
               cluster_role(dynamic_role(namespace), consumer_rules(exports))]
    objects.extend(role_binding(BINDER, mapped, "ClusterRole", dynamic_role(namespace), namespace)
                   for mapped in mapped_namespaces)
    # Only cluster-scoped kinds are granted cluster-wide: a namespaced kind there would reach every
    # other consumer's instances. Their names are limited to the consumer's prefix by admission policy.
    cluster_scoped = [export for export in exports if export["spec"].get("scope") == "Cluster"]
    if scope == "Cluster" and cluster_scoped:
        objects.append(cluster_role(cluster_wide_role(namespace), consumer_rules(cluster_scoped, claims=False)))
        objects.append({"apiVersion": RBAC_API_VERSION, "kind": "ClusterRoleBinding",
                        "metadata": {"name": cluster_wide_role(namespace), "ownerReferences": owner},
                        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                    "name": cluster_wide_role(namespace)},
                        "subjects": binder_subject(namespace)})
    return objects


# Consumer credentials. A consumer's token lives in a service-account token Secret of klutch-binder;
# the kubeconfig Secret names the one it carries, a rotated-out one says when it is deleted, and a
# revoked consumer's namespace says since when it is revoked.
TOKEN_SECRET_TYPE = "kubernetes.io/service-account-token"
TOKEN_SECRET_ANNOTATION = "klutch.bind/token-secret"
RETIRE_ANNOTATION = "klutch.bind/retire-at"
REVOKED_ANNOTATION = "klutch.bind/revoked-at"


def token_secret(name, namespace, retire_at=None):
    """A service-account token Secret of the consumer's klutch-binder, retiring at `retire_at` when given."""
    annotations = {"kubernetes.io/service-account.name": BINDER}
    if retire_at:
        annotations[RETIRE_ANNOTATION] = retire_at
    return {"apiVersion": "v1", "kind": "Secret", "type": TOKEN_SECRET_TYPE,
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations}}


def current_token_secret(kubeconfig_secret):
    """The token Secret the consumer's kubeconfig carries: the one it names, else Klutch's klutch-binder."""
    annotations = ((kubeconfig_secret or {}).get("metadata") or {}).get("annotations") or {}
    return annotations.get(TOKEN_SECRET_ANNOTATION) or BINDER


def rotation_due(secret, rotate_after, moment):
    """Whether the token Secret is `rotate_after` seconds old or older at `moment`."""
    created = parse_time(((secret or {}).get("metadata") or {}).get("creationTimestamp"))
    return created is not None and (moment - created).total_seconds() >= rotate_after


def retired_tokens(secrets, current, moment):
    """Names of the consumer's token Secrets that rotation replaced and whose time is up: every binder token
    but the current one that says when it retires (an unreadable time counts as up)."""
    due = []
    for secret in secrets:
        metadata = secret.get("metadata") or {}
        annotations = metadata.get("annotations") or {}
        if metadata.get("name") == current or RETIRE_ANNOTATION not in annotations \
                or annotations.get("kubernetes.io/service-account.name") != BINDER:
            continue
        retire_at = parse_time(annotations[RETIRE_ANNOTATION])
        if retire_at is None or retire_at <= moment:
            due.append(metadata["name"])
    return sorted(due)


def revoked_at(namespace):
    """When the consumer's credentials were revoked, or None."""
    return (((namespace or {}).get("metadata") or {}).get("annotations") or {}).get(REVOKED_ANNOTATION)


def short_hash(text, length=8):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def mapped_namespace(consumer_namespace, service_namespace):
    """The control-plane namespace that backs consumer namespace N: status.namespace, else <P>-N.

    When <P>-N is longer than a namespace name may be (63), <P>-<start of N>-<hash of N>: Klutch's
    konnector follows status.namespace, so the name only has to be stable and unique per N.
    """
    stored = (service_namespace.get("status") or {}).get("namespace")
    name = service_namespace["metadata"]["name"]
    if stored:
        return stored
    if len(consumer_namespace) + 1 + len(name) <= MAX_NAMESPACE:
        return "%s-%s" % (consumer_namespace, name)
    digest = short_hash(name)
    room = MAX_NAMESPACE - len(consumer_namespace) - len(digest) - 2
    if room < 1:  # a consumer namespace that leaves no room for N: hash both
        digest = short_hash("%s/%s" % (consumer_namespace, name))
        return "%s-%s" % (consumer_namespace[:MAX_NAMESPACE - len(digest) - 1].rstrip("-"), digest)
    return "%s-%s-%s" % (consumer_namespace, name[:room].rstrip("-"), digest)


def mapping_problem(consumer_namespace, target, source, existing):
    """Why namespace `target` cannot back the consumer namespace `source` (`<P>/<N>`), or None.

    Only a namespace of the consumer's own prefix, new or already mapped for `source`, is given to
    it: a status someone set to another namespace, or a namespace of that name that exists for
    something else, would hand the consumer's rights to what is in it.
    """
    if not target.startswith(consumer_namespace + "-"):
        return "its target %s is not a namespace of consumer %s (%s-<name>); delete its status to map it again" % (
            target, consumer_namespace, consumer_namespace)
    if existing is not None and \
            ((existing.get("metadata") or {}).get("annotations") or {}).get(API_SERVICE_NAMESPACE_ANNOTATION) != source:
        return ("namespace %s exists and does not belong to %s (annotation %s); rename or remove that namespace"
                % (target, source, API_SERVICE_NAMESPACE_ANNOTATION))
    return None


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
