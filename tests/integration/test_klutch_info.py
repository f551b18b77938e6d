"""klutch_info on the lab: a bound app cluster and its control plane as they are, then as they drift,
read without a single write."""

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import NAMESPACES
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_NAMESPACES, CLUSTER_BINDINGS
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER
from sync_world import MANGODBS, instance

NAME = "mangodbs.mangodb.com"


@pytest.fixture(scope="module")
def world(bound_world):
    with bound_world("module", "app-info") as bound:
        yield bound


def info(world, control_plane, cluster, run_task, audit, check=False):
    """klutch_info's result on `cluster`, asserting that it wrote nothing on either side."""
    start = now()
    result, output = run_task("klutch.bind.klutch_info", {"kubeconfig": str(cluster.admin_kubeconfig)}, check=check)
    assert not result.get("failed") and result["changed"] is False, output
    for side in (world.cluster, control_plane):
        assert audit(side).count_writes(since=start, user=ADMIN_USER) == 0
    return result


def test_an_app_cluster_in_step_then_drifting_then_in_step_again(world, control_plane, run_task, audit):
    world.app.apply(NAMESPACES, {"metadata": {"name": "shop"}})
    world.app.write("POST", MANGODBS, instance("orders", namespace="shop"))
    world.converge("orders upstream", lambda: world.cp.get(MANGODBS, "orders", world.mapped("shop")) is not None)

    report = info(world, control_plane, world.cluster, run_task, audit)
    assert report["side"] == "app_cluster" and report["cluster_id"]
    [binding] = report["bindings"]
    assert binding["name"] == NAME and binding["conditions"]["Ready"] == "True"
    assert binding["crd"]["present"] and binding["crd"]["in_step_with_export"] and binding["crd"]["export_hash"]
    assert binding["instances"] == 1 and binding["drifting"] is False
    assert report["problems"] == [] and report["orphaned_instances"] == []

    # Two new instances and a changed one, not synced yet: the report says what the next pass would write.
    world.app.write("POST", MANGODBS, instance("invoices", namespace="shop"))
    world.app.write("POST", MANGODBS, instance("refunds", namespace="shop"))
    world.app.write("PATCH", MANGODBS, {"metadata": {"name": "orders", "namespace": "shop"},
                                        "spec": {"tier": "Shared"}})
    drifting = info(world, control_plane, world.cluster, run_task, audit, check=True)
    [binding] = drifting["bindings"]
    assert binding["drifting"] is True and binding["pending"]["up"] == {"instances": 3}, binding
    [problem] = drifting["problems"]
    assert problem.startswith(f"binding {NAME}: its next sync pass would write ") and "up 3 instances" in problem

    world.converge("all three upstream", lambda: len(world.cp.list(MANGODBS, world.mapped("shop"))[0]) == 3)
    assert info(world, control_plane, world.cluster, run_task, audit)["problems"] == []


def test_the_control_plane_reports_each_consumer_with_its_exports_namespaces_and_health(
        world, control_plane, run_task, audit):
    report = info(world, control_plane, control_plane, run_task, audit)
    assert report["side"] == "control_plane"
    assert any(template["exports"] == NAME for template in report["templates"])
    [consumer] = [item for item in report["consumers"] if item["namespace"] == world.namespace]
    assert consumer["exports"][0]["name"] == NAME and consumer["exports"][0]["hash"]
    # A backend agent still running on the control plane deletes a finished request ten minutes after its
    # creation, as Klutch's backend does; the export stays.
    assert consumer["requests"] in ({NAME: "Succeeded"}, {})
    # Health follows the konnector's heartbeat; without one (the module driver runs no agent) it is a problem.
    assert consumer["healthy"] is (consumer["last_heartbeat"] is not None)
    assert consumer["healthy"] or any("konnector is not healthy" in problem for problem in consumer["problems"])

    # A namespace the consumer asked for that nobody mapped yet (the backend's work) is named.
    world.cp.write("POST", API_SERVICE_NAMESPACES, {
        "apiVersion": API_SERVICE_NAMESPACES.api_version, "kind": API_SERVICE_NAMESPACES.kind,
        "metadata": {"name": "unmapped-one", "namespace": world.namespace}, "spec": {}})
    [consumer] = [item for item in info(world, control_plane, control_plane, run_task, audit)["consumers"]
                  if item["namespace"] == world.namespace]
    assert consumer["unmapped_namespaces"] == ["unmapped-one"]
    assert "APIServiceNamespace unmapped-one is not mapped yet" in consumer["problems"]
    assert world.cp.get(CLUSTER_BINDINGS, "cluster", world.namespace) is not None
