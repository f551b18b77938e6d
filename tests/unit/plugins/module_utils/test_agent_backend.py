"""The backend agent's pass against a fake control plane, read through the agent's caches: each consumer on its
own, writes only where the caches differ, and no write once this replica no longer leads."""

import argparse
import datetime

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.agent.backend import Backend
from ansible_collections.klutch.bind.plugins.module_utils.agent.runtime import CachedClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.apply import LeadershipLost, Recorder
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import Change
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import NAMESPACES
from ansible_collections.klutch.bind.plugins.module_utils.kinds import (
    API_SERVICE_EXPORT_REQUESTS,
    API_SERVICE_NAMESPACES,
    CLUSTER_BINDINGS,
)
from ansible_collections.klutch.bind.plugins.module_utils.plan import consumers

OPTIONS = argparse.Namespace(consumer_scope="Namespaced")


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeControlPlane:
    """Consumer namespaces with a ClusterBinding each and nothing else; records every write."""

    label = "the fake control plane"
    dry_run = False

    def __init__(self, heartbeats, refusing=(), service_namespaces=(), requests=()):
        self.heartbeats, self.refusing, self.service_namespaces = heartbeats, refusing, service_namespaces
        self.requests = requests  # (name, phase, creation time) in every consumer namespace
        self.writes, self.bodies = [], []

    def list(self, resource, namespace=None, **_options):
        listed = []
        for consumer in sorted(self.heartbeats):
            if resource is NAMESPACES:
                listed.append({"metadata": {"name": consumer, "uid": "uid-" + consumer,
                                            "annotations": {consumers.IDENTITY_ANNOTATION: "%s#X1" % consumer}}})
            elif resource is CLUSTER_BINDINGS:
                listed.append({"metadata": {"name": "cluster", "namespace": consumer}, "status": {
                    "lastHeartbeatTime": self.heartbeats[consumer], "heartbeatInterval": "5m0s"}})
            elif resource is API_SERVICE_NAMESPACES:
                listed.extend({"metadata": {"name": name, "namespace": consumer}} for name in self.service_namespaces)
            elif resource is API_SERVICE_EXPORT_REQUESTS:
                listed.extend({"metadata": {"name": name, "namespace": consumer, "creationTimestamp": created},
                               "spec": {"resources": []}, "status": {"phase": phase}}
                              for name, phase, created in self.requests)
        return [obj for obj in listed if namespace is None or obj["metadata"].get("namespace") == namespace], "1"

    def get(self, resource, name, namespace=None):
        return next((obj for obj in self.list(resource, namespace)[0] if obj["metadata"]["name"] == name), None)

    def apply(self, resource, body, **_options):
        if body["metadata"].get("namespace") in self.refusing:
            raise ClusterError("%s refuses writes in %s" % (self.label, body["metadata"]["namespace"]))
        self.bodies.append(dict(body, kind=resource.kind))
        self.writes.append(("apply", resource.kind, body["metadata"].get("namespace"), body["metadata"]["name"]))
        return Change(None, dict(body, metadata=dict(body["metadata"], uid="uid-new")), True)

    def delete(self, resource, name, namespace=None, **_options):
        self.writes.append(("delete", resource.kind, namespace, name))
        return Change({"metadata": {"name": name}}, None, True)


def cached(client):
    """A backend whose caches the watches filled from `client`."""
    backend = Backend()
    backend.cache(client)
    for informer in backend.watched.values():
        informer.replace(client.list(informer.resource, field_selector=informer.field_selector)[0])
    return backend


def served(client, proceed=lambda: True):
    """One backend pass over `client`, read through its caches: (wanted, written, failed)."""
    return cached(client).sync(client, OPTIONS, proceed)


def healthy(client, namespace):
    """(status, reason) of the Healthy condition the pass wrote on the consumer's ClusterBinding."""
    written = [body for body in client.bodies if body["kind"] == "ClusterBinding"
               and body["metadata"]["namespace"] == namespace]
    condition = next(item for item in written[-1]["status"]["conditions"] if item["type"] == "Healthy")
    return condition["status"], condition.get("reason")


def test_one_consumers_odd_heartbeat_or_unreadable_objects_stop_only_that_consumer():
    client = FakeControlPlane({"cluster-aaaaa": "2030-01-01T00:00:00.5Z", "cluster-bbbbb": "not a time",
                               "cluster-ccccc": now(), "cluster-ddddd": now()}, refusing=("cluster-ccccc",))
    _wanted, written, failed = served(client)
    assert failed == 1, "cluster-ccccc refuses writes"
    reconciled = set(namespace for _verb, _kind, namespace, _name in client.writes)
    assert {"cluster-aaaaa", "cluster-bbbbb", "cluster-ddddd"} <= reconciled
    assert "cluster-ccccc" not in reconciled
    statuses = [write for write in client.writes if write[1] == "ClusterBinding"]
    assert [write[2] for write in statuses] == ["cluster-aaaaa", "cluster-bbbbb", "cluster-ddddd"]
    assert healthy(client, "cluster-aaaaa") == ("False", "HeartbeatTimeDrift")
    assert healthy(client, "cluster-bbbbb") == ("False", "HeartbeatTimeInvalid")
    assert healthy(client, "cluster-ddddd") == ("True", None)
    assert written == len(client.writes)


def test_a_mapped_namespace_is_announced_only_once_the_consumer_may_write_in_it():
    # The konnector starts writing into a namespace as soon as the status names it.
    client = FakeControlPlane({"cluster-aaaaa": now()}, service_namespaces=["shop"])
    served(client)
    order = [(kind, namespace, name) for _verb, kind, namespace, name in client.writes]
    announced = order.index(("APIServiceNamespace", "cluster-aaaaa", "shop"))
    assert order.index(("Namespace", None, "cluster-aaaaa-shop")) < announced
    assert order.index(("RoleBinding", "cluster-aaaaa-shop", consumers.BINDER)) < announced


def test_finished_requests_go_ten_minutes_after_their_creation_as_klutchs_backend_deletes_them():
    moment = datetime.datetime.now(datetime.timezone.utc)

    def ago(minutes):
        return (moment - datetime.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ")

    client = FakeControlPlane({"cluster-aaaaa": now()}, requests=[
        ("old-succeeded", "Succeeded", ago(11)), ("old-failed", "Failed", ago(30)),
        ("young-succeeded", "Succeeded", ago(9)), ("old-pending", "Pending", ago(60))])
    served(client)
    deleted = [name for verb, kind, _namespace, name in client.writes
               if verb == "delete" and kind == "APIServiceExportRequest"]
    assert deleted == ["old-failed", "old-succeeded"]


def test_a_replica_that_no_longer_leads_writes_nothing():
    client = FakeControlPlane({"cluster-aaaaa": now(), "cluster-bbbbb": now()})
    leading = iter([True, True, False])
    _wanted, written, _failed = served(client, lambda: next(leading, False))
    assert len(client.writes) == written == 2, "the third write found the lease lost, and the pass stopped"

    recorder = Recorder(client, check_mode=False, proceed=lambda: False)
    with pytest.raises(LeadershipLost):
        recorder.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    with pytest.raises(LeadershipLost):
        recorder.delete(NAMESPACES, "x")
    assert len(client.writes) == 2


def test_a_module_recorder_asks_no_one():
    client = FakeControlPlane({})
    Recorder(client, check_mode=False).apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
    assert client.writes == [("apply", "Namespace", None, "x")]


def test_an_object_the_cache_holds_costs_no_request_and_one_that_differs_is_applied():
    client = FakeControlPlane({})
    cache = CachedClient(client)
    cache.informer(NAMESPACES).replace([{"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "x", "uid": "u", "resourceVersion": "7", "annotations": {"a": "1", "b": "2"}}}])
    recorder = Recorder(cache, check_mode=False)
    recorder.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "annotations": {"a": "1"}}})
    assert client.writes == [] and recorder.results[0]["action"] == "unchanged"
    recorder.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x", "annotations": {"a": "2"}}})
    assert client.writes == [("apply", "Namespace", None, "x")]


def test_a_change_wakes_only_the_consumer_it_belongs_to_and_a_crd_change_wakes_everyone():
    backend = cached(FakeControlPlane({"cluster-aaaaa": now(), "cluster-bbbbb": now()}))
    assert [consumer.namespace for consumer in backend.due(resync=False)] == ["cluster-aaaaa", "cluster-bbbbb"]
    assert backend.due(resync=False) == [], "nothing changed since"
    mapped = {"metadata": {"name": "cluster-bbbbb-shop", "annotations": {
        consumers.API_SERVICE_NAMESPACE_ANNOTATION: "cluster-bbbbb/shop"}}}
    backend.watched[("control-plane", "namespaces")].update("ADDED", mapped)
    backend.watched[("control-plane", "rolebindings")].update("MODIFIED", {"metadata": {
        "name": "b", "namespace": "cluster-bbbbb-shop"}})
    backend.watched[("control-plane", "rolebindings")].update("MODIFIED", {"metadata": {
        "name": "other", "namespace": "kube-system"}})
    assert [consumer.namespace for consumer in backend.due(resync=False)] == ["cluster-bbbbb"]
    backend.watched[("control-plane", "customresourcedefinitions")].update("MODIFIED", {"metadata": {"name": "x.example.org"}})
    assert len(backend.due(resync=False)) == 2
    assert len(backend.due(resync=True)) == 2, "a resync serves everyone"
