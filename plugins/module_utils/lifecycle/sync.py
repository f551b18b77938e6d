# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The konnector's sync pass for one binding: read both sides, plan, write. Used by klutch_claim_sync and klutch_bind.

Reads are one listing per kind and side: instances on the app cluster cluster-wide (a new namespace
shows up there first), everything else per mapped namespace, because the consumer may not list the
control plane cluster-wide and the konnector agent may read claimed kinds only in bound namespaces.
Writes go out concurrently, one object at a time.
"""

import base64
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError, ConfigError, Conflict
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import (
    API_SERVICE_BINDINGS,
    API_SERVICE_EXPORTS,
    API_SERVICE_NAMESPACES,
    CLUSTER_BINDINGS,
)
from ansible_collections.klutch.bind.plugins.module_utils.plan import bindings, sync
from ansible_collections.klutch.bind.plugins.module_utils.plan.consumers import (
    IDENTITY_ANNOTATION,
    KUBECONFIG_SECRET,
    claimed_names,
)

try:
    import yaml
except ImportError:  # reported by KlutchModule
    yaml = None

DIRECTIONS = {sync.CONTROL_PLANE: "up", sync.APP_CLUSTER: "down"}
CONCURRENCY = 8  # objects written at the same time, by default


class Unbound(ConfigError):
    """A binding that cannot be served; `condition` and `reason` are what its status says."""

    def __init__(self, message, condition, reason):
        super(Unbound, self).__init__(message)
        self.condition, self.reason = condition, reason


class BoundApi:
    """One APIServiceBinding and what a pass needs: the control plane's client, the consumer namespace and the export."""

    def __init__(self, binding, app, connect):
        """`connect(kubeconfig dict)` builds a client for the control plane."""
        self.binding = binding
        self.name = binding["metadata"]["name"]
        ref = binding["spec"]["kubeconfigSecretRef"]
        secret = app.get(SECRETS, ref["name"], ref.get("namespace") or bindings.BIND_NAMESPACE)
        encoded = ((secret or {}).get("data") or {}).get(ref.get("key") or bindings.KUBECONFIG_KEY)
        if not encoded:
            raise Unbound("APIServiceBinding %s: its kubeconfig Secret %s has no key %s. Bind it again with "
                          "klutch.bind.klutch_binding." % (self.name, ref["name"], ref.get("key")),
                          "SecretValid", "ProviderSecretInvalid")
        self.secret = (ref["name"], ref.get("namespace") or bindings.BIND_NAMESPACE,
                       ref.get("key") or bindings.KUBECONFIG_KEY, encoded)
        config = decoded_kubeconfig(encoded)
        self.namespace = bindings.kubeconfig_target(config)[1] if config else None
        if not self.namespace:
            raise Unbound("APIServiceBinding %s: its kubeconfig Secret %s does not hold a kubeconfig whose context "
                          "names the consumer's namespace. Bind it again with klutch.bind.klutch_binding."
                          % (self.name, ref["name"]), "SecretValid", "ProviderSecretInvalid")
        self.control_plane = connect(config)
        self.export = self.control_plane.get(API_SERVICE_EXPORTS, self.name, self.namespace)
        if self.export is None:
            raise Unbound("APIServiceBinding %s: the control plane has no export of that name for this consumer "
                          "any more. Export it again with klutch.bind.klutch_export_request, or unbind it."
                          % self.name, "Connected", "APIServiceExportNotFound")
        self.instances = bindings.instance_resource(self.export["spec"])
        if self.instances is None:
            raise ConfigError("APIServiceBinding %s: its export serves no version." % self.name)
        self._consumer_namespace = None
        self.claim_names = {}  # {(group, resource): names its accepted claims select, None for all}, from the last plan
        self.removals_withheld = None  # why the last plan removed nothing upstream for an absence
        self.mapping = None  # what the last plan read: the namespace mapping, and the bound namespaces
        self.claim_namespaces = []  # that live on the app cluster, where claimed kinds are read

    def consumer_namespace(self):
        """The consumer's namespace on the control plane (read once per pass): its uid owns the cluster-scoped
        instances upstream, its identity annotation names the app cluster it was bound from."""
        if self._consumer_namespace is None:
            self._consumer_namespace = self.control_plane.get(NAMESPACES, self.namespace) or {"metadata": {}}
        return self._consumer_namespace

    def namespace_uid(self):
        return self.consumer_namespace()["metadata"]["uid"]

    def removal_problem(self, app_namespaces):
        """Why this pass may remove nothing upstream for an object missing on the app side, or None."""
        identity = (self.consumer_namespace()["metadata"].get("annotations") or {}).get(IDENTITY_ANNOTATION)
        own = next((item for item in app_namespaces if item["metadata"]["name"] == bindings.BIND_NAMESPACE), None)
        return bindings.foreign_cluster_problem(identity, own)

    def read_mapping(self):
        """The consumer's namespace mapping on the control plane, read once per pass and kept for watches."""
        self.mapping = sync.Mapping(self.control_plane.list(API_SERVICE_NAMESPACES, self.namespace)[0])
        return self.mapping

    def accepted_claims(self, app):
        """(claim, Resource) of each accepted claim that the app cluster serves."""
        found = []
        for claim in self.binding["spec"].get("permissionClaims") or []:
            if claim.get("state") != "Accepted":
                continue
            api_version = bindings.claim_api_version(claim)
            resource = app.resource_by_plural(api_version, claim["resource"])
            if resource is None:
                raise ConfigError("APIServiceBinding %s claims %s in %s, which the app cluster does not serve."
                                  % (self.name, claim["resource"], api_version))
            found.append((claim, resource))
        return found


def decoded_kubeconfig(encoded):
    """The kubeconfig dict of a Secret's base64 value, or None."""
    try:
        config = yaml.safe_load(base64.b64decode(encoded))
    except (ValueError, TypeError, yaml.YAMLError):
        return None  # the parser's message would quote the kubeconfig, token included
    return config if isinstance(config, dict) else None


def follow_rotation(app, bound, connect):
    """Copy the consumer's kubeconfig down when the control plane holds another one, as Klutch's konnector
    does: that is how a rotated token reaches the app cluster. From then on the pass uses it. Whether it
    was copied; one that names another consumer namespace is not taken."""
    cluster_binding = bound.control_plane.get(CLUSTER_BINDINGS, "cluster", bound.namespace) or {}
    ref = (cluster_binding.get("spec") or {}).get("kubeconfigSecretRef") or {}
    held = bound.control_plane.get(SECRETS, ref.get("name") or KUBECONFIG_SECRET, bound.namespace)
    encoded = ((held or {}).get("data") or {}).get(ref.get("key") or bindings.KUBECONFIG_KEY)
    name, namespace, key, current = bound.secret
    config = decoded_kubeconfig(encoded) if encoded and encoded != current else None
    if not config or bindings.kubeconfig_target(config)[1] != bound.namespace:
        return False
    app.write("PATCH", SECRETS, {"metadata": {"name": name, "namespace": namespace}, "data": {key: encoded}})
    bound.secret = (name, namespace, key, encoded)
    bound.control_plane = connect(config)
    return True


def control_plane_listing(bound, resource, mapping, names=None):
    """The kind's objects on the control plane, in the consumer's mapped namespaces; a namespaced kind is
    never read cluster-wide, where other consumers' objects are. With `names` (a claim that names its
    objects), only those: the consumer's rights cover no others."""
    if not resource.namespaced:
        return bound.control_plane.list(resource)[0]
    return listing(bound.control_plane, resource, mapping.down, names)


def name_selector(name):
    """The field selector that lets a list or watch through rights limited to resourceNames."""
    return "metadata.name=%s" % name


def listing(client, resource, namespaces, names=None):
    objects = []
    for namespace in sorted(namespaces):
        if names is None:
            objects.extend(client.list(resource, namespace)[0])
            continue
        for name in sorted(names):
            objects.extend(client.list(resource, namespace, field_selector=name_selector(name))[0])
    return objects


def plan_binding(bound, app, prune=True, before_claims=None):
    """([operations], {kind: Resource}) of one pass for one binding.

    `before_claims(app namespaces, claimed Resources)` runs before claimed kinds are read there (the
    agent grants itself its rights in new bound namespaces).
    """
    mapping = bound.read_mapping()
    resources = {"instances": bound.instances}
    namespaces = app.list(NAMESPACES)[0]
    # Removals upstream follow deletions seen on the consumer's own cluster, never an absence elsewhere.
    bound.removals_withheld = bound.removal_problem(namespaces)
    prune = prune and not bound.removals_withheld
    operations = []
    if bound.instances.namespaced:
        if not bound.removals_withheld:
            operations = sync.plan_namespace_removals(mapping, set(item["metadata"]["name"] for item in namespaces))
        operations += sync.plan_instances(app.list(bound.instances)[0],
                                          control_plane_listing(bound, bound.instances, mapping), mapping, prune=prune)
    else:
        operations = sync.plan_cluster_instances(app.list(bound.instances)[0], bound.control_plane.list(bound.instances)[0],
                                                 bound.namespace, bound.namespace_uid(), prune=prune)
    # Claimed kinds only where the consumer namespace lives: one being deleted loses its objects
    # (and the agent's RoleBinding there) anyway, and takes no new ones.
    claims_mapping = mapping.only(set(item["metadata"]["name"] for item in namespaces
                                      if not item["metadata"].get("deletionTimestamp")))
    bound.claim_namespaces = sorted(claims_mapping.up)
    claims = bound.accepted_claims(app)
    if claims and before_claims is not None:
        before_claims(bound.claim_namespaces, [resource for _claim, resource in claims])
    bound.claim_names = claimed_names([claim for claim, _resource in claims])
    for claim, resource in claims:
        resources[resource.plural] = resource
        names = claimed_names([claim]).get((claim.get("group") or "", claim["resource"]))
        operations += sync.plan_claims(claim, resource.plural, listing(app, resource, claims_mapping.up),
                                       control_plane_listing(bound, resource, claims_mapping, names), claims_mapping,
                                       prune=prune)
    return operations, resources


def plan_changed(bound, app, changed, prune=True):
    """([operations], {kind: Resource}) that plan_binding would plan for the objects in `changed` [(kind, side,
    namespace, name) as a watch saw them; kind "instances" or a claimed kind's plural], reading only those:
    what one changed object needs, however many others are bound."""
    mapping = bound.read_mapping()
    namespaces = app.list(NAMESPACES)[0]
    bound.removals_withheld = bound.removal_problem(namespaces)
    prune = prune and not bound.removals_withheld
    wanted = {}  # {kind: {(app cluster namespace, name)}}
    for kind, side, namespace, name in changed:
        wanted.setdefault(kind, set()).add(app_key(bound, mapping, side, namespace, name) if kind == "instances"
                                           else (mapping.down.get(namespace, namespace) if side == sync.CONTROL_PLANE
                                                 else namespace, name))
    wanted = dict((kind, keys - {None}) for kind, keys in wanted.items())
    operations, resources = [], {"instances": bound.instances}
    if wanted.get("instances"):
        operations += plan_instances_named(bound, app, mapping, wanted["instances"], prune)
    claims_mapping = mapping.only(set(item["metadata"]["name"] for item in namespaces
                                      if not item["metadata"].get("deletionTimestamp")))
    for claim, resource in bound.accepted_claims(app):
        keys = [(namespace, name) for namespace, name in wanted.get(resource.plural, ()) if namespace in claims_mapping.up]
        if keys:
            resources[resource.plural] = resource
            operations += sync.plan_claims(claim, resource.plural, present(app, resource, keys),
                                           present(bound.control_plane, resource,
                                                   [(claims_mapping.up[namespace], name) for namespace, name in keys]),
                                           claims_mapping, prune=prune)
    return operations, resources


def app_key(bound, mapping, side, namespace, name):
    """(namespace, name) on the app cluster of an instance a watch saw on `side`; None for none of the binding's."""
    if side == sync.APP_CLUSTER:
        return namespace, name
    if bound.instances.namespaced:
        return (mapping.down[namespace], name) if namespace in mapping.down else None
    prefix = bound.namespace + "-"
    return (None, name[len(prefix):]) if name.startswith(prefix) else None


def present(client, resource, keys):
    """The objects of `resource` at `keys` [(namespace, name)] that exist."""
    return [found for found in (client.get(resource, name, namespace) for namespace, name in keys) if found]


def plan_instances_named(bound, app, mapping, keys, prune):
    """plan_instances (or plan_cluster_instances) for the instances at `keys` on the app cluster only."""
    app_objects = present(app, bound.instances, keys)
    if not bound.instances.namespaced:
        prefix = bound.namespace + "-"
        return sync.plan_cluster_instances(app_objects, present(bound.control_plane, bound.instances,
                                                                [(None, prefix + name) for _namespace, name in keys]),
                                           bound.namespace, bound.namespace_uid(), prune=prune)
    upstream = present(bound.control_plane, bound.instances,
                       [(mapping.up[namespace], name) for namespace, name in keys if namespace in mapping.up])
    return sync.plan_instances(app_objects, upstream, mapping, prune=prune)


def execute(operation, clients, resources, consumer_namespace):
    """Send one operation to its cluster; False when there was nothing to write after all."""
    client = clients[operation.side]
    resource = resources[operation.kind]
    body, name, namespace = operation.body, operation.name, operation.namespace
    at = {"name": name, "namespace": namespace}
    if operation.action == "map_namespace":
        try:
            client.write("POST", API_SERVICE_NAMESPACES, {
                "apiVersion": API_SERVICE_NAMESPACES.api_version, "kind": API_SERVICE_NAMESPACES.kind,
                "metadata": {"name": name, "namespace": consumer_namespace}})
        except Conflict:  # someone asked for it already
            return False
    elif operation.action == "unmap_namespace":
        return client.delete(API_SERVICE_NAMESPACES, name, consumer_namespace).changed
    elif operation.action == "create":
        try:
            client.write("POST", resource, body)
        except Conflict:  # created since the listing: the next pass compares it
            return False
    elif operation.action == "replace":
        client.write("PUT", resource, body)
    elif operation.action == "update_spec":
        client.write("APPLY", resource, body)
    elif operation.action == "update_status":
        client.write("APPLY", resource, body, subresource="status")
    elif operation.action == "delete":
        client.delete(resource, name, namespace, before=body)
    elif operation.action == "annotate":
        client.write("PATCH", resource, {"metadata": dict(at, annotations=body)})
    elif operation.action in ("add_finalizer", "remove_finalizer"):
        finalizers = [item for item in body["metadata"].get("finalizers") or [] if item != sync.SYNCER_FINALIZER]
        if operation.action == "add_finalizer":
            finalizers.append(sync.SYNCER_FINALIZER)
        # resourceVersion: the patch fails rather than dropping a finalizer someone added meanwhile.
        client.write("PATCH", resource, {"metadata": dict(
            at, finalizers=finalizers, resourceVersion=body["metadata"].get("resourceVersion"))})
    else:
        raise ValueError(operation.action)
    return True


def bound_kind(app, binding_name):
    """The Resource of a binding's kind on the app cluster, from the CRD the binding made; None without one."""
    crd = app.get(CUSTOM_RESOURCE_DEFINITIONS, binding_name)
    return None if crd is None else bindings.instance_resource(crd["spec"])


def release_instances(app, binding_name, deleting_only=False):
    """Take the syncer finalizer off the binding's instances on the app cluster; the objects released.

    Once a binding ends (unbound, its export gone, its credentials revoked) no pass carries a
    deletion upstream any more, so the finalizer would hold the instance, its namespace or its CRD
    in Terminating for ever. The control-plane copies are left alone.
    """
    resource = bound_kind(app, binding_name)
    if resource is None:
        return []
    released = []
    for obj in app.list(resource)[0]:
        if not sync.has_finalizer(obj) or (deleting_only and not sync.deleting(obj)):
            continue
        metadata = obj["metadata"]
        execute(sync.Operation(sync.APP_CLUSTER, "remove_finalizer", "instances", metadata.get("namespace"),
                               metadata["name"], obj), {sync.APP_CLUSTER: app}, {"instances": resource}, None)
        released.append(obj)
    return released


def run_operations(operations, clients, resources, consumer_namespace, workers, proceed=None):
    """Send the operations, concurrently across objects and in order for each; (writes made, error messages).

    `proceed()` is asked before each write (the agent: still the leader?); once false, the rest is left.
    """
    per_object = {}
    for operation in operations:
        per_object.setdefault((operation.side, operation.kind, operation.namespace, operation.name), []).append(operation)

    def run(sequence):
        written = 0
        for operation in sequence:
            if proceed is not None and not proceed():
                return written, "not written: this agent no longer leads"
            try:
                written += int(execute(operation, clients, resources, consumer_namespace))
            except ClusterError as error:
                return written, error  # this object's later steps depend on the failed one
        return written, None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        outcomes = list(pool.map(run, per_object.values()))
    return sum(written for written, _error in outcomes), [error for _written, error in outcomes if error]


def changed_meanwhile(errors):
    """Whether a write failed only because its object changed after the pass read it (409)."""
    return any(getattr(error, "status", None) == 409 for error in errors)


def counts(operations):
    """{up|down: {kind: writes}} of the operations."""
    found = {"up": {}, "down": {}}
    for operation in operations:
        direction = found[DIRECTIONS[operation.side]]
        direction[operation.kind] = direction.get(operation.kind, 0) + 1
    return found


def described(operations):
    """What check mode reports: each operation without its body, which may hold Secret data."""
    return [{"direction": DIRECTIONS[op.side], "action": op.action, "kind": op.kind, "namespace": op.namespace,
             "name": op.name} for op in operations]


def selected_bindings(app, names):
    """The app cluster's bindings named in `names` (all when empty); ConfigError naming any that is missing."""
    if app.resource_for(API_SERVICE_BINDINGS.api_version, API_SERVICE_BINDINGS.kind) is None:
        raise ConfigError("%s does not serve APIServiceBinding: nothing is bound there." % app.label)
    listed = app.list(API_SERVICE_BINDINGS, bindings.BIND_NAMESPACE)[0]
    missing = sorted(set(names) - set(item["metadata"]["name"] for item in listed))
    if missing:
        raise ConfigError("%s has no APIServiceBinding %s in %s. Bind it first with klutch.bind.klutch_binding, or "
                          "fix bindings." % (app.label, ", ".join(missing), bindings.BIND_NAMESPACE))
    return [item for item in listed if not names or item["metadata"]["name"] in names]


def withheld_message(bound):
    return ("Binding %s: nothing was removed on the control plane for objects missing on this app cluster, because %s. "
            "If this is the consumer's cluster rebuilt or restored, bind it again as that consumer; otherwise remove "
            "the binding from this cluster." % (bound.name, bound.removals_withheld))


def failed_writes(errors, operations):
    """The message for a pass in which some writes failed."""
    return "%d of %d writes of the sync pass failed; the next pass retries them. First: %s" % (
        len(errors), len(operations), errors[0])


PASSES_ON_CONFLICT = 3


def sync_once(app, names, client_for, prune, concurrency, result):
    """One pass over the bindings `names` (all when empty), recorded into `result` (synced, operations) as it
    goes, so that a failure still reports what was planned; (objects written, write errors).

    A binding that cannot be synced (its control plane unreachable, its credentials refused) does not
    stop the others: its error is raised after they were synced.
    """
    written, errors, unsynced = 0, [], []
    for binding in selected_bindings(app, names):
        # An object that changed between the reads and a write (409) is read and planned again.
        for attempt in range(PASSES_ON_CONFLICT):
            try:
                bound = BoundApi(binding, app, client_for)
                operations, resources = plan_binding(bound, app, prune)
            except ClusterError as error:
                unsynced.append(error)
                break
            if bound.removals_withheld:
                result.setdefault("removals_withheld", {})[bound.name] = withheld_message(bound)
            result["synced"][bound.name] = counts(operations)
            result["operations"].extend(dict(item, binding=bound.name) for item in described(operations))
            made, failed = run_operations(operations, {sync.APP_CLUSTER: app, sync.CONTROL_PLANE: bound.control_plane}, resources,
                                          bound.namespace, concurrency)
            written += made
            if not changed_meanwhile(failed) or attempt == PASSES_ON_CONFLICT - 1:
                errors.extend(str(error) for error in failed)
                break
    if unsynced:
        raise unsynced[0]
    return written, errors
