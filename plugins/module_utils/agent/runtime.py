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

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import UNREAD, backoff
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError, Conflict, Invalid
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import Change, holds
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


class Informer:
    """One kind's objects on one cluster as a watch keeps them, so that a pass reads them from memory.

    Run by Watches: it lists once, then follows the watch from the list's version; when the version has
    expired (410) or the watch failed, it lists again. Its listeners, `on_change(obj)` and those given to
    listen(), hear of every object added, changed or deleted, from the watch or found by a new list, after
    the cache holds it.
    """

    def __init__(self, client, resource, namespace=None, field_selector=None, on_change=None):
        self.client, self.resource, self.namespace, self.field_selector = client, resource, namespace, field_selector
        self.listeners = {None: on_change} if on_change else {}
        self.objects = {}  # {namespace (None when cluster-scoped): {name: object}}
        self.lock = threading.Lock()
        self.synced = threading.Event()

    def get(self, name, namespace=None):
        with self.lock:
            return self.objects.get(namespace if self.resource.namespaced else None, {}).get(name)

    def items(self, namespace=None):
        """The objects in `namespace`, or all of them, by name."""
        with self.lock:
            if namespace is not None:
                return [obj for _name, obj in sorted(self.objects.get(namespace, {}).items())]
            return [obj for where in sorted(self.objects, key=str) for _name, obj in sorted(self.objects[where].items())]

    def replace(self, items):
        """After a list: the cache holds `items`, and whatever differs from before is reported."""
        listed = {}
        for obj in items:
            listed.setdefault(obj["metadata"].get("namespace"), {})[obj["metadata"]["name"]] = obj
        with self.lock:
            before, self.objects = self.objects, listed
        self.synced.set()
        for namespace in sorted(set(before) | set(listed), key=str):
            old_ones, new_ones = before.get(namespace, {}), listed.get(namespace, {})
            for name in sorted(set(old_ones) | set(new_ones)):
                old, new = old_ones.get(name), new_ones.get(name)
                if old is None or new is None or old["metadata"].get("resourceVersion") != new["metadata"].get(
                        "resourceVersion"):
                    self.on_change(new or old)

    def listen(self, key, on_change):
        """Let `on_change` hear of changes, in place of what listened under `key` before."""
        with self.lock:
            self.listeners[key] = on_change

    def on_change(self, obj):
        with self.lock:
            listeners = list(self.listeners.values())
        for listener in listeners:
            listener(obj)

    def update(self, kind, obj):
        """A watch event. One older than what the cache holds (this agent's own later write) leaves it."""
        metadata = obj["metadata"]
        with self.lock:
            held = self.objects.setdefault(metadata.get("namespace"), {})
            current = ((held.get(metadata["name"]) or {}).get("metadata") or {}).get("resourceVersion")
            if current is None or not later(current, metadata.get("resourceVersion"), unknown=False):
                if kind == "DELETED":
                    held.pop(metadata["name"], None)
                else:
                    held[metadata["name"]] = obj
        self.on_change(obj)

    def written(self, obj, deleted=False):
        """What a write of this agent got back, kept until the watch brings it (or something newer): a pass
        that follows at once reads its own writes. Not reported: the watch event will be."""
        metadata = obj["metadata"]
        version = metadata.get("resourceVersion")
        with self.lock:
            held = self.objects.setdefault(metadata.get("namespace"), {})
            current = (held.get(metadata["name"]) or {}).get("metadata") or {}
            if deleted and current and not later(current.get("resourceVersion"), version):
                del held[metadata["name"]]
            elif not deleted and (not current or later(version, current.get("resourceVersion"))):
                held[metadata["name"]] = obj


def later(version, than, unknown=True):
    """Whether resourceVersion `version` is later than `than`; `unknown` when either is no number."""
    try:
        return int(version) > int(than)
    except (TypeError, ValueError):
        return unknown


class CachedClient:
    """A cluster client whose reads come from the informers that cover them and whose writes go to the server
    and into those informers: a pass over objects that are in step sends no request.

    An object a synced informer covers is read from it, as is a listing of exactly what an informer lists;
    everything else is asked of the server. An apply whose object already holds what is applied is not sent.
    Objects of a kind in `remembered` ({plural: seconds}) that no informer covers, such as one the agent may
    get but not watch, are read again only after that long.
    """

    def __init__(self, client, remembered=None):
        self.client = client
        self.informers = {}  # {(api_version, plural, namespace, field_selector): Informer}
        self.remembered = remembered or {}
        self.memo = {}  # {(plural, namespace, name): (when read, object)}

    def __getattr__(self, name):  # label, discovery, waits: the client's own
        return getattr(self.client, name)

    def informer(self, resource, namespace=None, field_selector=None, on_change=None):
        """The informer of this listing, made once; Watches runs it."""
        key = (resource.api_version, resource.plural, namespace, field_selector)
        if key not in self.informers:
            self.informers[key] = Informer(self.client, resource, namespace, field_selector, on_change)
        return self.informers[key]

    def retain(self, kept):
        """Forget the informers not in `kept` (Watches stopped them)."""
        kept = set(id(informer) for informer in kept)
        for key in [key for key, informer in self.informers.items() if id(informer) not in kept]:
            del self.informers[key]

    def _synced(self, resource, namespace, field_selector):
        informer = self.informers.get((resource.api_version, resource.plural, namespace, field_selector))
        return informer if informer is not None and informer.synced.is_set() else None

    def _covering(self, resource, namespace, name=None):
        """A synced informer that holds the object `name` of `resource` in `namespace`, as far as it exists."""
        selectors = (None, "metadata.name=%s" % name) if name else (None,)
        for where in (namespace, None) if namespace else (None,):
            for selector in selectors:
                informer = self._synced(resource, where, selector)
                if informer is not None:
                    return informer
        return None

    def get(self, resource, name, namespace=None):
        informer = self._covering(resource, namespace, name)
        if informer is not None:
            return informer.get(name, namespace)
        if resource.plural not in self.remembered:
            return self.client.get(resource, name, namespace)
        key = (resource.plural, namespace, name)
        read_at, found = self.memo.get(key, (None, None))
        if read_at is None or time.monotonic() - read_at > self.remembered[resource.plural]:
            read_at, found = time.monotonic(), self.client.get(resource, name, namespace)
            self.memo[key] = (read_at, found)
        return found

    def list(self, resource, namespace=None, label_selector=None, field_selector=None):
        informer = self._synced(resource, namespace, field_selector) or \
            (self._synced(resource, None, field_selector) if namespace else None)
        if label_selector is None and informer is not None:
            return informer.items(namespace), None
        return self.client.list(resource, namespace, label_selector=label_selector, field_selector=field_selector)

    def _keep(self, resource, obj, deleted=False):
        metadata = (obj or {}).get("metadata") or {}
        informer = self._covering(resource, metadata.get("namespace"), metadata.get("name"))
        if informer is not None and metadata.get("name"):
            informer.written(obj, deleted)

    def _before(self, resource, name, namespace, before):
        """`before` as the caller gave it, else from an informer that covers the object."""
        informer = self._covering(resource, namespace, name) if before is UNREAD else None
        return before if informer is None else informer.get(name, namespace)

    def apply(self, resource, body, force=False, before=UNREAD, subresource=None, **options):
        metadata = body.get("metadata") or {}
        before = self._before(resource, metadata.get("name"), metadata.get("namespace"), before)
        if before not in (None, UNREAD) and holds(before, {"status": body.get("status")} if subresource == "status"
                                                  else body):
            return Change(before, before, False)
        change = self.client.apply(resource, body, force=force, before=before, subresource=subresource, **options)
        if change.changed and not self.client.dry_run:
            self._keep(resource, change.after)
        return change

    def write(self, method, resource, body, subresource=None):
        written = self.client.write(method, resource, body, subresource)
        if not self.client.dry_run:
            self._keep(resource, written)
        return written

    def delete(self, resource, name, namespace=None, propagation="Background", before=UNREAD):
        change = self.client.delete(resource, name, namespace, propagation=propagation,
                                    before=self._before(resource, name, namespace, before))
        if change.changed and not self.client.dry_run:
            self._keep(resource, change.before, deleted=True)
        return change


class Watches:
    """A thread per Informer that keeps it and sets `changed` when anything it watches changes; kept in step
    with what the side's last pass asked for."""

    def __init__(self, changed, stopping):
        self.changed, self.stopping = changed, stopping
        self.running = {}

    def keep(self, wanted):
        """Run exactly the watches in `wanted`: {key: Informer}."""
        for key in list(self.running):
            if key not in wanted:
                stop, informer = self.running.pop(key)
                stop.set()
                informer.synced.clear()  # no longer kept: a new watch lists again before it is read
        for key, watched in wanted.items():
            if key not in self.running:
                stop = threading.Event()
                self.running[key] = (stop, watched)
                threading.Thread(target=self._watch, args=(watched, stop), daemon=True).start()

    def _watch(self, informer, stop):
        """List once, then watch on from the last version seen; list again only when that version is gone.

        The informer holds what each list and event shows. After a failure it no longer counts as synced, so
        reads go to the server (which says what is wrong: refused credentials, say) until the thread, backing
        off, has listed again. Nothing but `stop` ends the thread.
        """
        client, resource, namespace, selector = informer.client, informer.resource, informer.namespace, \
            informer.field_selector
        attempt, version = 0, None
        while not stop.is_set() and not self.stopping.is_set():
            try:
                if version is None:
                    items, version = client.list(resource, namespace, field_selector=selector)
                    informer.replace(items)
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
                        informer.update(kind, obj)
                        self.changed.set()
                attempt = 0
            except Exception as error:  # pylint: disable=broad-exception-caught
                log("warning", "watch failed; retrying", resource=resource.plural, namespace=namespace,
                    error=str(error) if isinstance(error, ClusterError) else error.__class__.__name__)
                informer.synced.clear()
                self.changed.set()
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
                    resync = time.monotonic() >= due
                    self.changed.clear()
                    wanted, written, failed = self.role.sync(self.client, self.options, self.leadership.leading,
                                                             resync)
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
