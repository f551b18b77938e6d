# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Syncing a binding, as the konnector decides it from listings of both sides: what to write where. No I/O.

One planner serves klutch_claim_sync (one pass from a playbook) and the konnector agent (the same
pass, driven by watches). It follows Klutch's konnector (instances: spec up, status down, adopt,
finalizer deletes; claimed objects: the owner side wins), with one deliberate difference: under
`owner: Provider`, an object the app cluster made itself is never uploaded to the control plane.
"""

import copy
from collections import namedtuple

BOUND_ANNOTATION = "klutch.anynines.com/bound"
OWNER_ANNOTATION = "klutch.anynines.com/resource-owner"
SYNCER_FINALIZER = "klutch.anynines.com/syncer"
CLUSTER_NAMESPACE_ANNOTATION = "klutch.anynines.com/cluster-namespace"
CONTROL_PLANE, APP_CLUSTER = "control_plane", "app_cluster"
# Server-set or side-specific metadata that never crosses between clusters.
_SIDE_METADATA = ("uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "deletionTimestamp",
                  "deletionGracePeriodSeconds", "ownerReferences", "finalizers", "selfLink")
# What a claimed object's copy is not compared on: everything else (data, type, spec, ...) is content.
_NOT_CONTENT = ("apiVersion", "kind", "metadata", "status")

# side: CONTROL_PLANE or APP_CLUSTER; action: create, update_spec, update_status, replace, delete,
# add_finalizer, remove_finalizer (body: the object as listed), annotate (body: the annotations to
# add), map_namespace / unmap_namespace (an APIServiceNamespace to create / delete); kind:
# "instances" or a claim's key.
Operation = namedtuple("Operation", ["side", "action", "kind", "namespace", "name", "body"])
# Where an app cluster's instance lives upstream: namespace (None when cluster-scoped), name, the
# annotations that place it there, and its ownerReferences.
Upstream = namedtuple("Upstream", ["namespace", "name", "annotations", "owner_references"])


# Fields of a Crossplane claim that the platform sets (which composition, which composite): a
# app cluster's instance never carries them upstream, nor annotations or labels of crossplane.io
# (external-name, paused), which steer what the platform provisions.
PLATFORM_SPEC_FIELDS = ("compositionRef", "compositionSelector", "compositionRevisionRef",
                        "compositionRevisionSelector", "compositionUpdatePolicy", "resourceRef")


def platform_key(key):
    """Whether an annotation or label key is Crossplane's (crossplane.io/... or <x>.crossplane.io/...)."""
    prefix = key.partition("/")[0] if "/" in key else ""
    return prefix == "crossplane.io" or prefix.endswith(".crossplane.io")


def consumer_spec(spec):
    """What of an instance's spec the app cluster may set upstream."""
    if not isinstance(spec, dict):
        return spec
    return dict((key, value) for key, value in spec.items() if key not in PLATFORM_SPEC_FIELDS)


def _metadata(obj):
    return obj.get("metadata") or {}


def _annotations(obj):
    return _metadata(obj).get("annotations") or {}


def deleting(obj):
    return bool(_metadata(obj).get("deletionTimestamp"))


def has_finalizer(obj):
    return SYNCER_FINALIZER in (_metadata(obj).get("finalizers") or [])


def copy_for(obj, namespace, annotations):
    """A copy for the other side: side metadata cleared, `namespace` set, `annotations` added."""
    copied = copy.deepcopy(obj)
    copied.pop("status", None)
    metadata = copied.setdefault("metadata", {})
    for key in _SIDE_METADATA:
        metadata.pop(key, None)
    if namespace:
        metadata["namespace"] = namespace
    metadata["annotations"] = dict(metadata.get("annotations") or {}, **annotations)
    return copied


def contains(control_plane_value, app_value):
    """Whether the control plane's value holds everything the app cluster set.

    Fields the control plane adds (Crossplane writes resourceRef and composition settings into a
    claim's spec) are its own; only what the app cluster set is kept in step.
    """
    if isinstance(app_value, dict) and isinstance(control_plane_value, dict):
        return all(key in control_plane_value and contains(control_plane_value[key], value)
                   for key, value in app_value.items())
    return control_plane_value == app_value


def _by_key(objects):
    return dict(((_metadata(obj).get("namespace"), _metadata(obj)["name"]), obj) for obj in objects)


class Mapping:
    """App cluster namespace N <-> its namespace on the control plane, from the APIServiceNamespaces' status."""

    def __init__(self, service_namespaces):
        self.up = {}
        for item in service_namespaces:
            target = (item.get("status") or {}).get("namespace")
            if target:
                self.up[_metadata(item)["name"]] = target
        self.down = dict((target, source) for source, target in self.up.items())
        self.known = set(_metadata(item)["name"] for item in service_namespaces)

    def only(self, namespaces):
        """This mapping for the given app cluster namespaces only (e.g. those not being deleted)."""
        kept = Mapping([])
        kept.up = dict((source, target) for source, target in self.up.items() if source in namespaces)
        kept.down = dict((target, source) for source, target in kept.up.items())
        kept.known = set(self.known)
        return kept


def plan_instances(app_objects, control_plane_objects, mapping, prune=True):
    """Operations that bring a namespaced bound kind's instances in step.

    Without `prune`, bound upstream objects whose app cluster object is gone are left alone.
    """
    operations = []
    upstream = _by_key(control_plane_objects)
    seen = set()
    for down in app_objects:
        namespace, name = _metadata(down).get("namespace"), _metadata(down)["name"]
        if namespace not in mapping.up:
            if namespace not in mapping.known and not deleting(down):
                operations.append(Operation(CONTROL_PLANE, "map_namespace", "instances", namespace, namespace, None))
                mapping.known.add(namespace)
            if deleting(down) and has_finalizer(down):
                operations.append(Operation(APP_CLUSTER, "remove_finalizer", "instances", namespace, name, down))
            continue
        target = mapping.up[namespace]
        seen.add((target, name))
        operations.extend(_instance_pair(down, upstream.get((target, name)), Upstream(target, name, {}, None)))
    for (target, name), up in sorted(upstream.items(), key=lambda item: item[0]):
        if (target, name) not in seen and target in mapping.down:
            operations.extend(_unpaired_upstream(up, mapping.down[target], name, prune))
    return operations


def plan_namespace_removals(mapping, app_namespaces):
    """An APIServiceNamespace whose app cluster namespace is gone is deleted; the backend then removes <P>-N."""
    return [Operation(CONTROL_PLANE, "unmap_namespace", "instances", name, name, None)
            for name in sorted(mapping.known) if name not in app_namespaces]


def plan_cluster_instances(app_objects, control_plane_objects, consumer_namespace, namespace_uid, prune=True):
    """The same for a cluster-scoped kind: app cluster object N is `<P>-N` upstream.

    Upstream copies carry the annotation cluster-namespace: <P> and an ownerReference to the
    Namespace <P>, so removing the consumer's namespace on the control plane removes them too.
    Control-plane objects whose names lack the prefix belong to other consumers and are left alone.
    """
    prefix = consumer_namespace + "-"
    marks = {CLUSTER_NAMESPACE_ANNOTATION: consumer_namespace}
    owners = [{"apiVersion": "v1", "kind": "Namespace", "name": consumer_namespace, "uid": namespace_uid}]
    upstream = dict((_metadata(up)["name"][len(prefix):], up) for up in control_plane_objects
                    if _metadata(up)["name"].startswith(prefix))
    operations = []
    for down in app_objects:
        name = _metadata(down)["name"]
        operations.extend(_instance_pair(down, upstream.pop(name, None), Upstream(None, prefix + name, marks, owners)))
    for name, up in sorted(upstream.items()):
        operations.extend(_unpaired_upstream(up, None, name, prune))
    return operations


def _unpaired_upstream(up, namespace, name, prune):
    """A control-plane instance without an app cluster object: a missed delete, or one the platform made (adopt)."""
    if deleting(up):
        return []
    if _annotations(up).get(BOUND_ANNOTATION) == "true":
        # Its app cluster object is gone and the delete was missed (e.g. while no agent ran).
        return [Operation(CONTROL_PLANE, "delete", "instances", _metadata(up).get("namespace"), _metadata(up)["name"], up)] \
            if prune else []
    # Marked bound only once the copy exists (next pass): a failed create must not leave a bound
    # control-plane object without an app cluster object, which the next pass would delete. Created with the syncer
    # finalizer: an app cluster that deletes it at once still reaches upstream.
    adopted = copy_for(up, namespace, {BOUND_ANNOTATION: "true"})
    adopted["metadata"]["name"] = name
    adopted["metadata"]["annotations"].pop(CLUSTER_NAMESPACE_ANNOTATION, None)
    adopted["metadata"]["finalizers"] = [SYNCER_FINALIZER]
    return [Operation(APP_CLUSTER, "create", "instances", namespace, name, adopted)]


def _bound_mark(down):
    """Marks an app cluster instance as bound in the pass that creates or finds its upstream copy."""
    if _annotations(down).get(BOUND_ANNOTATION) == "true":
        return []
    metadata = _metadata(down)
    return [Operation(APP_CLUSTER, "annotate", "instances", metadata.get("namespace"), metadata["name"],
                      {BOUND_ANNOTATION: "true"})]


def upstream_copy(down, at, marks):
    """A new upstream copy of app cluster instance `down`, placed `at` and marked with `marks`: its spec,
    its labels and annotations without the platform's keys."""
    created = copy_for(down, at.namespace, marks)
    created["metadata"]["name"] = at.name
    for field in ("annotations", "labels"):
        kept = dict((key, value) for key, value in (created["metadata"].get(field) or {}).items()
                    if not platform_key(key))
        if kept or field == "annotations":
            created["metadata"][field] = kept
        else:
            created["metadata"].pop(field, None)
    if "spec" in created:
        created["spec"] = consumer_spec(created["spec"])
    if at.owner_references:
        created["metadata"]["ownerReferences"] = at.owner_references
    return created


def _instance_pair(down, up, at):
    """Operations for an app cluster instance and its upstream copy (None when missing), placed `at`."""
    namespace, name = _metadata(down).get("namespace"), _metadata(down)["name"]
    marks = dict(at.annotations, **{BOUND_ANNOTATION: "true"})
    if up is None:
        if deleting(down):
            return [Operation(APP_CLUSTER, "remove_finalizer", "instances", namespace, name, down)] if has_finalizer(down) \
                else []
        operations = [] if has_finalizer(down) else [Operation(APP_CLUSTER, "add_finalizer", "instances", namespace, name,
                                                               down)]
        operations.append(Operation(CONTROL_PLANE, "create", "instances", at.namespace, at.name, upstream_copy(down, at, marks)))
        return operations + _bound_mark(down)
    if deleting(down):
        if deleting(up):
            return []  # wait until the control plane has let it go
        operations = [Operation(CONTROL_PLANE, "delete", "instances", at.namespace, at.name, up)]
        if has_finalizer(down):
            operations.append(Operation(APP_CLUSTER, "remove_finalizer", "instances", namespace, name, down))
        return operations
    operations = [] if has_finalizer(down) else [Operation(APP_CLUSTER, "add_finalizer", "instances", namespace, name,
                                                           down)]
    if not contains(up.get("spec") or {}, consumer_spec(down.get("spec") or {})) or any(
            _annotations(up).get(key) != value for key, value in marks.items()):
        metadata = {"name": at.name, "annotations": marks}
        if at.namespace:
            metadata["namespace"] = at.namespace
        body = {"apiVersion": up.get("apiVersion"), "kind": up.get("kind"), "metadata": metadata,
                "spec": consumer_spec(down.get("spec"))}
        operations.append(Operation(CONTROL_PLANE, "update_spec", "instances", at.namespace, at.name, body))
    operations += _bound_mark(down)
    if (down.get("status") or {}) != (up.get("status") or {}):
        # The control plane's status onto the app cluster's object, applied whole by the one status writer;
        # custom resources take no unconditional update, and an annotate before it moves the version.
        metadata = {"name": name, "namespace": namespace} if namespace else {"name": name}
        body = {"apiVersion": down.get("apiVersion"), "kind": down.get("kind"), "metadata": metadata,
                "status": up.get("status") or {}}
        operations.append(Operation(APP_CLUSTER, "update_status", "instances", namespace, name, body))
    return operations


def claim_matches(claim, obj):
    """The claim's names and label selectors: empty or "*" means all; label selectors are ORed maps."""
    selector = claim.get("selector") or {}
    names = selector.get("names") or ["*"]
    if "*" not in names and _metadata(obj)["name"] not in names:
        return False
    label_selectors = selector.get("labelSelectors") or []
    labels = _metadata(obj).get("labels") or {}
    return not label_selectors or any(all(labels.get(key) == value for key, value in wanted.items())
                                      for wanted in label_selectors)


def claim_owner(claim, control_plane_obj, app_obj):
    """Who owns a claimed object, or None when nobody may sync it.

    Klutch also lets the app cluster's mark decide; here only the control plane's side does: an app
    cluster is a tenant, and a mark it writes on its own object must not let it replace the control
    plane's. The app cluster's mark counts only when the control plane's object is gone, to let a copy
    follow its deleted source. Under `owner: Provider`, an app cluster object that nobody marked is the
    app cluster's own and stays there.
    """
    control_plane_mark = _annotations(control_plane_obj).get(OWNER_ANNOTATION) if control_plane_obj is not None else None
    if control_plane_mark in ("Provider", "Consumer"):
        owner = control_plane_mark
    elif control_plane_obj is not None:
        owner = "Provider"
    else:
        owner = "Provider" if _annotations(app_obj or {}).get(OWNER_ANNOTATION) == "Provider" else "Consumer"
    wanted = (claim.get("selector") or {}).get("owner")
    if wanted and owner != wanted:
        return None
    return owner


# Objects every namespace has of its own: they never cross, whatever a claim selects.
SYSTEM_NAMES = {"ConfigMap": ("kube-root-ca.crt", "openshift-service-ca.crt")}
SYSTEM_TYPES = {"Secret": ("kubernetes.io/service-account-token",)}


def system_object(obj):
    return _metadata(obj).get("name") in SYSTEM_NAMES.get(obj.get("kind"), ()) or \
        obj.get("type") in SYSTEM_TYPES.get(obj.get("kind"), ())


def _content(obj):
    return dict((key, value) for key, value in obj.items() if key not in _NOT_CONTENT and value is not None)


def plan_claims(claim, kind, app_objects, control_plane_objects, mapping, prune=True):
    """Operations for one accepted claim in every mapped namespace pair (the owner's side wins).

    Without `prune`, copies whose owner's object is gone are left alone.
    """
    operations = []
    # Pairs start from objects the claim selects on either side; their counterparts are looked up
    # whatever their labels, so a copy that lost a label is repaired, not created again.
    on_app, on_control_plane = _by_key(app_objects), _by_key(control_plane_objects)
    pairs = set()
    for (namespace, name), obj in on_app.items():
        if namespace in mapping.up and claim_matches(claim, obj):
            pairs.add((namespace, mapping.up[namespace], name))
    for (target, name), obj in on_control_plane.items():
        if target in mapping.down and claim_matches(claim, obj):
            pairs.add((mapping.down[target], target, name))
    # Where the claim fixes the owner, the copy's mark alone tells ownership; marking the source as
    # Klutch does would double the writes for nothing. Without a fixed owner the mark decides it.
    mark_source = not (claim.get("selector") or {}).get("owner")
    for namespace, target, name in sorted(pairs):
        down, up = on_app.get((namespace, name)), on_control_plane.get((target, name))
        owner = claim_owner(claim, up, down)
        if owner is None:
            continue
        source, copy_ = (up, down) if owner == "Provider" else (down, up)
        source_at, copy_at = ((CONTROL_PLANE, target), (APP_CLUSTER, namespace)) if owner == "Provider" else \
            ((APP_CLUSTER, namespace), (CONTROL_PLANE, target))
        if source is not None and (not claim_matches(claim, source) or system_object(source)):
            continue  # the owner's claim does not select it: a namesake on the other side cannot pull it over
        if copy_ is not None and (_annotations(copy_).get(OWNER_ANNOTATION) != owner or system_object(copy_)):
            continue  # not a copy this sync made: someone's own object, never overwritten or deleted
        operations.extend(_copy_pair(kind, source, copy_, source_at, copy_at, name, owner, prune, mark_source))
    return operations


def _copy_pair(kind, source, copy_, source_at, copy_at, name, owner, prune, mark_source):
    """The owner's object wins: its copy follows it, and goes when it goes."""
    if source is None or deleting(source):
        if prune and copy_ is not None and not deleting(copy_):
            return [Operation(copy_at[0], "delete", kind, copy_at[1], name, copy_)]
        return []
    operations = []
    if mark_source and _annotations(source).get(OWNER_ANNOTATION) != owner:
        operations.append(Operation(source_at[0], "annotate", kind, source_at[1], name, {OWNER_ANNOTATION: owner}))
    wanted = copy_for(source, copy_at[1], {OWNER_ANNOTATION: owner})
    if copy_ is None:
        operations.append(Operation(copy_at[0], "create", kind, copy_at[1], name, wanted))
    elif copy_.get("type") != wanted.get("type") or (copy_.get("immutable") and _content(copy_) != _content(wanted)):
        # A Secret's type, and an immutable object, cannot change in place: the copy is made again.
        operations.append(Operation(copy_at[0], "delete", kind, copy_at[1], name, copy_))
        operations.append(Operation(copy_at[0], "create", kind, copy_at[1], name, wanted))
    elif _content(copy_) != _content(wanted) or \
            (_metadata(copy_).get("labels") or {}) != (_metadata(wanted).get("labels") or {}):
        # Replaced at the version listed: a change made since then fails the write and waits for the next pass.
        wanted["metadata"]["resourceVersion"] = _metadata(copy_).get("resourceVersion")
        operations.append(Operation(copy_at[0], "replace", kind, copy_at[1], name, wanted))
    return operations
