"""Klutch's own end-to-end scenarios A to D on the lab, each run twice: once driven by
klutch_claim_sync (with klutch_export_request doing the backend's work), once by the agents that the
roles run as local processes under their least-privilege ServiceAccounts, with no playbook between.

The exported API is a plain CRD (Klutch's MangoDB); its template claims Secrets owned by the
provider and ConfigMaps owned by the consumer.
"""

import time

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import CONFIG_MAPS, NAMESPACES, SECRETS
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_NAMESPACES
from ansible_collections.klutch.bind.plugins.module_utils.plan.sync import (
    BOUND_ANNOTATION,
    OWNER_ANNOTATION,
    SYNCER_FINALIZER,
)
from playbook_runner import recap
from sync_world import FOO_API, FOOS, MANGODBS, end_world, instance, make_world


@pytest.fixture(scope="module", params=["module", "agents"])
def world(request, lab, control_plane, klutch_apis, control_plane_play, run_playbook, run_task, tmp_path_factory):
    bound = make_world(request.param, f"app-{request.param}", lab, control_plane, control_plane_play, run_playbook,
                       run_task, tmp_path_factory.mktemp("agents"))
    yield bound
    end_world(bound, lab, run_task)


def test_deleting_a_consumer_namespace_removes_its_mapping_and_provider_namespace(world):
    app, cp = world.app, world.cp
    app.apply(NAMESPACES, {"metadata": {"name": "short-lived"}})
    app.apply(MANGODBS, instance("brief", namespace="short-lived"))
    world.converge("mapped and upstream", lambda: cp.get(MANGODBS, "brief", world.mapped("short-lived")))
    app.delete(NAMESPACES, "short-lived")  # the namespace controller deletes the instance, the finalizer holds it
    world.converge("the instance released", lambda: app.get(MANGODBS, "brief", "short-lived") is None)
    deadline = time.monotonic() + 90  # then the namespace controller finishes, at its own pace
    while app.get(NAMESPACES, "short-lived") is not None:
        assert time.monotonic() < deadline, "the namespace controller did not remove the namespace"
        time.sleep(0.5)

    def unmapped():
        consumer_namespace = cp.get(NAMESPACES, world.mapped("short-lived"))
        return cp.get(API_SERVICE_NAMESPACES, "short-lived", world.namespace) is None and (
            consumer_namespace is None or consumer_namespace["metadata"].get("deletionTimestamp"))

    world.converge("the mapping and the provider namespace removed", unmapped)


@pytest.fixture(scope="module", params=["module", "agents"])
def cluster_world(request, lab, control_plane, klutch_apis, control_plane_play, run_playbook, run_task,
                  tmp_path_factory):
    """A consumer in Cluster scope bound to the cluster-scoped Foo (Klutch's TestClusterScoped)."""
    bound = make_world(request.param, f"app-foos-{request.param}", lab, control_plane, control_plane_play,
                       run_playbook, run_task, tmp_path_factory.mktemp("agents"), api=FOO_API)
    yield bound
    end_world(bound, lab, run_task)


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
        changed = [entry for entry in exported["results"] + bound["results"] if entry["action"] != "unchanged"]
        assert exported["changed"] is False and bound["changed"] is False, changed
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


def test_a_cluster_scoped_instances_are_prefixed_upstream_and_follow_the_same_rules(cluster_world):
    world, app, cp = cluster_world, cluster_world.app, cluster_world.cp
    upstream = f"{world.namespace}-test"

    def foo_object(name, deployment):
        return {"apiVersion": FOOS.api_version, "kind": FOOS.kind, "metadata": {"name": name},
                "spec": {"deploymentName": deployment}}

    # 3. Synced as <P>-test, marked with its consumer namespace and owned by it.
    app.apply(FOOS, foo_object("test", "first"))
    world.converge("<P>-test upstream", lambda: cp.get(FOOS, upstream))
    copy = cp.get(FOOS, upstream)
    assert copy["metadata"]["annotations"]["klutch.anynines.com/cluster-namespace"] == world.namespace
    [owner] = copy["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("Namespace", world.namespace)
    # 4. Deleted upstream: recreated.
    cp.delete(FOOS, upstream)
    world.converge("recreated upstream", lambda: cp.get(FOOS, upstream) and not cp.get(FOOS, upstream)["metadata"]
                   .get("deletionTimestamp"))
    # 9. Spec up; 10. status down; 11. a provider spec edit reverted.
    app.write("PATCH", FOOS, {"metadata": {"name": "test"}, "spec": {"deploymentName": "tested"}})
    world.converge("spec up", lambda: cp.get(FOOS, upstream)["spec"]["deploymentName"] == "tested")
    cp.write("PATCH", FOOS, {"metadata": {"name": upstream}, "status": {"phase": "Running"}}, subresource="status")
    world.converge("status down", lambda: (app.get(FOOS, "test").get("status") or {}).get("phase") == "Running")
    cp.write("PATCH", FOOS, {"metadata": {"name": upstream}, "spec": {"deploymentName": "provider"}})
    world.converge("reverted upstream", lambda: cp.get(FOOS, upstream)["spec"]["deploymentName"] == "tested")
    # Adopt: the provider's <P>-made appears on the consumer as made; another consumer's object does not.
    cp.apply(FOOS, foo_object(f"{world.namespace}-made", "by-provider"))
    cp.apply(FOOS, foo_object("cluster-other-made", "someone-else"))
    world.converge("adopted", lambda: app.get(FOOS, "made"))
    # 12. Deleted downstream: deleted upstream, finalizers released.
    app.delete(FOOS, "test")
    app.delete(FOOS, "made")
    world.converge("gone on both sides", lambda: not app.list(FOOS)[0] and [
        obj["metadata"]["name"] for obj in cp.list(FOOS)[0]] == ["cluster-other-made"])
    cp.delete(FOOS, "cluster-other-made")
    assert app.get(FOOS, "other-made") is None
    # 13. Binding again is idempotent.
    exported, bound = world.bind()
    assert exported["changed"] is False and bound["changed"] is False
