"""Klutch's own end-to-end scenarios (ref §7.1 A-D) on the lab, each run twice: once driven by
klutch_claim_sync (with klutch_export_request doing the backend's work), once by the agents that the
roles run as local processes under their least-privilege ServiceAccounts, with no playbook between.

The exported API is a plain CRD (Klutch's MangoDB); its template claims Secrets owned by the
provider and ConfigMaps owned by the consumer.
"""

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.resources import CONFIG_MAPS, SECRETS
from ansible_collections.klutch.bind.plugins.module_utils.sync import BOUND_ANNOTATION, OWNER_ANNOTATION, SYNCER_FINALIZER
from sync_world import MANGODBS, TEMPLATE, World, instance, konnector_play, load_crd, recap


@pytest.fixture(scope="module", params=["module", "agents"])
def world(request, lab, control_plane, klutch_apis, control_plane_play, run_playbook, run_task, tmp_path_factory):
    driver = request.param
    agents = driver == "agents"
    run_dir = tmp_path_factory.mktemp("agents")
    cp = ClusterClient.from_params({"kubeconfig": str(control_plane.admin_kubeconfig)}, environ={})
    load_crd(cp)
    play = control_plane_play(control_plane_templates=[TEMPLATE], control_plane_backend="local" if agents else "none",
                              control_plane_backend_resync=2, control_plane_backend_run_dir=str(run_dir),
                              control_plane_backend_agent_name="backend")
    completed = run_playbook(play)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    name = f"app-{driver}"
    lab.up(list(lab.state["clusters"]) + [name])
    cluster = lab.cluster(name)
    plays = {"control_plane": play, "konnector": konnector_play(cluster, "local" if agents else "none", run_dir)}
    completed = run_playbook(plays["konnector"])
    assert completed.returncode == 0, completed.stdout + completed.stderr
    world = World(driver, cluster, cp, run_task, run_playbook, plays)
    world.cp_kubeconfig = control_plane.admin_kubeconfig
    world.bind()
    yield world
    for role, agent_name in (("konnector", "konnector"), ("backend", "backend")):
        result, output = run_task("klutch.bind.klutch_agent", {"role": role, "name": agent_name,
                                                               "run_dir": str(run_dir), "state": "absent"})
        assert not result.get("failed"), output
    lab.down([name])


def test_a_happy_case_instances_claims_spec_status_deletes_and_binding_again(world):
    app, cp = world.app, world.cp
    # 3. Instances are synced: one copy upstream, in the mapped namespace.
    app.apply(MANGODBS, instance("test", tier="Shared"))
    world.converge("the instance upstream", lambda: cp.get(MANGODBS, "test", world.mapped()))
    assert [obj["metadata"]["name"] for obj in cp.list(MANGODBS, world.mapped())[0]] == ["test"]
    assert SYNCER_FINALIZER in app.get(MANGODBS, "test", "default")["metadata"]["finalizers"]

    # 4. An instance deleted upstream is recreated.
    uid = cp.get(MANGODBS, "test", world.mapped())["metadata"]["uid"]
    cp.delete(MANGODBS, "test", world.mapped())
    world.converge("recreated upstream", lambda: (cp.get(MANGODBS, "test", world.mapped()) or {}).get(
        "metadata", {}).get("uid") not in (None, uid))

    # 5.-8. A claimed Secret created, recreated, updated and deleted from the provider side.
    cp.apply(SECRETS, {"metadata": {"name": "test-secret", "namespace": world.mapped()}, "stringData": {"pw": "one"}})
    world.converge("the Secret downstream", lambda: app.get(SECRETS, "test-secret", "default"))
    assert app.get(SECRETS, "test-secret", "default")["metadata"]["annotations"][OWNER_ANNOTATION] == "Provider"
    app.delete(SECRETS, "test-secret", "default")
    world.converge("the Secret recreated downstream", lambda: app.get(SECRETS, "test-secret", "default"))
    cp.apply(SECRETS, {"metadata": {"name": "test-secret", "namespace": world.mapped()}, "stringData": {"pw": "two"}},
             force=True)
    world.converge("the Secret updated downstream", lambda: (app.get(SECRETS, "test-secret", "default") or {}).get(
        "data", {}).get("pw") == "dHdv")
    cp.delete(SECRETS, "test-secret", world.mapped())
    world.converge("the Secret deleted downstream", lambda: app.get(SECRETS, "test-secret", "default") is None)

    # 9. Spec changes on the consumer go up.
    app.write("PATCH", MANGODBS, {"metadata": {"name": "test", "namespace": "default"}, "spec": {"tier": "Dedicated"}})
    world.converge("tier Dedicated upstream", lambda: cp.get(MANGODBS, "test", world.mapped())["spec"]["tier"]
                   == "Dedicated")

    # 10. Status changes upstream come down.
    cp.write("PATCH", MANGODBS, {"metadata": {"name": "test", "namespace": world.mapped()},
                                 "status": {"phase": "Running"}}, subresource="status")
    world.converge("status Running downstream", lambda: (app.get(MANGODBS, "test", "default").get("status") or {})
                   .get("phase") == "Running")

    # 11. A provider-side spec edit is reverted: the consumer's spec wins.
    cp.write("PATCH", MANGODBS, {"metadata": {"name": "test", "namespace": world.mapped()}, "spec": {"tier": "Shared"}})
    world.converge("tier back to Dedicated upstream", lambda: cp.get(MANGODBS, "test", world.mapped())["spec"]["tier"]
                   == "Dedicated")

    # 12. Deleting downstream deletes upstream, and the syncer finalizer is released.
    app.delete(MANGODBS, "test", "default")
    world.converge("gone on both sides", lambda: app.get(MANGODBS, "test", "default") is None
                   and cp.get(MANGODBS, "test", world.mapped()) is None)

    # 13. Binding again is idempotent: nothing changes, in check mode and for real, roles included.
    for check in (True, False):
        exported, bound = world.bind(check=check)
        assert exported["changed"] is False and bound["changed"] is False, (exported["results"], bound["results"])
        for play in world.plays.values():
            completed = world.run_playbook(play, check=check)
            assert recap(completed)["changed"] == 0, completed.stdout


def test_b_provider_owned_claims_win_over_consumer_edits_and_own_secrets_never_go_up(world):
    app, cp = world.app, world.cp
    app.apply(MANGODBS, instance("owned"))
    app.apply(SECRETS, {"metadata": {"name": "consumers-own", "namespace": "default"}, "stringData": {"key": "mine"}})
    world.converge("the instance upstream", lambda: cp.get(MANGODBS, "owned", world.mapped()))
    cp.apply(SECRETS, {"metadata": {"name": "creds", "namespace": world.mapped()}, "stringData": {"pw": "provider"}})
    world.converge("the Secret downstream", lambda: app.get(SECRETS, "creds", "default"))
    app.write("PATCH", SECRETS, {"metadata": {"name": "creds", "namespace": "default"}, "stringData": {"pw": "edited"}})
    world.converge("the consumer's edit overwritten", lambda: app.get(SECRETS, "creds", "default")["data"]["pw"]
                   == "cHJvdmlkZXI=")
    cp.apply(SECRETS, {"metadata": {"name": "creds", "namespace": world.mapped()}, "stringData": {"pw": "rotated"}},
             force=True)
    world.converge("the provider's update down", lambda: app.get(SECRETS, "creds", "default")["data"]["pw"]
                   == "cm90YXRlZA==")
    app.delete(SECRETS, "creds", "default")
    world.converge("the consumer's delete undone", lambda: app.get(SECRETS, "creds", "default"))
    cp.delete(SECRETS, "creds", world.mapped())
    world.converge("the provider's delete down", lambda: app.get(SECRETS, "creds", "default") is None)
    assert cp.get(SECRETS, "consumers-own", world.mapped()) is None, "a consumer's own Secret never goes up"
    app.delete(MANGODBS, "owned", "default")
    world.converge("the instance gone", lambda: app.get(MANGODBS, "owned", "default") is None)


def test_c_consumer_owned_claims_are_the_mirror_image(world):
    app, cp = world.app, world.cp
    app.apply(MANGODBS, instance("mirrored"))
    app.apply(CONFIG_MAPS, {"metadata": {"name": "settings", "namespace": "default"}, "data": {"mode": "fast"}})
    world.converge("the ConfigMap upstream", lambda: cp.get(CONFIG_MAPS, "settings", world.mapped()))
    upstream = cp.get(CONFIG_MAPS, "settings", world.mapped())
    assert upstream["metadata"]["annotations"][OWNER_ANNOTATION] == "Consumer"
    cp.write("PATCH", CONFIG_MAPS, {"metadata": {"name": "settings", "namespace": world.mapped()},
                                    "data": {"mode": "slow"}})
    world.converge("the provider's edit overwritten", lambda: cp.get(CONFIG_MAPS, "settings", world.mapped())["data"]
                   == {"mode": "fast"})
    app.write("PATCH", CONFIG_MAPS, {"metadata": {"name": "settings", "namespace": "default"},
                                     "data": {"mode": "faster"}})
    world.converge("the consumer's update up", lambda: cp.get(CONFIG_MAPS, "settings", world.mapped())["data"]
                   == {"mode": "faster"})
    cp.delete(CONFIG_MAPS, "settings", world.mapped())
    world.converge("the provider's delete undone", lambda: cp.get(CONFIG_MAPS, "settings", world.mapped()))
    app.delete(CONFIG_MAPS, "settings", "default")
    world.converge("the consumer's delete up", lambda: cp.get(CONFIG_MAPS, "settings", world.mapped()) is None)
    app.delete(MANGODBS, "mirrored", "default")
    world.converge("the instance gone", lambda: app.get(MANGODBS, "mirrored", "default") is None)


def test_d_an_instance_the_provider_creates_is_adopted(world):
    app, cp = world.app, world.cp
    app.apply(MANGODBS, instance("test"))
    world.converge("the instance upstream", lambda: cp.get(MANGODBS, "test", world.mapped()))
    cp.apply(MANGODBS, instance("test2", namespace=world.mapped()))
    world.converge("test2 on the consumer, marked bound", lambda: (
        app.get(MANGODBS, "test2", "default") or {}).get("metadata", {}).get("annotations", {}).get(
            BOUND_ANNOTATION) == "true")
    app.delete(MANGODBS, "test", "default")
    app.delete(MANGODBS, "test2", "default")
    world.converge("both gone on both sides", lambda: not app.list(MANGODBS, "default")[0]
                   and not cp.list(MANGODBS, world.mapped())[0])
