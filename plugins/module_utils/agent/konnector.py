# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The konnector's side of the agent, on an app cluster: each binding's sync pass (the one klutch_claim_sync
runs), its CRD and status kept like the export, the agent's rights in bound namespaces, the heartbeat
on the consumer's ClusterBinding, and the watches that wake it."""

import json
import time

from ansible_collections.klutch.bind.plugins.module_utils.agent.runtime import log
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


class Konnector:
    """On an app cluster: every binding's sync pass, its CRD kept like the export, and the heartbeat."""

    def __init__(self):
        self.heartbeats = {}
        self.control_planes = {}  # one client per control-plane kubeconfig, kept across passes
        self.connected = set()  # the kubeconfigs of self.control_planes used in this pass
        self.rotation_checked = set()  # (app-side Secret, consumer namespace) checked for a rotation in this pass
        self.granted = set()  # bound namespaces where the agent holds its claimed-kind RoleBinding
        self.withheld = {}  # binding -> why its last pass removed nothing upstream (logged when it changes)

    def connect(self, config):
        key = json.dumps(config, sort_keys=True)
        if key not in self.control_planes:
            self.control_planes[key] = ClusterClient.from_params({"kubeconfig": config}, environ={},
                                                                 retry_budget=AGENT_RETRY_BUDGET)
        self.connected.add(key)
        return self.control_planes[key]

    def forget_unused_connections(self):
        """Drop the clients no binding used in the pass (credentials rotated out, bindings gone)."""
        for key in set(self.control_planes) - self.connected:
            del self.control_planes[key]
        self.connected = set()

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

    def sync(self, app, options, proceed):
        listed = app.list(API_SERVICE_BINDINGS, bindings.BIND_NAMESPACE)[0]
        self.rotation_checked = set()
        wanted = {("app_cluster", "bindings"): (app, API_SERVICE_BINDINGS, bindings.BIND_NAMESPACE),
                  ("app_cluster", "namespaces"): (app, NAMESPACES, None)}  # a deleted namespace is unmapped
        written, failed = 0, 0
        for binding in listed:
            if not proceed():
                break  # no longer the leader: the next one takes over
            try:  # one binding's trouble, whatever it is, does not hold up the others
                made, ok = self.sync_binding(app, binding, options, proceed, wanted)
            except Exception as error:  # pylint: disable=broad-exception-caught
                made, ok = 0, False
                self.granted.clear()  # a RoleBinding someone removed is written again on the next pass
                log("error", "binding cannot be synced", binding=binding["metadata"]["name"],
                    error=str(error) if isinstance(error, ClusterError) else error.__class__.__name__)
            written += made
            failed += int(not ok)
        else:  # every binding was seen: the clients none of them used can go
            self.forget_unused_connections()
        return wanted, written, failed

    def sync_binding(self, app, binding, options, proceed, wanted):
        """One binding's pass; (writes made, whether all went well). Watches it needs go into `wanted`."""
        name = binding["metadata"]["name"]
        try:
            bound = sync.BoundApi(binding, app, self.connect)
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
        written += self.keep_status(app, binding, None)
        written += self.keep_crd(app, bound)
        operations, resources = sync.plan_binding(bound, app, before_claims=self.grant(app, options.grant_claims_to))
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
        wanted.update(self.watched(app, bound, resources))
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

    @staticmethod
    def watched(app, bound, resources):
        """Watches for one binding: its kinds on the app cluster, and in its mapped namespaces upstream."""
        # Keyed by the client too: once a rotation brought new credentials, watches restart with them.
        control_plane_key = (bound.namespace, id(bound.control_plane))
        wanted = {("control_plane", control_plane_key, "apiservicenamespaces"): (bound.control_plane, API_SERVICE_NAMESPACES,
                                                                                 bound.namespace),
                  ("control_plane", control_plane_key, "apiserviceexports"): (bound.control_plane, API_SERVICE_EXPORTS,
                                                                              bound.namespace),
                  ("control_plane", control_plane_key, "kubeconfig"): (bound.control_plane, SECRETS, bound.namespace,
                                                                       sync.name_selector(KUBECONFIG_SECRET))}
        for resource in resources.values():
            if resource is bound.instances:
                wanted[("app_cluster", resource.api_version, resource.plural)] = (app, resource, None)
            else:  # claimed kinds: only in bound namespaces, where the agent may read them
                for source in bound.claim_namespaces:
                    wanted[("app_cluster", resource.api_version, resource.plural, source)] = (app, resource, source)
            if not resource.namespaced:
                wanted[("control_plane", control_plane_key, resource.api_version, resource.plural)] = (
                    bound.control_plane, resource, None)
                continue
            # A claim that names its objects is watched name by name: the consumer may read no others.
            names = None if resource is bound.instances else \
                bound.claim_names.get((resource.group, resource.plural))
            for target in sorted(bound.mapping.down):
                key = ("control_plane", control_plane_key, resource.api_version, resource.plural, target)
                if names is None:
                    wanted[key] = (bound.control_plane, resource, target)
                for name in sorted(names or ()):
                    wanted[key + (name,)] = (bound.control_plane, resource, target, sync.name_selector(name))
        return wanted

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
