"""The backend agent's pass against a fake control plane: each consumer on its own, and no write once
this replica no longer leads."""

import argparse
import datetime

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.agent.backend import Backend
from ansible_collections.klutch.bind.plugins.module_utils.k8s.apply import LeadershipLost, Recorder
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

    def __init__(self, heartbeats, unreadable=(), service_namespaces=(), requests=()):
        self.heartbeats, self.unreadable, self.service_namespaces = heartbeats, unreadable, service_namespaces
        self.requests = requests  # (name, phase, creation time) in every consumer namespace
        self.writes, self.bodies = [], []

    def list(self, resource, namespace=None, **_options):
        if namespace in self.unreadable:
            raise RuntimeError("the listing of %s cannot be read" % namespace)
        if resource is NAMESPACES:
            return [{"metadata": {"name": name, "uid": "uid-" + name,
                                  "annotations": {consumers.IDENTITY_ANNOTATION: "%s#X1" % name}}}
                    for name in sorted(self.heartbeats)], "1"
        if resource is API_SERVICE_NAMESPACES:
            return [{"metadata": {"name": name, "namespace": namespace}} for name in self.service_namespaces], "1"
        if resource is API_SERVICE_EXPORT_REQUESTS:
            return [{"metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
                     "spec": {"resources": []}, "status": {"phase": phase}}
                    for name, phase, created in self.requests], "1"
        return [], "1"

    def get(self, resource, name, namespace=None):
        if resource is CLUSTER_BINDINGS and namespace in self.heartbeats:
            return {"metadata": {"name": name, "namespace": namespace},
                    "status": {"lastHeartbeatTime": self.heartbeats[namespace], "heartbeatInterval": "5m0s"}}
        return None

    def apply(self, resource, body, **_options):
        self.bodies.append(dict(body, kind=resource.kind))
        self.writes.append(("apply", resource.kind, body["metadata"].get("namespace"), body["metadata"]["name"]))
        return Change(None, dict(body, metadata=dict(body["metadata"], uid="uid-new")), True)

    def delete(self, resource, name, namespace=None, **_options):
        self.writes.append(("delete", resource.kind, namespace, name))
        return Change({"metadata": {"name": name}}, None, True)


def healthy(client, namespace):
    """(status, reason) of the Healthy condition the pass wrote on the consumer's ClusterBinding."""
    written = [body for body in client.bodies if body["kind"] == "ClusterBinding"
               and body["metadata"]["namespace"] == namespace]
    condition = next(item for item in written[-1]["status"]["conditions"] if item["type"] == "Healthy")
    return condition["status"], condition.get("reason")


def test_one_consumers_odd_heartbeat_or_unreadable_objects_stop_only_that_consumer():
    client = FakeControlPlane({"cluster-aaaaa": "2030-01-01T00:00:00.5Z", "cluster-bbbbb": "not a time",
                               "cluster-ccccc": now(), "cluster-ddddd": now()}, unreadable=("cluster-ccccc",))
    _wanted, written, failed = Backend.sync(client, OPTIONS, lambda: True)
    assert failed == 1, "cluster-ccccc cannot be read"
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
    Backend.sync(client, OPTIONS, lambda: True)
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
    Backend.sync(client, OPTIONS, lambda: True)
    deleted = [name for verb, kind, _namespace, name in client.writes
               if verb == "delete" and kind == "APIServiceExportRequest"]
    assert deleted == ["old-failed", "old-succeeded"]


def test_a_replica_that_no_longer_leads_writes_nothing():
    client = FakeControlPlane({"cluster-aaaaa": now(), "cluster-bbbbb": now()})
    leading = iter([True, True, False])
    _wanted, written, _failed = Backend.sync(client, OPTIONS, lambda: next(leading, False))
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
