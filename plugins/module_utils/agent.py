# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agents: the konnector on an app cluster and the backend on the control plane, as long-running processes.

    python -m ansible_collections.klutch.bind.plugins.module_utils.agent konnector --kubeconfig app.kubeconfig
    python -m ansible_collections.klutch.bind.plugins.module_utils.agent backend --kubeconfig cp.kubeconfig

Every change that a watch reports, and a periodic resync, triggers one pass: the konnector runs
klutch_claim_sync's pass for every binding and keeps each binding's CRD like its export; the
backend runs klutch_export_request's reconcile for every consumer namespace (requests made by
anyone, export drift, namespace mapping, RBAC). A Lease elects one leader among replicas, the
konnector heartbeats on its ClusterBinding, /healthz answers on the health port, logs are JSON
lines without object bodies, and SIGTERM stops it cleanly.
"""

import argparse
import datetime
import json
import os
import signal
import socket
import sys
import threading
import time

from ansible_collections.klutch.bind.plugins.module_utils import app_cluster, backend, konnector
from ansible_collections.klutch.bind.plugins.module_utils.control_plane import KUBECONFIG_SECRET
from ansible_collections.klutch.bind.plugins.module_utils.k8s.apply import LeadershipLost, Recorder, now
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import AGENT_RETRY_BUDGET, ClusterClient, backoff
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError, Conflict, Forbidden, Invalid, Unauthorized
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    ROLE_BINDINGS,
    SECRETS,
    Resource,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import (
    API_SERVICE_BINDINGS,
    API_SERVICE_EXPORT_REQUESTS,
    API_SERVICE_EXPORTS,
    API_SERVICE_NAMESPACES,
    CLUSTER_BINDINGS,
    EXPORT_TEMPLATES,
)
from ansible_collections.klutch.bind.plugins.module_utils.sync import CONSUMER, PROVIDER

try:
    from http.server import BaseHTTPRequestHandler, HTTPServer
except ImportError:  # Python 2 has no agent
    BaseHTTPRequestHandler = HTTPServer = object

VERSION = "0.1.0"
LEASES = Resource("coordination.k8s.io/v1", "Lease", "leases")
LEASE_SECONDS = 15  # as Klutch's konnector: duration 15 s, renewed well before
HEARTBEAT_INTERVAL = 150  # s; the ClusterBinding is told 5m0s, Klutch's heartbeat interval
WATCH_SECONDS = 60
GRANT_SECONDS = 10  # for a fresh RoleBinding to take effect (the API server's RBAC cache trails writes)
MAX_CHAINED_PASSES = 3  # passes that may follow each other at once while they keep writing


def log(level, message, **fields):
    record = dict(time=datetime.datetime.now(datetime.timezone.utc).isoformat(), level=level, msg=message, **fields)
    sys.stderr.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stderr.flush()


def micro_time(moment=None):
    moment = moment or datetime.datetime.now(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Lease:
    """Leader election on a coordination.k8s.io Lease: hold it while renewing, take it when it lapses.

    A lapse is judged by this process's own clock: the holder's renewTime must not have changed for a
    whole lease term since this process first saw it, so clock skew between hosts cannot hand over
    leadership early.
    """

    def __init__(self, client, namespace, name, identity):
        self.client, self.namespace, self.name, self.identity = client, namespace, name, identity
        self.observed, self.observed_at = None, 0.0

    def hold(self):
        """Whether this process leads now; acquires or renews the Lease."""
        moment = datetime.datetime.now(datetime.timezone.utc)
        current = self.client.get(LEASES, self.name, self.namespace)
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro_time(moment)}
        if current is None:
            body = {"apiVersion": LEASES.api_version, "kind": LEASES.kind,
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": dict(spec, acquireTime=micro_time(moment))}
            return self._write("POST", body)
        held = current.get("spec") or {}
        holder = held.get("holderIdentity")
        seen = (holder, held.get("renewTime"))
        if seen != self.observed:
            self.observed, self.observed_at = seen, time.monotonic()
        lapsed = not holder or time.monotonic() - self.observed_at > (held.get("leaseDurationSeconds") or LEASE_SECONDS)
        if holder != self.identity and not lapsed:
            return False
        if holder != self.identity:
            spec["acquireTime"] = micro_time(moment)
        body = dict(current, spec=dict(held, **spec))  # carries resourceVersion: one winner per change
        return self._write("PUT", body)

    def release(self):
        """On shutdown: an empty holder lets a standby take over at once instead of after a lease term."""
        current = self.client.get(LEASES, self.name, self.namespace)
        if current is not None and (current.get("spec") or {}).get("holderIdentity") == self.identity:
            self._write("PUT", dict(current, spec=dict(current["spec"], holderIdentity=None, leaseDurationSeconds=1)))

    def _write(self, method, body):
        try:
            self.client.write(method, LEASES, body)
            return True
        except (Conflict, Invalid):
            return False  # someone else changed it first


class Watches:
    """Watch threads that set `changed` when anything they watch changes; kept in step with the bindings."""

    def __init__(self, changed, stopping):
        self.changed, self.stopping = changed, stopping
        self.running = {}

    def keep(self, wanted):
        """Run exactly the watches in `wanted`: {key: (client, resource, namespace[, field selector])}."""
        for key in list(self.running):
            if key not in wanted:
                self.running.pop(key).set()
        for key, watched in wanted.items():
            if key not in self.running:
                stop = threading.Event()
                self.running[key] = stop
                client, resource, namespace = watched[:3]
                selector = watched[3] if len(watched) > 3 else None
                thread = threading.Thread(target=self._watch, args=(client, resource, namespace, selector, stop),
                                          daemon=True)
                thread.start()

    def _watch(self, client, resource, namespace, selector, stop):
        """List once, then watch on from the last version seen; list again only when that version is gone.

        After a failure the thread backs off and lists again, and asks for a pass: events may have been
        missed meanwhile. Nothing but `stop` ends the thread.
        """
        attempt, version = 0, None
        while not stop.is_set() and not self.stopping.is_set():
            try:
                if version is None:
                    version = client.list(resource, namespace, field_selector=selector)[1]
                    if attempt:
                        self.changed.set()
                for kind, obj in client.watch(resource, namespace, version, WATCH_SECONDS, field_selector=selector):
                    if stop.is_set():
                        return
                    if kind == "ERROR":
                        if obj.get("code") != 410:
                            raise ClusterError("watch error %s: %s" % (obj.get("code"), obj.get("message")))
                        version = None  # expired: list again
                        break
                    version = (obj.get("metadata") or {}).get("resourceVersion") or version
                    if kind != "BOOKMARK":
                        self.changed.set()
                attempt = 0
            except Exception as error:  # pylint: disable=broad-exception-caught
                log("warning", "watch failed; retrying", resource=resource.plural, namespace=namespace,
                    error=str(error) if isinstance(error, ClusterError) else error.__class__.__name__)
                version = None
                stop.wait(backoff(min(attempt, 5)))
                attempt += 1


class Leadership:
    """Keeps the Lease from a thread of its own, so that a long pass cannot outlive its leadership.

    Leadership counts as held for two thirds of a lease term after each successful renewal: when
    renewals stay overdue, this process stops writing before another one may take over.
    """

    def __init__(self, lease, stopping, gained):
        self.lease, self.stopping, self.gained = lease, stopping, gained
        self.valid_until = 0.0
        self.checked_at = None  # when the Lease was last read and held or seen held by another

    def working(self):
        """Whether the Lease answered lately: an agent that can never take it does nothing, so it is not healthy."""
        return self.checked_at is not None and time.monotonic() - self.checked_at < 2 * LEASE_SECONDS

    def leading(self):
        return time.monotonic() < self.valid_until

    def run(self):
        attempt = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                was_leading = self.leading()
                held = self.lease.hold()
                self.valid_until = started + LEASE_SECONDS * 2 / 3.0 if held else 0.0
                self.checked_at = started
                if held and not was_leading:
                    log("info", "leading", lease="%s/%s" % (self.lease.namespace, self.lease.name))
                    self.gained.set()
                elif was_leading and not held:
                    log("warning", "lost the lease", lease="%s/%s" % (self.lease.namespace, self.lease.name))
                attempt = 0
            except Exception as error:  # pylint: disable=broad-exception-caught
                log("warning", "lease renewal failed", error=str(error) if isinstance(error, ClusterError)
                    else error.__class__.__name__)
                attempt += 1
            self.stopping.wait(min(LEASE_SECONDS / 3.0, backoff(attempt)) if attempt else LEASE_SECONDS / 3.0)

    def release(self):
        try:
            if self.leading():
                self.lease.release()
        except ClusterError as error:
            log("warning", "lease not released", error=str(error))


class Agent:
    """The loop every agent shares: leadership, a pass on every change and on resync, health, backoff."""

    def __init__(self, client, options, role):
        self.client = client
        self.options = options
        self.role = role
        self.changed = threading.Event()
        self.stopping = threading.Event()
        self.watches = Watches(self.changed, self.stopping)
        self.leadership = Leadership(Lease(client, options.lease_namespace, options.lease_name, options.identity),
                                     self.stopping, self.changed)
        self.last_pass = None
        self.passes = 0
        self.failing = 0  # what the last pass could not sync (bindings, consumers); 0 while standing by

    @property
    def leading(self):
        return self.leadership.leading()

    def stop(self):
        self.stopping.set()
        self.changed.set()  # wake the loop now

    def healthy(self):
        return self.last_pass is not None and time.monotonic() - self.last_pass < 3 * self.options.resync + 30 \
            and self.leadership.working()

    def ready(self):
        """Healthy, and, when leading, the last pass synced everything (credentials work, clusters answer)."""
        return self.healthy() and not self.failing

    def run(self):
        threading.Thread(target=self.leadership.run, daemon=True).start()
        attempt, chained, due = 0, 0, 0.0
        while not self.stopping.is_set():
            try:
                if not self.leading:
                    self.watches.keep({})
                    self.failing = 0
                    due = 0.0  # a pass at once when leadership comes
                elif self.changed.is_set() or time.monotonic() >= due:
                    self.changed.clear()
                    wanted, written, failed = self.role.sync(self.client, self.options, self.leadership.leading)
                    self.watches.keep(wanted)
                    self.passes += 1
                    self.failing = failed
                    due = time.monotonic() + self.options.resync
                    # A write may need a second step (status, mapping): look again at once, a few times.
                    chained = chained + 1 if written and not failed else 0
                    if 0 < chained <= MAX_CHAINED_PASSES:
                        self.changed.set()
                self.last_pass = time.monotonic()
                attempt = 0
            except Exception as error:  # pylint: disable=broad-exception-caught
                # Whatever one pass meets, the agent lives on: the next pass may find it fixed.
                log("error", "pass failed; retrying", error=str(error) if isinstance(error, ClusterError)
                    else error.__class__.__name__)
                self.failing = self.failing or 1
                self.stopping.wait(backoff(min(attempt, 5)))
                attempt += 1
                continue
            # Wake on a change, on leadership, or to resync.
            self.changed.wait(min(max(due - time.monotonic(), 0.05), 1.0))
        self.watches.keep({})
        self.leadership.release()


class Konnector:
    """On an app cluster: every binding's sync pass, its CRD kept like the export, and the heartbeat."""

    def __init__(self):
        self.heartbeats = {}
        self.providers = {}  # one client per control-plane kubeconfig, kept across passes
        self.connected = set()  # the kubeconfigs of self.providers used in this pass
        self.rotation_checked = set()  # (app-side Secret, consumer namespace) checked for a rotation in this pass
        self.granted = set()  # bound namespaces where the agent holds its claimed-kind RoleBinding
        self.withheld = {}  # binding -> why its last pass removed nothing upstream (logged when it changes)

    def connect(self, config):
        key = json.dumps(config, sort_keys=True)
        if key not in self.providers:
            self.providers[key] = ClusterClient.from_params({"kubeconfig": config}, environ={},
                                                            retry_budget=AGENT_RETRY_BUDGET)
        self.connected.add(key)
        return self.providers[key]

    def forget_unused_connections(self):
        """Drop the clients no binding used in the pass (credentials rotated out, bindings gone)."""
        for key in set(self.providers) - self.connected:
            del self.providers[key]
        self.connected = set()

    def grant(self, app, service_account):
        """before_claims for the pass: the RoleBinding that lets the agent read claimed kinds in a bound namespace."""
        def grant_in(namespaces, resources):
            fresh = [namespace for namespace in namespaces if namespace not in self.granted]
            for namespace in fresh:
                app.apply(ROLE_BINDINGS, app_cluster.claims_role_binding(namespace, service_account))
            for namespace in fresh:
                refused = app.await_allowed([("list", resource.group, resource.plural, namespace)
                                             for resource in resources], GRANT_SECONDS)
                if refused:
                    raise Forbidden(
                        "The API server on cluster %s still refuses to let the konnector list %s in namespace %s %ss "
                        "after it granted itself that right (RoleBinding %s/%s). The next pass tries again; if this "
                        "lasts, check the ClusterRole %s and the agent's RBAC." % (
                            app.label, refused[2], namespace, GRANT_SECONDS, namespace, app_cluster.KONNECTOR_CLAIMS,
                            app_cluster.KONNECTOR_CLAIMS), status=403)
                self.granted.add(namespace)
        return grant_in if service_account else None

    def sync(self, app, options, proceed):
        bindings = app.list(API_SERVICE_BINDINGS, app_cluster.BIND_NAMESPACE)[0]
        self.rotation_checked = set()
        wanted = {("app", "bindings"): (app, API_SERVICE_BINDINGS, app_cluster.BIND_NAMESPACE),
                  ("app", "namespaces"): (app, NAMESPACES, None)}  # a deleted namespace is unmapped
        written, failed = 0, 0
        for binding in bindings:
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
            bound = konnector.BoundApi(binding, app, self.connect)
        except konnector.Unbound as problem:  # the binding's status says why
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
            if konnector.follow_rotation(app, bound, self.connect):
                log("info", "kubeconfig copied from the control plane", binding=name)
                written += 1
        written += self.keep_status(app, binding, None)
        written += self.keep_crd(app, bound)
        operations, resources = konnector.plan_binding(bound, app, before_claims=self.grant(app, options.grant_claims_to))
        if bound.removals_withheld and self.withheld.get(name) != bound.removals_withheld:
            log("warning", "removals withheld", binding=name, error=konnector.withheld_message(bound))
        self.withheld[name] = bound.removals_withheld
        made, errors = konnector.run_operations(operations, {CONSUMER: app, PROVIDER: bound.provider}, resources,
                                                bound.namespace, options.concurrency, proceed)
        if operations:
            log("info", "synced", binding=bound.name, writes=konnector.counts(operations), failed=len(errors))
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
        released = konnector.release_instances(app, name, deleting_only=True)
        if released:
            log("info", "deletions released without reaching the control plane", binding=name, instances=len(released))
        return written + len(released)

    @staticmethod
    def keep_status(app, binding, problem):
        """The binding's conditions say what the pass finds: True while it is served, else why not."""
        previous = binding.get("status") or {}
        if not previous.get("conditions"):
            return 0  # klutch_binding has not written its status yet: its provider name would be lost
        status = app_cluster.binding_status(previous.get("providerPrettyName", ""), now(), previous, problem)
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
        problem = app_cluster.foreign_crd_problem(current, bound.name)
        if problem:
            log("error", "CRD not ours", binding=bound.name, error=problem)
            return 0
        change = app.apply(CUSTOM_RESOURCE_DEFINITIONS, app_cluster.crd_from_export(bound.export, bound.binding),
                           before=current)
        if change.changed:
            log("info", "CRD updated from the export", binding=bound.name)
        return int(change.changed)

    @staticmethod
    def watched(app, bound, resources):
        """Watches for one binding: its kinds on the app cluster, and in its mapped namespaces upstream."""
        # Keyed by the client too: once a rotation brought new credentials, watches restart with them.
        provider_key = (bound.namespace, id(bound.provider))
        wanted = {("provider", provider_key, "apiservicenamespaces"): (bound.provider, API_SERVICE_NAMESPACES,
                                                                       bound.namespace),
                  ("provider", provider_key, "apiserviceexports"): (bound.provider, API_SERVICE_EXPORTS,
                                                                    bound.namespace),
                  ("provider", provider_key, "kubeconfig"): (bound.provider, SECRETS, bound.namespace,
                                                             konnector.name_selector(KUBECONFIG_SECRET))}
        for resource in resources.values():
            if resource is bound.instances:
                wanted[("app", resource.api_version, resource.plural)] = (app, resource, None)
            else:  # claimed kinds: only in bound namespaces, where the agent may read them
                for source in bound.claim_namespaces:
                    wanted[("app", resource.api_version, resource.plural, source)] = (app, resource, source)
            if not resource.namespaced:
                wanted[("provider", provider_key, resource.api_version, resource.plural)] = (
                    bound.provider, resource, None)
                continue
            # A claim that names its objects is watched name by name: the consumer may read no others.
            names = None if resource is bound.instances else \
                bound.claim_names.get((resource.api_version.rpartition("/")[0], resource.plural))
            for target in sorted(bound.mapping.down):
                key = ("provider", provider_key, resource.api_version, resource.plural, target)
                if names is None:
                    wanted[key] = (bound.provider, resource, target)
                for name in sorted(names or ()):
                    wanted[key + (name,)] = (bound.provider, resource, target, konnector.name_selector(name))
        return wanted

    def heartbeat(self, bound):
        """Klutch's konnector heartbeat on the consumer's ClusterBinding, every 2.5 minutes."""
        last = self.heartbeats.get(bound.namespace)
        if last is not None and time.monotonic() - last < HEARTBEAT_INTERVAL:
            return
        bound.provider.write("APPLY", CLUSTER_BINDINGS, {
            "apiVersion": CLUSTER_BINDINGS.api_version, "kind": CLUSTER_BINDINGS.kind,
            "metadata": {"name": "cluster", "namespace": bound.namespace},
            "status": {"lastHeartbeatTime": now(), "heartbeatInterval": "5m0s",
                       "konnectorVersion": VERSION}}, subresource="status")
        self.heartbeats[bound.namespace] = time.monotonic()


class Backend:
    """On the control plane: the backend controllers for every consumer namespace."""

    WATCHED = (API_SERVICE_EXPORT_REQUESTS, API_SERVICE_EXPORTS, API_SERVICE_NAMESPACES, CUSTOM_RESOURCE_DEFINITIONS,
               EXPORT_TEMPLATES)

    @classmethod
    def sync(cls, control_plane, options, proceed):
        """One pass over every consumer namespace; each is read and reconciled on its own, so whatever one
        consumer wrote (an odd heartbeat, a namespace the server refuses) holds up no other. Every write
        asks `proceed()` first: once this replica no longer leads, the pass ends."""
        catalog = backend.Catalog(control_plane)
        moment = datetime.datetime.now(datetime.timezone.utc)
        written, failed = 0, 0
        for consumer in backend.Consumer.all(control_plane):
            recorder = Recorder(control_plane, check_mode=False, proceed=proceed)
            try:
                backend.reconcile(recorder, consumer.read(control_plane), catalog, options.consumer_scope, moment)
            except LeadershipLost:
                log("warning", "no longer leading; pass stopped", namespace=consumer.namespace)
                break
            except Exception as error:  # pylint: disable=broad-exception-caught
                failed += 1
                log("error", "consumer cannot be reconciled", namespace=consumer.namespace,
                    error=str(error) if isinstance(error, ClusterError) else error.__class__.__name__)
            finally:
                changes = [entry for entry in recorder.results if entry["action"] != "unchanged"]
                if changes:
                    log("info", "reconciled", namespace=consumer.namespace,
                        writes=["%s %s %s" % (entry["action"], entry["kind"], entry["name"]) for entry in changes])
                written += len(changes)
        wanted = dict((("control-plane", resource.plural), (control_plane, resource, None)) for resource in cls.WATCHED)
        return wanted, written, failed


def serve_health(agent, port):
    class Health(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            healthy, ready = agent.healthy(), agent.ready()
            body = json.dumps({"healthy": healthy, "ready": ready, "leading": agent.leading, "passes": agent.passes,
                               "failing": agent.failing}).encode("utf-8")
            # /healthz: alive (liveness); /readyz: doing its job (readiness); other paths only report.
            ok = {"/healthz": healthy, "/readyz": ready}.get(self.path, True)
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass  # requests are not worth a log line each

    server = HTTPServer(("127.0.0.1" if agent.options.health_local else "0.0.0.0", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


ROLES = {"konnector": (Konnector, app_cluster.BIND_NAMESPACE), "backend": (Backend, "klutch-bind-system")}


def parse(argv):
    parser = argparse.ArgumentParser(prog="klutch-agent", description=__doc__.partition("\n\n")[0])
    parser.add_argument("role", choices=sorted(ROLES), help="konnector on an app cluster, backend on the control plane")
    parser.add_argument("--kubeconfig", help="the cluster's kubeconfig; default K8S_AUTH_* or ~/.kube/config")
    parser.add_argument("--context", help="its context")
    parser.add_argument("--resync", type=float, default=30.0, help="seconds between passes without changes")
    parser.add_argument("--concurrency", type=int, default=konnector.CONCURRENCY)
    parser.add_argument("--consumer-scope", choices=["Namespaced", "Cluster"], default="Namespaced",
                        help="backend: the scope of consumers whose exports do not say")
    parser.add_argument("--health-port", type=int, default=8081)
    parser.add_argument("--health-local", action="store_true", help="listen on 127.0.0.1 only")
    parser.add_argument("--lease-namespace", help="default klutch-bind (konnector) or klutch-bind-system (backend)")
    parser.add_argument("--lease-name", help="default klutch-bind (konnector) or klutch-bind-backend (backend)")
    parser.add_argument("--grant-claims-to", metavar="NAMESPACE/SERVICEACCOUNT",
                        help="konnector: bind klutch-bind-konnector-claims to this account in each bound namespace")
    parser.add_argument("--identity", default="%s-%d" % (socket.gethostname(), os.getpid()))
    options = parser.parse_args(argv)
    options.lease_namespace = options.lease_namespace or ROLES[options.role][1]
    options.lease_name = options.lease_name or ("klutch-bind" if options.role == "konnector" else "klutch-bind-backend")
    return options


def main(argv=None):
    options = parse(sys.argv[1:] if argv is None else argv)
    params = {"kubeconfig": options.kubeconfig, "context": options.context}
    client = ClusterClient.from_params(dict((key, value) for key, value in params.items() if value),
                                       retry_budget=AGENT_RETRY_BUDGET)
    agent = Agent(client, options, ROLES[options.role][0]())
    signal.signal(signal.SIGTERM, lambda signum, frame: agent.stop())
    signal.signal(signal.SIGINT, lambda signum, frame: agent.stop())
    server = serve_health(agent, options.health_port)
    log("info", "%s started" % options.role, cluster=client.label, identity=options.identity)
    agent.run()
    server.shutdown()
    log("info", "%s stopped" % options.role)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
