# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every agent runs on, whatever its side: leader election on a Lease, watches that wake it, the loop of
passes with backoff, and the health server. Nothing here knows Klutch: a side is an object whose
`sync(client, options, proceed)` runs one pass and names the watches it needs (agent/konnector.py,
agent/backend.py)."""

import datetime
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import backoff
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError, Conflict, Invalid
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import Resource

LEASES = Resource("coordination.k8s.io/v1", "Lease", "leases")
LEASE_SECONDS = 15  # as Klutch's konnector: duration 15 s, renewed well before
WATCH_SECONDS = 60
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
