# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The konnector's side of the agent, on an app cluster: each binding's sync pass (the one klutch_claim_sync
runs), its CRD and status kept like the export, the agent's rights in bound namespaces, the heartbeat
on the consumer's ClusterBinding, and the watches that wake it.

Both clusters are read through caches that the watches keep, so a pass over objects in step sends no
request; a change wakes only the bindings whose watches saw it, and each resync all of them."""

import json
import threading
import time

from ansible_collections.klutch.bind.plugins.module_utils.agent.runtime import CachedClient, log
from ansible_collections.klutch.bind.plugins.module_utils.k8s.apply import now
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import AGENT_RETRY_BUDGET, ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError, Forbidden, Unauthorized
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    ROLE_BINDINGS,
    SECRETS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import (
    API_SERVICE_BINDINGS,
    API_SERVICE_EXPORTS,
    API_SERVICE_NAMESPACES,
    CLUSTER_BINDINGS,
)
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import sync
from ansible_collections.klutch.bind.plugins.module_utils.plan import bindings
from ansible_collections.klutch.bind.plugins.module_utils.plan.consumers import KUBECONFIG_SECRET
from ansible_collections.klutch.bind.plugins.module_utils.plan.sync import APP_CLUSTER, CONTROL_PLANE

VERSION = "0.1.0"
HEARTBEAT_INTERVAL = 150  # s; the ClusterBinding is told 5m0s, Klutch's heartbeat interval
GRANT_SECONDS = 10  # for a fresh RoleBinding to take effect (the API server's RBAC cache trails writes)
WHOLE = None  # a pass over everything of a binding, not only some changed instances


class Konnector:
    """On an app cluster: every binding's sync pass, its CRD kept like the export, and the heartbeat."""

    def __init__(self):
        self.app = None  # the app cluster's CachedClient, made on the first pass
        self.lock = threading.Lock()
        self.waiting = {}  # {binding: the instances a change touched since its last pass, or WHOLE}
        self.everyone = True  # every binding next: at the start, after a binding, namespace or kubeconfig changed
        self.watches = {}  # {binding: {watch key: Informer}} from its last pass
        self.connection = {}  # {binding: the key of its control plane's client} from its last pass
        self.failing = set()  # bindings whose last pass did not go well: passed over again each time
        self.heartbeats = {}
        self.control_planes = {}  # one CachedClient per control-plane kubeconfig, kept while a binding uses it
        self.rotation_checked = set()  # (app-side Secret, consumer namespace) checked for a rotation in this pass
        self.granted = set()  # bound namespaces where the agent holds its claimed-kind RoleBinding
        self.withheld = {}  # binding -> why its last pass removed nothing upstream (logged when it changes)
        self.resync = 30.0  # seconds between whole passes, from the options of the first pass

    def connect(self, config):
        """The control plane's client for a consumer's kubeconfig. The consumer may get its namespace but not
        watch it: that read goes to the server once per resync, which also finds refused credentials at once,
        however long a watch that began before kept going."""
        key = json.dumps(config, sort_keys=True)
        if key not in self.control_planes:
            self.control_planes[key] = CachedClient(ClusterClient.from_params(
                {"kubeconfig": config}, environ={}, retry_budget=AGENT_RETRY_BUDGET), {"namespaces": self.resync})
        return self.control_planes[key]

    def connection_of(self, client):
        return next((key for key, held in self.control_planes.items() if held is client), None)

    def grant(self, app, service_account):
        """before_claims for the pass: the RoleBinding that lets the agent read claimed kinds in a bound namespace."""
        def grant_in(namespaces, resources):
            fresh = [namespace for namespace in namespaces if namespace not in self.granted]
            for namespace in fresh:
                app.apply(ROLE_BINDINGS, bindings.claims_role_binding(namespace, service_account))
            for namespace in fresh:
                refused = app.await_allowed([("list", resource.group, resource.plural, namespace)
                                             for resource in resources], GRANT_SECONDS)
                if refused:
                    raise Forbidden(
                        "The API server on cluster %s still refuses to let the konnector list %s in namespace %s %ss "
                        "after it granted itself that right (RoleBinding %s/%s). The next pass tries again; if this "
                        "lasts, check the ClusterRole %s and the agent's RBAC." % (
                            app.label, refused[2], namespace, GRANT_SECONDS, namespace, bindings.KONNECTOR_CLAIMS,
                            bindings.KONNECTOR_CLAIMS), status=403)
                self.granted.add(namespace)
        return grant_in if service_account else None

    def wake(self, name, kind=None, side=None):
        """The callback of a watch: wake binding `name`, or every binding (None). A watch of one of the binding's
        kinds (its instances, or a claimed kind) on `side` notes which object changed: a pass for changed
        objects only looks at those."""
        def woken(obj):
            metadata = obj.get("metadata") or {}
            with self.lock:
                if name is None:
                    self.everyone = True
                elif kind is None or self.waiting.get(name, set()) is WHOLE:
                    self.waiting[name] = WHOLE
                else:
                    self.waiting.setdefault(name, set()).add((kind, side, metadata.get("namespace"), metadata.get("name")))
        return woken

    def due(self, listed, resync):
        """[(binding, the objects to look at, or WHOLE)] to pass over now: those that changes touched, whole
        when anything but their objects changed or they failed; every binding whole on a resync."""
        with self.lock:
            everyone, self.everyone = self.everyone or resync, False
            waiting, self.waiting = self.waiting, {}
        due = []
        for binding in listed:
            name = binding["metadata"]["name"]
            if everyone or name in self.failing or name not in self.watches:
                due.append((binding, WHOLE))
            elif name in waiting:
                due.append((binding, waiting[name]))
        return due

    def sync(self, client, options, proceed, resync=False):
        """A pass over the bindings that changes touched (every binding on a resync), each on its own; (the
        watches of every binding, what was written, how many bindings could not be synced)."""
        if self.app is None:
            self.app, self.resync = CachedClient(client), options.resync
        app = self.app
        wanted = dict((("app_cluster",) + key, app.informer(resource, namespace, on_change=self.wake(None)))
                      for key, resource, namespace in (
                          (("bindings",), API_SERVICE_BINDINGS, bindings.BIND_NAMESPACE),
                          (("namespaces",), NAMESPACES, None),  # a deleted namespace is unmapped
                          (("kubeconfigs",), SECRETS, bindings.BIND_NAMESPACE)))
        listed = app.list(API_SERVICE_BINDINGS, bindings.BIND_NAMESPACE)[0]
        self.rotation_checked = set()
        written = 0
        for binding, changed in self.due(listed, resync):
            if not proceed():
                break  # no longer the leader: the next one takes over
            name = binding["metadata"]["name"]
            try:  # one binding's trouble, whatever it is, does not hold up the others
                made, ok = self.sync_binding(app, binding, options, proceed, changed)
            except Exception as error:  # pylint: disable=broad-exception-caught
                made, ok = 0, False
                self.granted.clear()  # a RoleBinding someone removed is written again on the next pass
                log("error", "binding cannot be synced", binding=name,
                    error=str(error) if isinstance(error, ClusterError) else error.__class__.__name__)
            written += made
            (self.failing.discard if ok else self.failing.add)(name)
        return self.keep_watches(wanted, set(binding["metadata"]["name"] for binding in listed)), written, \
            len(self.failing)

    def keep_watches(self, wanted, names):
        """Every listed binding's watches from its last pass, and the clients they use; the rest is let go."""
        for state in (self.watches, self.connection):
            for gone in set(state) - names:
                del state[gone]
        self.failing &= names
        for watches in self.watches.values():
            wanted.update(watches)
        used = set(self.connection.values())
        for key in set(self.control_planes) - used:
            del self.control_planes[key]
        for cached in ([self.app] if self.app else []) + list(self.control_planes.values()):
            cached.retain(wanted.values())
        return wanted

    def sync_binding(self, app, binding, options, proceed, changed=WHOLE):
        """One binding's pass, WHOLE or for the `changed` objects only; (writes made, whether all went well). The
        watches and the client of a whole pass are kept for the next."""
        name = binding["metadata"]["name"]
        if changed is WHOLE:
            self.watches[name], self.connection[name] = {}, None
        try:
            bound = sync.BoundApi(binding, app, self.connect)
            bound.consumer_namespace()  # the control plane still takes these credentials
        except sync.Unbound as problem:  # the binding's status says why
            return self.unserved(app, binding, (problem.condition, problem.reason, str(problem))), False
        except Unauthorized as error:  # the control plane refuses this consumer's credentials
            return self.unserved(app, binding, ("Connected", "ProviderUnauthorized", (
                "The control plane refuses this consumer's credentials: they were revoked, or rotated out "
                "before this app cluster had the new ones. Ask the control plane's operators to reinstate or "
                "rotate them, then bind again. (%s)" % error))), False
        except Forbidden as error:
            return self.unserved(app, binding, ("Connected", "ProviderUnauthorized", str(error))), False
        except ClusterError as error:  # the control plane cannot be reached
            return self.unserved(app, binding, ("Connected", "ProviderUnreachable", str(error))), False
        written = 0
        # Bindings that share a kubeconfig Secret share its check: one pair of reads per consumer and pass.
        checked = (bound.secret[:2], bound.namespace)
        if checked not in self.rotation_checked:
            self.rotation_checked.add(checked)
            if sync.follow_rotation(app, bound, self.connect):
                log("info", "kubeconfig copied from the control plane", binding=name)
                written += 1
                changed = WHOLE  # new credentials: new watches
        written += self.keep_status(app, binding, None)
        if changed is WHOLE:
            written += self.keep_crd(app, bound)
            operations, resources = sync.plan_binding(bound, app, before_claims=self.grant(app, options.grant_claims_to))
        else:
            operations, resources = sync.plan_changed(bound, app, changed)
        if bound.removals_withheld and self.withheld.get(name) != bound.removals_withheld:
            log("warning", "removals withheld", binding=name, error=sync.withheld_message(bound))
        self.withheld[name] = bound.removals_withheld
        made, errors = sync.run_operations(operations, {APP_CLUSTER: app, CONTROL_PLANE: bound.control_plane}, resources,
                                           bound.namespace, options.concurrency, proceed)
        if operations:
            log("info", "synced", binding=bound.name, writes=sync.counts(operations), failed=len(errors))
        for error in errors[:3]:
            log("error", "write failed", binding=bound.name, error=str(error))
        if proceed():
            self.heartbeat(bound)
        if changed is WHOLE:
            self.watches[name] = self.watched(app, bound, resources)
            self.connection[name] = self.connection_of(bound.control_plane)
        return written + made, not errors

    def unserved(self, app, binding, problem):
        """A binding that cannot be served: its status says why, and instances being deleted are let go."""
        name = binding["metadata"]["name"]
        log("error", "binding cannot be synced", binding=name, error=problem[2])
        written = self.keep_status(app, binding, problem)
        released = sync.release_instances(app, name, deleting_only=True)
        if released:
            log("info", "deletions released without reaching the control plane", binding=name, instances=len(released))
        return written + len(released)

    @staticmethod
    def keep_status(app, binding, problem):
        """The binding's conditions say what the pass finds: True while it is served, else why not."""
        previous = binding.get("status") or {}
        if not previous.get("conditions"):
            return 0  # klutch_binding has not written its status yet: its providerPrettyName would be lost
        status = bindings.binding_status(previous.get("providerPrettyName", ""), now(), previous, problem)
        if status == previous:
            return 0
        app.write("APPLY", API_SERVICE_BINDINGS, {
            "apiVersion": API_SERVICE_BINDINGS.api_version, "kind": API_SERVICE_BINDINGS.kind,
            "metadata": {"name": binding["metadata"]["name"], "namespace": binding["metadata"]["namespace"]},
            "status": status}, subresource="status")
        log("info" if problem is None else "error", "binding status", binding=binding["metadata"]["name"],
            conditions=dict((item["type"], item["status"]) for item in status["conditions"]))
        return 1

    @staticmethod
    def keep_crd(app, bound):
        """The binding's CRD follows its export, as Klutch's konnector keeps it."""
        current = app.get(CUSTOM_RESOURCE_DEFINITIONS, bound.name)
        problem = bindings.foreign_crd_problem(current, bound.name)
        if problem:
            log("error", "CRD not ours", binding=bound.name, error=problem)
            return 0
        change = app.apply(CUSTOM_RESOURCE_DEFINITIONS, bindings.crd_from_export(bound.export, bound.binding),
                           before=current)
        if change.changed:
            log("info", "CRD updated from the export", binding=bound.name)
        return int(change.changed)

    def watched(self, app, bound, resources):
        """Watches for one binding, each waking it: its kinds on the app cluster, its CRD there, and upstream its
        ClusterBinding, export, mapping, kubeconfig and kinds in its mapped namespaces."""
        # Keyed by the client too: once a rotation brought new credentials, watches restart with them.
        upstream = ("control_plane", bound.namespace, id(bound.control_plane))
        watches = {}

        def watch(key, client, resource, namespace=None, field_selector=None, kind=None):
            watches[key] = client.informer(resource, namespace, field_selector)
            watches[key].listen(bound.name, self.wake(bound.name, kind, APP_CLUSTER if client is app else CONTROL_PLANE))

        watch(("app_cluster", "crd", bound.name), app, CUSTOM_RESOURCE_DEFINITIONS, None,
              sync.name_selector(bound.name))
        for resource, selector in ((API_SERVICE_NAMESPACES, None), (API_SERVICE_EXPORTS, None), (CLUSTER_BINDINGS, None),
                                   (SECRETS, sync.name_selector(KUBECONFIG_SECRET))):
            watch(upstream + (resource.plural,), bound.control_plane, resource, bound.namespace, selector)
        for kind, resource in resources.items():  # each change of one of them is one object's to look at
            if resource is bound.instances:
                watch(("app_cluster", resource.api_version, resource.plural), app, resource, kind=kind)
            else:  # claimed kinds: only in bound namespaces, where the agent may read them
                for source in bound.claim_namespaces:
                    watch(("app_cluster", resource.api_version, resource.plural, source), app, resource, source,
                          kind=kind)
            if not resource.namespaced:
                watch(upstream + (resource.api_version, resource.plural), bound.control_plane, resource, kind=kind)
                continue
            # A claim that names its objects is watched name by name: the consumer may read no others.
            names = None if resource is bound.instances else \
                bound.claim_names.get((resource.group, resource.plural))
            for target in sorted(bound.mapping.down):
                key = upstream + (resource.api_version, resource.plural, target)
                if names is None:
                    watch(key, bound.control_plane, resource, target, kind=kind)
                for name in sorted(names or ()):
                    watch(key + (name,), bound.control_plane, resource, target, sync.name_selector(name), kind=kind)
        return watches

    def heartbeat(self, bound):
        """Klutch's konnector heartbeat on the consumer's ClusterBinding, every 2.5 minutes."""
        last = self.heartbeats.get(bound.namespace)
        if last is not None and time.monotonic() - last < HEARTBEAT_INTERVAL:
            return
        bound.control_plane.write("APPLY", CLUSTER_BINDINGS, {
            "apiVersion": CLUSTER_BINDINGS.api_version, "kind": CLUSTER_BINDINGS.kind,
            "metadata": {"name": "cluster", "namespace": bound.namespace},
            "status": {"lastHeartbeatTime": now(), "heartbeatInterval": "5m0s",
                       "konnectorVersion": VERSION}}, subresource="status")
        self.heartbeats[bound.namespace] = time.monotonic()
