"""klutch_info's reading of a consumer as the control plane holds it, and its summary of a pending pass."""

import datetime

from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import report
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle.serve import Consumer
from ansible_collections.klutch.bind.plugins.module_utils.plan import consumers

MOMENT = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.timezone.utc)
NAME = "postgresqlinstances.samples.klutch.bind"


def consumer(heartbeat=None, phase="Succeeded", mapped=True, cluster_binding=True):
    held = Consumer("cluster-ab12c", {"cluster-ab12c": {"metadata": {
        "name": "cluster-ab12c", "uid": "u", "annotations": {consumers.IDENTITY_ANNOTATION: "app-eu-1#X1y2Z3"}}}})
    held.exports = {NAME: {"metadata": {"name": NAME, "annotations": {consumers.SPEC_HASH_ANNOTATION: "h1"}}}}
    held.requests = {NAME: {"metadata": {"name": NAME}, "status": {"phase": phase} if phase else {}}}
    held.service_namespaces = [{"metadata": {"name": "shop"}, "status": {"namespace": "cluster-ab12c-shop"} if mapped else {}}]
    status = {"lastHeartbeatTime": heartbeat, "heartbeatInterval": "5m0s"} if heartbeat else {}
    held.cluster_binding = {"metadata": {"name": "cluster"}, "status": status} if cluster_binding else None
    held.secrets = {consumers.BINDER: dict(consumers.token_secret(consumers.BINDER, "cluster-ab12c"))}
    held.secrets[consumers.BINDER]["metadata"]["creationTimestamp"] = "2026-11-01T00:00:00Z"
    return held


def test_a_healthy_consumer_has_no_problems():
    found = report.consumer_report(consumer(heartbeat="2026-12-07T11:58:00Z"), MOMENT)
    assert found == {"consumer": "app-eu-1", "cluster_id": "X1y2Z3", "namespace": "cluster-ab12c",
                     "exports": [{"name": NAME, "hash": "h1"}], "requests": {NAME: "Succeeded"},
                     "mapped_namespaces": ["cluster-ab12c-shop"], "unmapped_namespaces": [],
                     "last_heartbeat": "2026-12-07T11:58:00Z", "healthy": True,
                     "credentials": {"token_secret": consumers.BINDER, "issued": "2026-11-01T00:00:00Z", "retiring": [],
                                     "revoked_at": None},
                     "problems": []}


def test_each_thing_to_act_on_is_one_problem():
    found = report.consumer_report(consumer(heartbeat="2026-12-07T11:00:00Z", phase=None, mapped=False), MOMENT)
    assert found["healthy"] is False and found["unmapped_namespaces"] == ["shop"]
    assert found["problems"][:2] == [f"request {NAME} is not served yet", "APIServiceNamespace shop is not mapped yet"]
    assert found["problems"][2].startswith("its konnector is not healthy (")
    assert report.consumer_report(consumer(cluster_binding=False), MOMENT)["problems"] == [
        "it has no ClusterBinding cluster in cluster-ab12c"]


def test_a_pending_pass_is_summed_up_by_direction_and_kind():
    assert report.pending_summary({"up": {"instances": 3}, "down": {"secrets": 1, "instances": 2}}) == \
        "down 2 instances, 1 secrets, up 3 instances"
    assert report.pending_summary({"up": {}, "down": {"secrets": 1}}) == "down 1 secrets"


def test_a_rotation_in_grace_and_a_revocation_are_reported():
    rotated = consumer(heartbeat="2026-12-07T11:58:00Z")
    rotated.secrets[consumers.BINDER] = consumers.token_secret(consumers.BINDER, "cluster-ab12c", "2026-12-07T12:05:00Z")
    rotated.secrets["klutch-binder-n3w00"] = dict(consumers.token_secret("klutch-binder-n3w00", "cluster-ab12c"))
    rotated.secrets["klutch-binder-n3w00"]["metadata"]["creationTimestamp"] = "2026-12-07T12:00:00Z"
    rotated.secrets[consumers.KUBECONFIG_SECRET] = {"metadata": {"name": consumers.KUBECONFIG_SECRET, "annotations": {
        consumers.TOKEN_SECRET_ANNOTATION: "klutch-binder-n3w00"}}, "type": "Opaque"}
    found = report.consumer_report(rotated, MOMENT)
    assert found["credentials"] == {"token_secret": "klutch-binder-n3w00", "issued": "2026-12-07T12:00:00Z",
                                    "retiring": [{"name": consumers.BINDER, "at": "2026-12-07T12:05:00Z"}],
                                    "revoked_at": None}
    assert found["problems"] == []

    revoked = consumer(heartbeat="2026-12-07T11:58:00Z")
    revoked.namespaces["cluster-ab12c"]["metadata"]["annotations"][consumers.REVOKED_ANNOTATION] = "2026-12-07T11:59:00Z"
    revoked.secrets = {}
    found = report.consumer_report(revoked, MOMENT)
    assert found["credentials"] == {"token_secret": None, "issued": None, "retiring": [],
                                    "revoked_at": "2026-12-07T11:59:00Z"}
    assert found["problems"] == ["its credentials were revoked at 2026-12-07T11:59:00Z"]
