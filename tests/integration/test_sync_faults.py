"""Faults: the konnector agent killed mid-sync, the control plane's kube-apiserver restarted; after both
come back the clusters converge, and nothing is lost or duplicated (contents compared both ways)."""

import json
import os
import signal
import sys
import time

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.resources import NAMESPACES, SECRETS
from ansible_collections.klutch.bind.plugins.module_utils.sync import SYNCER_FINALIZER
from sync_world import MANGODBS, TEMPLATE, World, instance, konnector_play, load_crd

NAMESPACE_COUNT, PER_NAMESPACE = 3, 100


@pytest.fixture
def faulty(lab, control_plane, klutch_apis, control_plane_play, run_playbook, run_task, tmp_path_factory):
    from ansible_collections.klutch.bind.plugins.module_utils.client import ClusterClient

    run_dir = tmp_path_factory.mktemp("agents")
    cp = ClusterClient.from_params({"kubeconfig": str(control_plane.admin_kubeconfig)}, environ={})
    load_crd(cp)
    backend_play = control_plane_play(control_plane_templates=[TEMPLATE], control_plane_backend="local",
                                      control_plane_backend_resync=2, control_plane_backend_run_dir=str(run_dir),
                                      control_plane_backend_agent_name="backend")
    completed = run_playbook(backend_play)
    assert completed.returncode == 0, completed.stdout
    lab.up(list(lab.state["clusters"]) + ["app-faults"])
    cluster = lab.cluster("app-faults")
    plays = {"control_plane": backend_play, "konnector": konnector_play(cluster, "local", run_dir)}
    world = World("agents", cluster, cp, run_task, run_playbook, plays)
    world.cp_kubeconfig = control_plane.admin_kubeconfig
    world.run_dir = run_dir
    completed = run_playbook(konnector_play(cluster, "none", run_dir))  # CRDs and RBAC, no agent yet
    assert completed.returncode == 0, completed.stdout
    world.bind()
    yield world
    for role in ("konnector", "backend"):
        run_task("klutch.bind.klutch_agent", {"role": role, "name": role, "run_dir": str(run_dir), "state": "absent"})
    lab.down(["app-faults"])


def konnector_pid(world):
    return json.loads((world.run_dir / "konnector" / "state.json").read_text())["pid"]


def contents(client, namespaces):
    """{(namespace, name): tier} of the instances and {(namespace, name): data} of the Secrets."""
    instances, secrets = {}, {}
    for namespace in namespaces:
        for obj in client.list(MANGODBS, namespace)[0]:
            key = (namespace, obj["metadata"]["name"])
            assert key not in instances, f"duplicate {key}"
            instances[key] = obj["spec"]["tier"]
        for obj in client.list(SECRETS, namespace)[0]:
            if obj.get("type") == "Opaque":
                secrets[(namespace, obj["metadata"]["name"])] = obj.get("data")
    return instances, secrets


def test_killed_mid_sync_and_a_restarted_api_server_lose_and_duplicate_nothing(lab, faulty, control_plane):
    world, app, cp = faulty, faulty.app, faulty.cp
    namespaces = [f"load-{index}" for index in range(NAMESPACE_COUNT)]
    total = NAMESPACE_COUNT * PER_NAMESPACE
    # The konnector starts on a backlog: every instance exists before it runs.
    for namespace in namespaces:
        app.apply(NAMESPACES, {"metadata": {"name": namespace}})
        for index in range(PER_NAMESPACE):
            app.write("POST", MANGODBS, instance(f"db-{index:03d}", namespace=namespace, tier="Shared"))
    completed = world.run_playbook(world.plays["konnector"])
    assert completed.returncode == 0, completed.stdout

    def upstream_count():
        return sum(len(cp.list(MANGODBS, world.mapped(namespace))[0]) for namespace in namespaces)

    deadline = time.monotonic() + 60
    while upstream_count() < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(konnector_pid(world), signal.SIGKILL)
    at_kill = upstream_count()
    print(f"\nfaults: konnector killed with {at_kill} of {total} instances upstream", file=sys.stderr)
    assert 0 < at_kill < total, "the kill was not mid-sync"

    # While the konnector is dead: the control plane's API server goes away and comes back, and both
    # sides keep changing.
    lab.restart(control_plane.name, "kube-apiserver", downtime=2)
    for index in range(10):
        app.write("PATCH", MANGODBS, {"metadata": {"name": f"db-{index:03d}", "namespace": namespaces[0]},
                                      "spec": {"tier": "Dedicated"}})
        app.delete(MANGODBS, f"db-{index:03d}", namespaces[1])
        app.write("POST", MANGODBS, instance(f"late-{index:03d}", namespace=namespaces[2]))
    for index in range(5):
        cp.apply(SECRETS, {"metadata": {"name": f"creds-{index}", "namespace": world.mapped(namespaces[0])},
                           "stringData": {"password": f"secret-{index}"}})

    # The role brings the konnector back; the backend agent rode out the restart on its own.
    completed = world.run_playbook(world.plays["konnector"])
    assert completed.returncode == 0, completed.stdout
    assert "konnector started" in completed.stdout

    mapped = dict((world.mapped(namespace), namespace) for namespace in namespaces)

    def converged():
        down = contents(app, namespaces)
        up = contents(cp, mapped)
        up_as_down = ({(mapped[ns], name): tier for (ns, name), tier in up[0].items()},
                      {(mapped[ns], name): data for (ns, name), data in up[1].items()})
        return down == up_as_down and all(
            SYNCER_FINALIZER in obj["metadata"].get("finalizers", []) for namespace in namespaces
            for obj in app.list(MANGODBS, namespace)[0])

    started = time.monotonic()
    deadline = started + 120
    while not converged():
        assert time.monotonic() < deadline, "the clusters did not converge within 120 s"
        time.sleep(0.5)
    print(f"faults: converged {time.monotonic() - started:.1f} s after the konnector came back", file=sys.stderr)
    instances, secrets = contents(app, namespaces)
    assert len(instances) == total, "10 deleted, 10 added"
    assert sum(1 for tier in instances.values() if tier == "Dedicated") == 10 + 10  # patched + the late ones
    assert len(secrets) == 5
    assert all(obj["metadata"].get("deletionTimestamp") is None for namespace in namespaces
               for obj in app.list(MANGODBS, namespace)[0]), "no delete is stuck on a finalizer"
