# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The konnector agent: klutch_claim_sync's pass, driven by watches, as a long-running process.

    python -m ansible_collections.klutch.bind.plugins.module_utils.agent --kubeconfig app.kubeconfig

Every change that a watch reports, and a periodic resync, triggers one pass over all bindings
(the same planner and writer as the module). A Lease elects one leader among replicas, the
ClusterBinding on the control plane gets a heartbeat, /healthz answers on the health port, logs
are JSON lines without object bodies, and SIGTERM stops it cleanly.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import datetime
import json
import os
import signal
import socket
import sys
import threading
import time

from ansible_collections.klutch.bind.plugins.module_utils import app_cluster, konnector
from ansible_collections.klutch.bind.plugins.module_utils.client import ClusterClient, backoff
from ansible_collections.klutch.bind.plugins.module_utils.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.resources import (
    API_SERVICE_BINDINGS,
    API_SERVICE_NAMESPACES,
    CLUSTER_BINDINGS,
    Resource,
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


def log(level, message, **fields):
    record = dict(time=datetime.datetime.now(datetime.timezone.utc).isoformat(), level=level, msg=message, **fields)
    sys.stderr.write(json.dumps(record, sort_keys=True) + "\n")
    sys.stderr.flush()


def micro_time(moment=None):
    moment = moment or datetime.datetime.now(datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Lease:
    """Leader election on a coordination.k8s.io Lease: hold it while renewing, take it when it lapses."""

    def __init__(self, client, namespace, name, identity):
        self.client, self.namespace, self.name, self.identity = client, namespace, name, identity

    def hold(self):
        """Whether this process leads now; acquires or renews the Lease."""
        now = datetime.datetime.now(datetime.timezone.utc)
        current = self.client.get(LEASES, self.name, self.namespace)
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": micro_time(now)}
        if current is None:
            body = {"apiVersion": LEASES.api_version, "kind": LEASES.kind,
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": dict(spec, acquireTime=micro_time(now))}
            return self._write("POST", body)
        held = current.get("spec") or {}
        renewed = held.get("renewTime")
        lapsed = not renewed or datetime.datetime.strptime(renewed, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
            tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=held.get("leaseDurationSeconds") or 15) < now
        if held.get("holderIdentity") != self.identity and not lapsed:
            return False
        if held.get("holderIdentity") != self.identity:
            spec["acquireTime"] = micro_time(now)
        body = dict(current, spec=dict(held, **spec))  # carries resourceVersion: one winner per change
        return self._write("PUT", body)

    def _write(self, method, body):
        try:
            self.client.write(method, LEASES, body)
            return True
        except ClusterError as error:
            if error.status in (409, 422):
                return False  # someone else changed it first
            raise


class Watches:
    """Watch threads that set `changed` when anything they watch changes; kept in step with the bindings."""

    def __init__(self, changed, stopping):
        self.changed, self.stopping = changed, stopping
        self.running = {}

    def keep(self, wanted):
        """Run exactly the watches in `wanted`: {key: (client, resource, namespace)}."""
        for key in list(self.running):
            if key not in wanted:
                self.running.pop(key).set()
        for key, (client, resource, namespace) in wanted.items():
            if key not in self.running:
                stop = threading.Event()
                self.running[key] = stop
                thread = threading.Thread(target=self._watch, args=(client, resource, namespace, stop), daemon=True)
                thread.start()

    def _watch(self, client, resource, namespace, stop):
        attempt = 0
        while not stop.is_set() and not self.stopping.is_set():
            try:
                version = client.list(resource, namespace)[1]
                for kind, _obj in client.watch(resource, namespace, version, WATCH_SECONDS):
                    if stop.is_set():
                        return
                    if kind == "ERROR":
                        break  # the version expired: list again
                    if kind != "BOOKMARK":
                        self.changed.set()
                attempt = 0
            except ClusterError as error:
                log("warning", "watch failed; retrying", resource=resource.plural, namespace=namespace,
                    error=str(error))
                stop.wait(backoff(min(attempt, 5)))
                attempt += 1


class Agent:
    """The konnector loop on one app cluster."""

    def __init__(self, app, options):
        self.app = app
        self.options = options
        self.changed = threading.Event()
        self.stopping = threading.Event()
        self.watches = Watches(self.changed, self.stopping)
        self.lease = Lease(app, options.lease_namespace, options.lease_name, options.identity)
        self.leading = False
        self.renewed_at = 0.0
        self.last_pass = None
        self.heartbeats = {}
        self.passes = 0

    def stop(self):
        self.stopping.set()
        self.changed.set()  # wake the loop now

    def connect(self, config):
        return ClusterClient.from_params({"kubeconfig": config}, environ={})

    def healthy(self):
        return self.last_pass is not None and time.monotonic() - self.last_pass < 3 * self.options.resync + 30

    def run(self):
        attempt = 0
        while not self.stopping.is_set():
            try:
                if not self.leading or time.monotonic() - self.renewed_at > LEASE_SECONDS / 3.0:
                    self.leading = self.lease.hold()  # renewed a few times per lease, not on every pass
                    self.renewed_at = time.monotonic()
                if self.leading:
                    self.sync()
                else:
                    self.watches.keep({})
                self.last_pass = time.monotonic()
                attempt = 0
            except ClusterError as error:
                log("error", "pass failed; retrying", error=str(error))
                self.stopping.wait(backoff(min(attempt, 5)))
                attempt += 1
                continue
            # Wake on a change, or to renew the Lease and resync.
            self.changed.wait(min(self.options.resync, LEASE_SECONDS / 3.0))
            self.changed.clear()
        self.watches.keep({})

    def sync(self):
        bindings = self.app.list(API_SERVICE_BINDINGS, app_cluster.BIND_NAMESPACE)[0]
        wanted = {("app", "bindings"): (self.app, API_SERVICE_BINDINGS, app_cluster.BIND_NAMESPACE)}
        written, failed = 0, 0
        for binding in bindings:
            try:
                bound = konnector.BoundApi(binding, self.app, self.connect)
                operations, resources = konnector.plan_binding(bound, self.app)
            except ClusterError as error:
                log("error", "binding cannot be synced", binding=binding["metadata"]["name"], error=str(error))
                continue
            errors = konnector.run_operations(operations, {CONSUMER: self.app, PROVIDER: bound.provider}, resources,
                                              bound.namespace, self.options.concurrency)
            written += len(operations)
            failed += len(errors)
            if operations:
                log("info", "synced", binding=bound.name, writes=konnector.counts(operations), failed=len(errors))
            for error in errors[:3]:
                log("error", "write failed", binding=bound.name, error=error)
            self.heartbeat(bound)
            wanted.update(self.watched(bound, resources))
        self.watches.keep(wanted)
        self.passes += 1
        if written and not failed:
            self.changed.set()  # look again: created objects may need a second step (status, mapping)

    def watched(self, bound, resources):
        """Watches for one binding: its kinds on the app cluster, and in its mapped namespaces upstream."""
        provider_key = bound.namespace
        wanted = {("provider", provider_key, "apiservicenamespaces"): (bound.provider, API_SERVICE_NAMESPACES,
                                                                       bound.namespace)}
        mapped = [item.get("status", {}).get("namespace") for item in
                  bound.provider.list(API_SERVICE_NAMESPACES, bound.namespace)[0]]
        for resource in resources.values():
            wanted[("app", resource.api_version, resource.plural)] = (self.app, resource, None)
            for target in filter(None, mapped):
                wanted[("provider", provider_key, resource.api_version, resource.plural, target)] = (
                    bound.provider, resource, target)
        return wanted

    def heartbeat(self, bound):
        """Klutch's konnector heartbeat on the consumer's ClusterBinding, every 2.5 minutes."""
        last = self.heartbeats.get(bound.namespace)
        if last is not None and time.monotonic() - last < HEARTBEAT_INTERVAL:
            return
        bound.provider.write("APPLY", CLUSTER_BINDINGS, {
            "apiVersion": CLUSTER_BINDINGS.api_version, "kind": CLUSTER_BINDINGS.kind,
            "metadata": {"name": "cluster", "namespace": bound.namespace},
            "status": {"lastHeartbeatTime": micro_time().split(".")[0] + "Z", "heartbeatInterval": "5m0s",
                       "konnectorVersion": VERSION}}, subresource="status")
        self.heartbeats[bound.namespace] = time.monotonic()


def serve_health(agent, port):
    class Health(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            ok = agent.healthy()
            body = json.dumps({"healthy": ok, "leading": agent.leading, "passes": agent.passes}).encode("utf-8")
            self.send_response(200 if ok or self.path != "/healthz" else 503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass  # requests are not worth a log line each

    server = HTTPServer(("127.0.0.1" if agent.options.health_local else "0.0.0.0", port), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def parse(argv):
    parser = argparse.ArgumentParser(prog="klutch-konnector", description=__doc__.partition("\n\n")[0])
    parser.add_argument("--kubeconfig", help="the app cluster's kubeconfig; default in-cluster or K8S_AUTH_*")
    parser.add_argument("--context", help="its context")
    parser.add_argument("--resync", type=float, default=30.0, help="seconds between passes without changes")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--health-port", type=int, default=8081)
    parser.add_argument("--health-local", action="store_true", help="listen on 127.0.0.1 only")
    parser.add_argument("--lease-namespace", default=app_cluster.BIND_NAMESPACE)
    parser.add_argument("--lease-name", default="klutch-bind")
    parser.add_argument("--identity", default="%s-%d" % (socket.gethostname(), os.getpid()))
    return parser.parse_args(argv)


def main(argv=None):
    options = parse(sys.argv[1:] if argv is None else argv)
    params = {"kubeconfig": options.kubeconfig, "context": options.context}
    app = ClusterClient.from_params(dict((key, value) for key, value in params.items() if value))
    agent = Agent(app, options)
    signal.signal(signal.SIGTERM, lambda signum, frame: agent.stop())
    signal.signal(signal.SIGINT, lambda signum, frame: agent.stop())
    server = serve_health(agent, options.health_port)
    log("info", "konnector started", cluster=app.label, identity=options.identity)
    agent.run()
    server.shutdown()
    log("info", "konnector stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
