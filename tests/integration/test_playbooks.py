"""The collection's playbooks, run with ansible-playbook the way users run them, against the lab."""

import yaml

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import condition_holds
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    Resource,
    SECRETS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_BINDINGS
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER
from playbook_runner import ROOT, ansible_playbook, recaps

LAB_VARS = ROOT / "playbooks" / "vars" / "lab.yml"
INSTANCES = Resource("samples.klutch.bind/v1", "PostgresqlInstance", "postgresqlinstances")


def inventory_for(lab, tmp_path, app_names):
    """The lab's inventory with only the control plane and the named app clusters."""
    data = yaml.safe_load(lab.inventory.read_text())
    hosts = data["all"]["children"]["app_clusters"]["hosts"]
    data["all"]["children"]["app_clusters"]["hosts"] = {name: hosts[name] for name in app_names}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_bind_app_cluster_binds_syncs_and_runs_again_without_changes(lab, control_plane, sample_dataservices,
                                                                     audit, run_task, tmp_path):
    lab.up(list(lab.state["clusters"]) + ["app-playbook"])
    cluster = lab.cluster("app-playbook")
    inventory = inventory_for(lab, tmp_path, ["app-playbook"])
    agents = tmp_path / "agents"
    options = ["-i", str(inventory), "-e", f"@{LAB_VARS}", "-e", f"konnector_run_dir={agents}",
               "-e", f"control_plane_backend_run_dir={agents}"]
    app = ClusterClient.from_params({"kubeconfig": str(cluster.admin_kubeconfig)}, environ={})
    cp = ClusterClient.from_params({"kubeconfig": str(control_plane.admin_kubeconfig)}, environ={})
    try:
        start = now()
        checked = ansible_playbook("playbooks/bind_app_cluster.yml", "--check", *options)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert audit(cluster).count_writes(since=start, user=ADMIN_USER) == 0, "check mode wrote to the app cluster"
        assert "not yet (check mode on a new app cluster)" in checked.stdout

        first = ansible_playbook("playbooks/bind_app_cluster.yml", *options)
        assert first.returncode == 0, first.stdout + first.stderr
        binding = app.get(API_SERVICE_BINDINGS, "postgresqlinstances.samples.klutch.bind", "klutch-bind")
        assert condition_holds("Ready")(binding)
        assert app.get(CUSTOM_RESOURCE_DEFINITIONS, "postgresqlinstances.samples.klutch.bind") is not None
        assert "'problems': []" in first.stdout or '"problems": []' in first.stdout

        start = now()
        second = ansible_playbook("playbooks/bind_app_cluster.yml", *options)
        assert second.returncode == 0, second.stdout + second.stderr
        assert all(counts["changed"] == 0 for counts in recaps(second).values()), second.stdout
        assert audit(cluster).count_writes(since=start, user=ADMIN_USER) == 0

        sample = ansible_playbook("playbooks/lab_sample_instance.yml", "-i", str(inventory))
        assert sample.returncode == 0, sample.stdout + sample.stderr
        creds = app.get(SECRETS, "orders-creds", "demo")
        assert set(creds["data"]) >= {"host", "port", "username", "password"}, "the connection Secret arrived"

        published = ansible_playbook("playbooks/publish_service.yml", *options)
        assert recaps(published)["control-plane"]["changed"] == 0, published.stdout

        unbound = ansible_playbook("playbooks/unbind_app_cluster.yml", *options)
        assert unbound.returncode == 0, unbound.stdout + unbound.stderr
        assert app.get(API_SERVICE_BINDINGS, "postgresqlinstances.samples.klutch.bind", "klutch-bind") is None
        assert app.get(INSTANCES, "orders", "demo") is not None, "the CRD and instances stay unless asked"
        consumer_namespace = first_consumer_namespace(first)
        assert cp.get(NAMESPACES, consumer_namespace) is not None, "control-plane data stays unless asked"
        assert cp.get(INSTANCES, "orders", f"{consumer_namespace}-demo") is not None
        again = ansible_playbook("playbooks/unbind_app_cluster.yml", *options)
        assert recaps(again)["app-playbook"]["changed"] == 0, again.stdout
        everything = ansible_playbook("playbooks/unbind_app_cluster.yml", *options,
                                      "-e", "klutch_unbind_control_plane=everything")
        assert everything.returncode == 0, everything.stdout + everything.stderr
        gone = cp.get(NAMESPACES, consumer_namespace)
        assert gone is None or gone["metadata"].get("deletionTimestamp"), "asked: the consumer's namespace goes"
    finally:
        for role, name in (("konnector", "konnector-app-playbook"), ("backend", "backend-control-plane")):
            run_task("klutch.bind.klutch_agent", {"role": role, "name": name, "run_dir": str(agents),
                                                  "state": "absent"})  # they would outlive the test run
        lab.down(["app-playbook"])


def first_consumer_namespace(completed):
    """The consumer namespace the playbook's summary reports."""
    marker = '"consumer_namespace": "'
    start = completed.stdout.index(marker) + len(marker)
    return completed.stdout[start:completed.stdout.index('"', start)]


def test_bind_app_cluster_names_the_host_that_cannot_be_reached(lab, tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(lab.inventory.read_text().replace(str(lab.cluster("app").admin_kubeconfig),
                                                           str(tmp_path / "missing.kubeconfig")))
    # No agents: the lab inventory would leave local ones running on the shared control plane.
    run = ansible_playbook("playbooks/bind_app_cluster.yml", "-i", str(inventory),
                           "-e", "control_plane_backend=none", "-e", "konnector_mode=none")
    assert run.returncode != 0
    assert f"The kubeconfig file {tmp_path / 'missing.kubeconfig'} does not exist" in run.stdout + run.stderr
    assert "fatal: [app]" in run.stdout and "fatal: [control-plane]" not in run.stdout
