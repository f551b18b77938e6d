# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend's side of the agent, on the control plane: every consumer served with lifecycle/serve.py, as
klutch_export_request serves one, each on its own, from caches that watches keep.

A change wakes only the consumer it belongs to (its namespace, a namespace mapped for it, its RBAC); a
CRD or template change wakes every consumer, and so does each resync. Serving reads the caches and
compares what it would write with what they hold, so a consumer that is in step costs no request."""

import datetime
import threading

from ansible_collections.klutch.bind.plugins.module_utils.agent.runtime import CachedClient, log
from ansible_collections.klutch.bind.plugins.module_utils.k8s.apply import LeadershipLost, Recorder
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CLUSTER_ROLES,
    CLUSTER_ROLE_BINDINGS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    ROLE_BINDINGS,
    SECRETS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import (
    API_SERVICE_EXPORTS,
    API_SERVICE_EXPORT_REQUESTS,
    API_SERVICE_NAMESPACES,
    CLUSTER_BINDINGS,
    EXPORT_TEMPLATES,
)
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import serve
from ansible_collections.klutch.bind.plugins.module_utils.plan import consumers

# Kinds kept whole, cluster-wide: what serving a consumer reads, and the RBAC it compares with.
KEPT = (NAMESPACES, API_SERVICE_EXPORTS, API_SERVICE_EXPORT_REQUESTS, API_SERVICE_NAMESPACES, CLUSTER_BINDINGS,
        CUSTOM_RESOURCE_DEFINITIONS, EXPORT_TEMPLATES, CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS, ROLE_BINDINGS)
# Of the Secrets only a consumer's own: its kubeconfig Secret and its token Secrets.
SECRET_SELECTORS = ("metadata.name=%s" % consumers.KUBECONFIG_SECRET, serve.TOKEN_SECRETS)
# A change of these concerns every consumer that exports from them.
SHARED = (CUSTOM_RESOURCE_DEFINITIONS, EXPORT_TEMPLATES)


def consumer_of(namespace):
    """The consumer namespace that the Namespace `namespace` is, or is mapped for; None for any other."""
    metadata = (namespace or {}).get("metadata") or {}
    annotations = metadata.get("annotations") or {}
    if annotations.get(consumers.IDENTITY_ANNOTATION):
        return metadata.get("name")
    return (annotations.get(consumers.API_SERVICE_NAMESPACE_ANNOTATION) or "").partition("/")[0] or None


def owning_namespaces(obj):
    """The namespaces that own `obj`: a consumer's ClusterRoles and ClusterRoleBindings are its namespace's."""
    return [ref.get("name") for ref in (obj.get("metadata") or {}).get("ownerReferences") or []
            if ref.get("kind") == "Namespace"]


class Backend:
    """On the control plane: Klutch's backend controllers, one consumer at a time, from caches."""

    def __init__(self):
        self.control_plane = None  # the CachedClient of the control plane, made on the first pass
        self.watched = {}
        self.lock = threading.Lock()
        self.waiting = set()  # consumer namespaces a change touched since they were last served
        self.everyone = True  # serve every consumer next: at the start, after a CRD or template changed
        self.failing = {}  # {consumer namespace: why it could not be served}, until it is

    def cache(self, client):
        """The control plane read through informers of every kind serving reads; {key: Informer} to watch."""
        self.control_plane = CachedClient(client)
        self.watched = dict((("control-plane", resource.plural), self.control_plane.informer(
            resource, on_change=self.touched(resource))) for resource in KEPT)
        self.watched.update((("control-plane", "secrets", selector), self.control_plane.informer(
            SECRETS, field_selector=selector, on_change=self.touched(SECRETS))) for selector in SECRET_SELECTORS)

    def touched(self, resource):
        """The informer callback for `resource`: queue the consumer a changed object belongs to."""
        def queue(obj):
            with self.lock:
                if resource in SHARED:
                    self.everyone = True
                elif resource is NAMESPACES:
                    self.waiting.add(consumer_of(obj))
                elif not resource.namespaced:
                    self.waiting.update(owning_namespaces(obj))
                else:
                    namespace = (obj.get("metadata") or {}).get("namespace")
                    self.waiting.add(consumer_of(self.control_plane.get(NAMESPACES, namespace) if namespace else None))
        return queue

    def due(self, resync):
        """The consumers to serve in this pass: those that changes touched, or all of them."""
        with self.lock:
            everyone, self.everyone = self.everyone or resync, False
            waiting, self.waiting = self.waiting, set()
        known = dict((consumer.namespace, consumer) for consumer in serve.Consumer.all(self.control_plane))
        for gone in set(self.failing) - set(known):  # its namespace went, and with it what failed
            del self.failing[gone]
        return list(known.values()) if everyone else [known[name] for name in sorted(waiting - {None}) if name in known]

    def sync(self, client, options, proceed, resync=False):
        """Serve the consumers that changes touched (all of them on a resync); each is read from the caches and
        served on its own, so whatever one consumer wrote (an odd heartbeat, a namespace the server refuses)
        holds up no other. Every write asks `proceed()` first: once this replica no longer leads, the pass ends."""
        if self.control_plane is None:
            self.cache(client)
        if not all(informer.synced.is_set() for informer in self.watched.values()):
            with self.lock:  # a half-filled cache would plan deletions: wait for every list, not ready meanwhile
                self.everyone = True
            return self.watched, 0, max(1, len(self.failing))
        catalog = serve.Catalog(self.control_plane)
        moment = datetime.datetime.now(datetime.timezone.utc)
        written = 0
        for consumer in self.due(resync):
            written += self.serve(consumer, catalog, options, proceed, moment)
            if not proceed():
                break
        return self.watched, written, len(self.failing)

    def serve(self, consumer, catalog, options, proceed, moment):
        """Serve one consumer; the number of objects written."""
        recorder = Recorder(self.control_plane, check_mode=False, proceed=proceed)
        try:
            serve.reconcile(recorder, consumer.read(self.control_plane), catalog, options.consumer_scope, moment)
            self.failing.pop(consumer.namespace, None)
        except LeadershipLost:
            log("warning", "no longer leading; pass stopped", namespace=consumer.namespace)
        except Exception as error:  # pylint: disable=broad-exception-caught
            self.failing[consumer.namespace] = error
            log("error", "consumer cannot be reconciled", namespace=consumer.namespace,
                error=str(error) if isinstance(error, ClusterError) else error.__class__.__name__)
        changes = [entry for entry in recorder.results if entry["action"] != "unchanged"]
        if changes:
            log("info", "reconciled", namespace=consumer.namespace,
                writes=["%s %s %s" % (entry["action"], entry["kind"], entry["name"]) for entry in changes])
        return len(changes)
