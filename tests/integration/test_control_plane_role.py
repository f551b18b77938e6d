"""The klutch.bind.control_plane role on a fresh cluster: check mode, first run, second run."""

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CLUSTER_ROLES,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import EXPORT_TEMPLATES
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER
from playbook_runner import recap

KLUTCH_CRDS = ["apiserviceexporttemplates.example-backend.klutch.anynines.com",
               "apiserviceexportrequests.klutch.anynines.com", "apiserviceexports.klutch.anynines.com",
               "apiservicebindings.klutch.anynines.com", "apiservicenamespaces.klutch.anynines.com",
               "clusterbindings.klutch.anynines.com"]
SERVICE_CRD = {
    "metadata": {"name": "postgresqlinstances.anynines.com"},
    "spec": {"group": "anynines.com", "scope": "Namespaced",
             "names": {"kind": "PostgresqlInstance", "plural": "postgresqlinstances",
                       "singular": "postgresqlinstance", "listKind": "PostgresqlInstanceList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
}


@pytest.fixture(scope="module")
def fresh(lab):
    """A cluster of its own, with only a data-service CRD on it; removed after these tests."""
    lab.up(list(lab.state["clusters"]) + ["fresh-cp"])
    cluster = lab.cluster("fresh-cp")
    client = ClusterClient.from_params({"kubeconfig": str(cluster.admin_kubeconfig)}, environ={})
    client.apply(CUSTOM_RESOURCE_DEFINITIONS, SERVICE_CRD)
    yield cluster, client
    lab.down(["fresh-cp"])


TEMPLATES = [{"name": "postgresqlinstances", "group": "anynines.com", "resource": "postgresqlinstances", "version": "v1",
              "permission_claims": [{"resource": "secrets", "owner": "Provider"},
                                    {"resource": "configmaps", "owner": "Provider"}]}]


def listing(client):
    """What a run could have written, for before/after comparisons."""
    return (sorted(crd["metadata"]["name"] for crd in client.list(CUSTOM_RESOURCE_DEFINITIONS)[0]),
            sorted(role["metadata"]["name"] for role in client.list(CLUSTER_ROLES)[0]),
            sorted(ns["metadata"]["name"] for ns in client.list(NAMESPACES)[0]))


def test_check_mode_on_a_fresh_cluster_writes_nothing(run_playbook, control_plane_play, fresh, audit):
    cluster, client = fresh
    before = listing(client)
    start = now()
    run = run_playbook(control_plane_play(cluster, control_plane_templates=TEMPLATES), check=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert recap(run)["changed"] == 5
    assert "The template was not validated by the API server" in run.stdout + run.stderr
    assert listing(client) == before
    assert audit(cluster).count_writes(since=start, user=ADMIN_USER) == 0


def test_first_run_installs_and_publishes_then_second_run_changes_nothing(run_playbook, control_plane_play, fresh, audit):
    cluster, client = fresh
    first = run_playbook(control_plane_play(cluster, control_plane_templates=TEMPLATES))
    assert first.returncode == 0, first.stdout + first.stderr
    assert recap(first)["changed"] == 5
    served = {crd["metadata"]["name"] for crd in client.list(CUSTOM_RESOURCE_DEFINITIONS)[0]}
    assert set(KLUTCH_CRDS) <= served
    assert client.get(CLUSTER_ROLES, "klutch-binder")["rules"][0]["resources"] == ["apiserviceexportrequests"]
    template = client.get(EXPORT_TEMPLATES, "postgresqlinstances", "crossplane-system")
    assert template["spec"]["APIServiceSelector"]["resource"] == "postgresqlinstances"

    start = now()
    second = run_playbook(control_plane_play(cluster, control_plane_templates=TEMPLATES))
    assert second.returncode == 0
    assert recap(second)["changed"] == 0
    assert audit(cluster).count_writes(since=start, user=ADMIN_USER) == 0
