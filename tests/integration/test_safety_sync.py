"""The sync never loses data on either side: wrong clusters, unbinding, foreign objects, several versions.

Each app cluster here is bound as the playbook binds it (klutch_export_request and klutch_binding) and
brought in step by klutch_claim_sync, the same pass the konnector agent runs. Each case says what
both clusters must hold afterwards.
"""

from collections import namedtuple
from pathlib import Path

import pytest
import yaml

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CONFIG_MAPS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    Resource,
    SECRETS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_BINDINGS, API_SERVICE_NAMESPACES
from ansible_collections.klutch.bind.plugins.module_utils.plan.sync import OWNER_ANNOTATION, SYNCER_FINALIZER
from klutch_lab.audit import now
from sync_world import MANGODBS, Api, end_world, eventually, instance, konnector_play, load_crd, make_world

FILES = Path(__file__).parent / "files"
# Two served versions, the newer one the storage version with a field the older lacks; its template
# claims ConfigMaps owned by the provider, as every namespace has one (kube-root-ca.crt).
VERSIONED = Api(FILES / "versioned-crd.yaml", {"name": "versioneds", "group": "versions.example.com",
                                               "resource": "versioneds",
                                               "permission_claims": [{"resource": "configmaps", "owner": "Provider"}]},
                None)
V1ALPHA1 = Resource("versions.example.com/v1alpha1", "Versioned", "versioneds")
V1 = Resource("versions.example.com/v1", "Versioned", "versioneds")
Deletes = namedtuple("Deletes", ["instances", "namespaces", "mappings"])


@pytest.fixture(scope="module")
def world(bound_world):
    with bound_world("module", "app-safe") as bound:
        yield bound


def sync(world, cluster=None):
    kubeconfig = (cluster or world.cluster).admin_kubeconfig
    result, output = world.run_task("klutch.bind.klutch_claim_sync", {"kubeconfig": str(kubeconfig)})
    assert not result.get("failed"), output
    return result


def cp_deletes(audit, control_plane, since):
    """Deletes on the control plane since `since`, by kind."""
    events = [event for event in audit(control_plane).writes(since=since) if event["verb"] == "delete"]
    return Deletes(*[sum(1 for event in events if event["objectRef"]["resource"] == resource)
                     for resource in ("mangodbs", "namespaces", "apiservicenamespaces")])


def test_a_binding_copied_to_another_cluster_removes_nothing_upstream(world, lab, run_task, run_playbook, audit,
                                                                      control_plane, tmp_path_factory):
    app, cp = world.app, world.cp
    app.apply(NAMESPACES, {"metadata": {"name": "shop"}})
    for namespace in ("default", "shop"):
        app.apply(MANGODBS, instance("kept", namespace=namespace))
    world.converge("both instances upstream", lambda: all(cp.get(MANGODBS, "kept", world.mapped(namespace))
                                                          for namespace in ("default", "shop")))
    # Another cluster gets the same binding, as a copied Secret or a restored backup would give it.
    lab.up(list(lab.state["clusters"]) + ["app-copy"])
    copy = lab.cluster("app-copy")
    try:
        completed = run_playbook(konnector_play(copy, "none", tmp_path_factory.mktemp("agents")))
        assert completed.returncode == 0, completed.stdout + completed.stderr
        exported, output = run_task("klutch.bind.klutch_export_request", world.export_args)
        assert not exported.get("failed"), output
        bound, output = run_task("klutch.bind.klutch_binding", {
            "kubeconfig": str(copy.admin_kubeconfig), "name": "mangodbs.mangodb.com",
            "provider_kubeconfig": exported["kubeconfig"], "accept_claims": world.accept_claims})
        assert not bound.get("failed"), output
        start = now()
        result = sync(world, copy)
        assert "mangodbs.mangodb.com" in result["removals_withheld"]
        assert "but the consumer was bound from cluster" in result["removals_withheld"]["mangodbs.mangodb.com"]
        assert cp_deletes(audit, control_plane, start) == Deletes(0, 0, 0)
        for namespace in ("default", "shop"):
            assert cp.get(MANGODBS, "kept", world.mapped(namespace)) is not None
            assert cp.get(API_SERVICE_NAMESPACES, namespace, world.namespace) is not None
    finally:
        lab.down(["app-copy"])
    # The consumer's own cluster still removes what it deletes.
    app.delete(MANGODBS, "kept", "shop")
    world.converge("the deletion upstream", lambda: cp.get(MANGODBS, "kept", world.mapped("shop")) is None)


def test_an_unmarked_consumer_secret_is_neither_overwritten_nor_deleted_by_a_provider_namesake(world):
    app, cp = world.app, world.cp
    app.apply(MANGODBS, instance("paired"))
    world.converge("the instance upstream", lambda: cp.get(MANGODBS, "paired", world.mapped()))
    app.apply(SECRETS, {"metadata": {"name": "namesake", "namespace": "default"}, "stringData": {"pw": "users-own"}})
    cp.apply(SECRETS, {"metadata": {"name": "namesake", "namespace": world.mapped()}, "stringData": {"pw": "provider"}})
    cp.apply(SECRETS, {"metadata": {"name": "marker", "namespace": world.mapped()}, "stringData": {"pw": "x"}})
    world.converge("a provider Secret came down", lambda: app.get(SECRETS, "marker", "default"))
    mine = app.get(SECRETS, "namesake", "default")
    assert mine["data"] == {"pw": "dXNlcnMtb3du"} and OWNER_ANNOTATION not in (mine["metadata"].get("annotations") or {})
    cp.delete(SECRETS, "namesake", world.mapped())
    cp.delete(SECRETS, "marker", world.mapped())
    world.converge("the provider's marked copy removed", lambda: app.get(SECRETS, "marker", "default") is None)
    assert app.get(SECRETS, "namesake", "default")["data"] == {"pw": "dXNlcnMtb3du"}


def test_a_consumer_cannot_take_over_a_provider_secret_by_marking_its_own(world):
    app, cp = world.app, world.cp
    cp.apply(SECRETS, {"metadata": {"name": "db-admin", "namespace": world.mapped()}, "stringData": {"pw": "real"}})
    app.apply(SECRETS, {"metadata": {"name": "db-admin", "namespace": "default",
                                     "annotations": {OWNER_ANNOTATION: "Consumer"}}, "stringData": {"pw": "forged"}})
    for _pass in range(2):
        sync(world)
    assert cp.get(SECRETS, "db-admin", world.mapped())["data"] == {"pw": "cmVhbA=="}
    assert app.get(SECRETS, "db-admin", "default")["data"] == {"pw": "Zm9yZ2Vk"}


@pytest.fixture
def leaving(lab, control_plane, klutch_apis, control_plane_play, run_playbook, run_task, tmp_path_factory):
    bound = make_world("module", "app-unbound", lab, control_plane, control_plane_play, run_playbook, run_task,
                       tmp_path_factory.mktemp("agents"))
    yield bound
    end_world(bound, lab, run_task)


def gone_within(what, check, seconds=60):
    return eventually(what, check, timeout=seconds)


def test_after_unbinding_instances_their_namespaces_and_the_crd_can_be_deleted(leaving, audit, control_plane):
    app, cp = leaving.app, leaving.cp
    app.apply(NAMESPACES, {"metadata": {"name": "temp"}})
    app.apply(MANGODBS, instance("one"))
    app.apply(MANGODBS, instance("two", namespace="temp"))
    app.apply(MANGODBS, instance("three"))
    leaving.converge("all upstream", lambda: all(cp.get(MANGODBS, name, leaving.mapped(namespace))
                                                 for name, namespace in (("one", "default"), ("two", "temp"),
                                                                         ("three", "default"))))
    assert SYNCER_FINALIZER in app.get(MANGODBS, "one", "default")["metadata"]["finalizers"]
    unbound, output = leaving.run_task("klutch.bind.klutch_binding", dict(leaving.app_args, name="mangodbs.mangodb.com",
                                                                          state="absent"))
    assert not unbound.get("failed") and unbound["changed"], output
    assert not leaving.run_task("klutch.bind.klutch_binding", dict(
        leaving.app_args, name="mangodbs.mangodb.com", state="absent"))[0]["changed"]
    start = now()
    app.delete(MANGODBS, "one", "default")
    gone_within("the instance deleted on the app cluster", lambda: app.get(MANGODBS, "one", "default") is None)
    app.delete(NAMESPACES, "temp")
    gone_within("the namespace deleted", lambda: app.get(NAMESPACES, "temp") is None, 120)
    removed, output = leaving.run_task("klutch.bind.klutch_binding", dict(
        leaving.app_args, name="mangodbs.mangodb.com", state="absent", delete_crd=True))
    assert not removed.get("failed"), output
    gone_within("the CRD deleted", lambda: app.get(CUSTOM_RESOURCE_DEFINITIONS, "mangodbs.mangodb.com") is None)
    # Unbinding never deletes control-plane data.
    assert [cp.get(MANGODBS, name, leaving.mapped(namespace)) is not None
            for name, namespace in (("one", "default"), ("two", "temp"), ("three", "default"))] == [True] * 3
    assert [event["requestURI"] for event in audit(control_plane).writes(since=start)
            if not event["user"]["username"].startswith("system:")
            or event["user"]["username"].endswith(":klutch-binder")] == []


@pytest.fixture(scope="module")
def versioned(lab, control_plane, klutch_apis, control_plane_play, run_playbook, run_task, tmp_path_factory):
    bound = make_world("module", "app-versions", lab, control_plane, control_plane_play, run_playbook, run_task,
                       tmp_path_factory.mktemp("agents"), api=VERSIONED)
    yield bound
    end_world(bound, lab, run_task)


def versioned_instance(name, **spec):
    return {"apiVersion": V1.api_version, "kind": V1.kind, "metadata": {"name": name, "namespace": "default"},
            "spec": spec}


def test_a_field_set_through_the_storage_version_survives_the_sync_on_both_sides(versioned):
    app, cp = versioned.app, versioned.cp
    app.apply(V1, versioned_instance("kept", size="s", backupWindow="02:00"))
    versioned.converge("the instance upstream", lambda: cp.get(V1, "kept", versioned.mapped()))
    cp.write("PATCH", V1, {"metadata": {"name": "kept", "namespace": versioned.mapped()},
                           "status": {"phase": "Ready"}}, subresource="status")
    versioned.converge("the status down", lambda: (app.get(V1, "kept", "default").get("status") or {}).get("phase"))
    sync(versioned)
    assert app.get(V1, "kept", "default")["spec"] == {"size": "s", "backupWindow": "02:00"}
    assert cp.get(V1, "kept", versioned.mapped())["spec"] == {"size": "s", "backupWindow": "02:00"}


def test_system_objects_never_cross(versioned, audit, control_plane):
    app, cp = versioned.app, versioned.cp
    app.apply(V1, versioned_instance("rooted", size="s"))
    versioned.converge("the instance upstream", lambda: cp.get(V1, "rooted", versioned.mapped()))
    start = now()
    for _pass in range(2):
        sync(versioned)
    for cluster in (control_plane, versioned.cluster):
        touched = [event["requestURI"] for event in audit(cluster).writes(since=start, include_dry_run=True)
                   if "kube-root-ca.crt" in event["requestURI"]
                   and event["user"]["username"] != "system:kube-controller-manager"]
        assert touched == []
    assert cp.get(CONFIG_MAPS, "kube-root-ca.crt", versioned.mapped())["data"]["ca.crt"] == \
        control_plane.ca_cert.read_text()
    assert app.get(CONFIG_MAPS, "kube-root-ca.crt", "default")["data"]["ca.crt"] == \
        versioned.cluster.ca_cert.read_text()


@pytest.fixture(scope="module")
def two_bindings(lab, control_plane, klutch_apis, control_plane_play, run_playbook, run_task, tmp_path_factory):
    """An app cluster whose agents serve two bindings: MangoDB, and Versioned under a second consumer
    identity, so that each binding has credentials of its own."""
    bound = make_world("agents", "app-two-bindings", lab, control_plane, control_plane_play, run_playbook, run_task,
                       tmp_path_factory.mktemp("agents"))
    load_crd(bound.cp, VERSIONED)
    completed = run_playbook(control_plane_play(control_plane_templates=[VERSIONED.template]))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    exported, output = run_task("klutch.bind.klutch_export_request", dict(
        bound.export_args, consumer=bound.export_args["consumer"] + "-versions",
        resources=[{"group": "versions.example.com", "resource": "versioneds"}]))
    assert not exported.get("failed"), output
    binding, output = run_task("klutch.bind.klutch_binding", dict(
        bound.app_args, name="versioneds.versions.example.com", provider_kubeconfig=exported["kubeconfig"],
        accept_claims=["configmaps"]))
    assert not binding.get("failed"), output
    bound.kubeconfig, bound.versions_namespace = exported["kubeconfig"], exported["consumer_namespace"]
    yield bound
    end_world(bound, lab, run_task)


def test_a_binding_whose_credentials_are_refused_says_so_releases_deletions_and_stops_no_other(two_bindings):
    app, cp = two_bindings.app, two_bindings.cp
    upstream = f"{two_bindings.versions_namespace}-default"
    app.apply(V1, versioned_instance("held", size="s"))
    eventually("the versioned instance upstream", lambda: cp.get(V1, "held", upstream))
    eventually("its finalizer", lambda: SYNCER_FINALIZER in (app.get(V1, "held", "default")["metadata"].get(
        "finalizers") or []))
    # The Versioned binding's kubeconfig Secret now holds a token that the control plane refuses.
    config = yaml.safe_load(two_bindings.kubeconfig)
    config["users"][0]["user"]["token"] = "not-a-valid-token"
    secret = app.get(API_SERVICE_BINDINGS, "versioneds.versions.example.com", "klutch-bind")["spec"][
        "kubeconfigSecretRef"]["name"]
    app.write("PATCH", SECRETS, {"metadata": {"name": secret, "namespace": "klutch-bind"},
                                 "stringData": {"kubeconfig": yaml.safe_dump(config)}})

    def connected():
        binding = app.get(API_SERVICE_BINDINGS, "versioneds.versions.example.com", "klutch-bind")
        return next((item for item in (binding.get("status") or {}).get("conditions") or []
                     if item["type"] == "Connected"), {})

    eventually("the binding says why it is not served", lambda: connected().get("reason") == "ProviderUnauthorized")
    assert connected()["status"] == "False"
    app.delete(V1, "held", "default")
    eventually("the deletion released on the app cluster", lambda: app.get(V1, "held", "default") is None)
    assert cp.get(V1, "held", upstream) is not None  # its control-plane copy is kept
    # The other binding goes on.
    app.apply(MANGODBS, instance("still-synced"))
    eventually("the other binding's instance upstream", lambda: cp.get(MANGODBS, "still-synced", two_bindings.mapped()))


NAMEDS = Resource("names.example.com/v1", "Named", "nameds")


@pytest.fixture(scope="module")
def named(lab, control_plane, klutch_apis, control_plane_play, run_playbook, run_task, tmp_path_factory):
    """An app cluster bound to an API whose template claims one Secret by name."""
    crd = yaml.safe_load(VERSIONED.crd_file.read_text())
    crd["metadata"]["name"] = "nameds.names.example.com"
    crd["spec"].update(group="names.example.com", names={"kind": "Named", "listKind": "NamedList", "plural": "nameds",
                                                         "singular": "named"})
    crd["spec"]["versions"] = [dict(version, served=True, storage=True) for version in crd["spec"]["versions"][1:]]
    crd_file = tmp_path_factory.mktemp("crds") / "named-crd.yaml"
    crd_file.write_text(yaml.safe_dump(crd))
    api = Api(crd_file, {"name": "nameds", "group": "names.example.com", "resource": "nameds",
                         "permission_claims": [{"resource": "secrets", "owner": "Provider", "names": ["db-creds"]}]},
              None)
    bound = make_world("module", "app-named", lab, control_plane, control_plane_play, run_playbook, run_task,
                       tmp_path_factory.mktemp("agents"), api=api)
    yield bound
    end_world(bound, lab, run_task)


def test_a_claim_that_names_its_objects_grants_and_syncs_only_those(named, run_task):
    app, cp = named.app, named.cp
    app.apply(NAMEDS, {"apiVersion": NAMEDS.api_version, "kind": NAMEDS.kind,
                       "metadata": {"name": "db", "namespace": "default"}, "spec": {"size": "s"}})
    named.converge("the instance upstream", lambda: cp.get(NAMEDS, "db", named.mapped()))
    for name in ("db-creds", "internal"):
        cp.apply(SECRETS, {"metadata": {"name": name, "namespace": named.mapped()}, "stringData": {"pw": name}})
    named.converge("the named Secret down", lambda: app.get(SECRETS, "db-creds", "default"))
    sync(named)
    assert app.get(SECRETS, "internal", "default") is None
    exported, output = run_task("klutch.bind.klutch_export_request", named.export_args)
    assert not exported.get("failed"), output
    consumer = ClusterClient.from_params({"kubeconfig": yaml.safe_load(exported["kubeconfig"])}, environ={})
    assert consumer.get(SECRETS, "db-creds", named.mapped()) is not None
    for attempt in (lambda: consumer.get(SECRETS, "internal", named.mapped()),
                    lambda: consumer.list(SECRETS, named.mapped())):
        with pytest.raises(ClusterError) as refused:
            attempt()
        assert refused.value.status == 403
