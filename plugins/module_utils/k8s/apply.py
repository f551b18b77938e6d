# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Applying or deleting a set of manifests: every object checked first, then one write each at most."""

import datetime

from ansible_collections.klutch.bind.plugins.module_utils.k8s import manifests, rollout
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import (
    BadRequest,
    ConfigError,
    Conflict,
    Invalid,
    NotFound,
    WaitTimeout,
)
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import Change, condition_holds, diff, readiness
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import DEPLOYMENTS, KNOWN


class Planned:
    """One object with the resource type that serves it (None: promised by a definition in the set)."""

    def __init__(self, obj, resource, namespace):
        self.obj = obj
        self.resource = resource
        self.namespace = namespace

    @property
    def name(self):
        return self.obj["metadata"]["name"]

    @property
    def is_definition(self):
        return (self.obj["apiVersion"], self.obj["kind"]) in manifests.DEFINING_KINDS

    def entry(self, action, uid=None):
        entry = manifests.identity(self.obj)
        entry.update(namespace=self.namespace, action=action, uid=uid)
        return entry


def plan(client, objects, default_namespace, deleting):
    """A Planned per object; ConfigError before any write when a kind or namespace is wrong.

    A kind that a CRD or XRD earlier in the set will serve is accepted. When deleting, a kind the
    cluster does not serve has no objects, so it is not an error.
    """
    promised = {}  # {(apiVersion, kind): namespaced}
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
            planned.append(Planned(obj, None, None))
            continue
        namespaced = resource.namespaced if resource is not None else promised[kind]
        namespace = (obj["metadata"].get("namespace") or default_namespace) if namespaced else None
        if namespaced and not namespace:
            raise ConfigError("%s %s is namespaced but names no namespace: set metadata.namespace or the namespace option."
                              % (obj["kind"], obj["metadata"]["name"]))
        if kind in manifests.DEFINING_KINDS:
            promised.update(manifests.served_by(obj))
        planned.append(Planned(obj, resource, namespace))
    return planned


def _awaited(item, changed, wait, wait_condition):
    """(predicate, description) to wait for after applying `item`, or None.

    Definitions are waited for whenever they changed, so that objects of their kinds can follow;
    other objects only with `wait`, on `wait_condition` or else on what ready means for their kind.
    """
    if item.is_definition:
        return readiness(item.obj) if changed or wait else None
    if not wait:
        return None
    if wait_condition:
        return (condition_holds(wait_condition["type"], wait_condition["status"]),
                "%s=%s" % (wait_condition["type"], wait_condition["status"]))
    return readiness(item.obj)


def _body(item):
    return dict(item.obj, metadata=dict(item.obj["metadata"], namespace=item.namespace)) if item.namespace else item.obj


def preflight(client, planned, force):
    """Dry-run every object of a set before any of them is written: {index: the server's answer}.

    A set the server would refuse in part is refused whole, naming each refused object, so that a
    mistake in the third object does not leave the first two applied. Objects whose kind or
    namespace an earlier object of the set provides cannot be dry-run yet; they are checked when
    applied. Failures that are not the input's (access, availability) are raised as they are.
    """
    provided_kinds = set(kind for item in planned if item.is_definition for kind in manifests.served_by(item.obj))
    provided_namespaces = set(item.name for item in planned if (item.obj["apiVersion"], item.obj["kind"]) == ("v1", "Namespace"))
    answers, refused = {}, []
    for index, item in enumerate(planned):
        if item.resource is None or (item.obj["apiVersion"], item.obj["kind"]) in provided_kinds \
                or item.namespace in provided_namespaces:
            continue
        try:
            answers[index] = client.dry_run_apply(item.resource, _body(item), force)
        except (BadRequest, NotFound, Conflict, Invalid) as error:
            refused.append("%s %s: %s" % (item.obj["kind"], item.name, error))
    if refused:
        raise ConfigError("%d of the %d objects would be refused, so none was applied:\n- %s" % (
            len(refused), len(planned), "\n- ".join(refused)))
    return answers


def apply_planned(client, planned, check_mode, force=False, wait=False, wait_condition=None, wait_timeout=120):
    """Apply each object in order, after a dry run of them all; ([result entries], [diffs], {name: object after})."""
    results, diffs, final = [], [], {}
    answers = preflight(client, planned, force) if len(planned) > 1 else {}
    for index, item in enumerate(planned):
        resource = item.resource or client.resource_for(item.obj["apiVersion"], item.obj["kind"])
        if resource is None:  # check mode: the definition of this kind was only dry-run applied
            results.append(item.entry("created"))
            continue
        change = client.apply(resource, _body(item), force=force, answer=answers.get(index))
        results.append(item.entry("unchanged" if not change.changed else "created" if change.before is None else "updated",
                                  uid_on_cluster(change, check_mode)))
        final[(item.obj["kind"], item.name)] = change.after
        if change.changed:
            diffs.append(diff(change))
            if item.is_definition:  # its kinds may be new: read their group versions again when used
                for api_version, _kind in manifests.served_by(item.obj):
                    client.forget_group_version(api_version)
        awaited = None if check_mode else _awaited(item, change.changed, wait, wait_condition)
        if awaited:
            final[(item.obj["kind"], item.name)] = _wait(client, resource, item, awaited, wait_timeout)
    return results, diffs, final


def _wait(client, resource, item, awaited, timeout):
    """The object once ready; a Deployment that does not roll out is explained by its Pods."""
    try:
        return client.wait(resource, item.name, item.namespace, awaited[0], timeout, awaited[1])
    except WaitTimeout:
        if resource is not DEPLOYMENTS:
            raise
        raise WaitTimeout(rollout.explain(client, item.name, item.namespace, timeout))


def delete_planned(client, planned, check_mode, wait=False, wait_timeout=120):
    """Delete each object in reverse order; ([result entries], [diffs])."""
    results, diffs = [], []
    for item in reversed(planned):
        change = client.delete(item.resource, item.name, item.namespace) if item.resource is not None else None
        deleted = bool(change and change.changed)
        results.append(item.entry("deleted" if deleted else "absent"))
        if deleted:
            diffs.append(diff(change))
            if wait and not check_mode:
                client.wait(item.resource, item.name, item.namespace, lambda current: current is None, wait_timeout,
                            "deleted")
    return results, diffs


def uid_on_cluster(change, check_mode):
    """The uid of the object on the cluster after a change: a dry run's new object is not there."""
    there = change.before if check_mode else change.after
    return there["metadata"]["uid"] if there else None


def changed(results):
    return any(entry["action"] in ("created", "updated", "deleted") for entry in results)


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # as Kubernetes writes times in conditions


def now():
    """The time as Kubernetes writes it in conditions."""
    return datetime.datetime.now(datetime.timezone.utc).strftime(TIME_FORMAT)


class LeadershipLost(Exception):
    """A write was not sent: the agent whose pass wanted it no longer leads."""


class Recorder:
    """Applies and deletes single objects for a module, keeping results and diffs as klutch_manifest reports them.

    An agent passes `proceed`, asked before every write (does it still lead?): once it says no, the
    write is not sent and LeadershipLost ends the pass, so two replicas never write at once.
    """

    def __init__(self, client, check_mode, proceed=None):
        self.client = client
        self.check_mode = check_mode
        self.proceed = proceed
        self.results = []
        self.diffs = []

    def _may_write(self):
        if self.proceed is not None and not self.proceed():
            raise LeadershipLost("not written: this agent no longer leads")

    @property
    def changed(self):
        return changed(self.results)

    def apply(self, obj, resource=None, subresource=None, definition_wait=60, **known):
        """Apply `obj` (of a known kind unless `resource` is given); the object after it.

        `before=` passes the object as a listing already showed it (None: absent), saving a GET.
        A CRD or XRD that changed is waited for until ready, so its kinds can be used next.
        """
        resource = resource or KNOWN[(obj["apiVersion"], obj["kind"])]
        self._may_write()
        change = self.client.apply(resource, obj, subresource=subresource, **known)
        self._record(obj, change, "updated" if change.before is not None else "created")
        item = Planned(obj, resource, obj["metadata"].get("namespace"))
        awaited = _awaited(item, change.changed, False, None) if not self.check_mode and not subresource else None
        if awaited:
            for api_version, _kind in manifests.served_by(obj):
                self.client.forget_group_version(api_version)
            return self.client.wait(resource, item.name, item.namespace, awaited[0], definition_wait, awaited[1])
        return change.after

    def preflight(self, objects):
        """Dry-run `objects` (of known kinds) before the first of them is written: refused whole, or the
        server's refusal of access (a right the caller may not grant) raised before any write. The
        server's answer per object, for apply(answer=) to skip asking again (None in check mode)."""
        if self.check_mode:  # every apply is a dry run already
            return [None] * len(objects)
        answers = preflight(self.client, [Planned(obj, KNOWN[(obj["apiVersion"], obj["kind"])],
                                                  obj["metadata"].get("namespace")) for obj in objects], False)
        return [answers.get(index) for index in range(len(objects))]

    def create(self, obj, resource=None):
        """Create `obj`; the server's 409 when it exists, for a name that two writers may race for."""
        resource = resource or KNOWN[(obj["apiVersion"], obj["kind"])]
        self._may_write()
        created = self.client.write("POST", resource, obj)
        self._record(obj, Change(None, created, True), "created")
        return created

    def delete(self, resource, name, namespace=None, **known):
        self._may_write()
        change = self.client.delete(resource, name, namespace, **known)
        self._record({"apiVersion": resource.api_version, "kind": resource.kind,
                      "metadata": {"name": name, "namespace": namespace}}, change, "deleted")

    def updated(self, obj):
        """A write made elsewhere (a finalizer taken off, say), reported like an apply that changed `obj`."""
        self.results.append(Planned(obj, None, obj["metadata"].get("namespace")).entry(
            "updated", None if self.check_mode else obj["metadata"].get("uid")))

    def planned(self, obj):
        """An object that check mode cannot dry-run (its namespace is still to be created): reported as created."""
        self.results.append(Planned(obj, None, obj["metadata"].get("namespace")).entry("created"))

    def _record(self, obj, change, action):
        self.results.append(Planned(obj, None, obj["metadata"].get("namespace")).entry(
            action if change.changed else "unchanged", uid_on_cluster(change, self.check_mode)))
        if change.changed:
            self.diffs.append(diff(change))
