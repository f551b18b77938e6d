"""klutch_claim_sync on the lab: a real Crossplane claim made on an app cluster, its Secret coming back."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import condition_holds
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import NAMESPACES, Resource, SECRETS
from ansible_collections.klutch.bind.plugins.module_utils.plan.sync import BOUND_ANNOTATION, OWNER_ANNOTATION
from conftest import KLUTCH_CRDS
from sync_world import eventually
from klutch_lab.audit import now
from klutch_lab.cluster import free_port
from klutch_lab.cluster import ADMIN_USER

GROUP, RESOURCE = "samples.klutch.bind", "postgresqlinstances"
NAME = f"{RESOURCE}.{GROUP}"
INSTANCES = Resource(f"{GROUP}/v1", "PostgresqlInstance", RESOURCE)


@pytest.fixture(scope="module")
def bound(lab, control_plane, klutch_apis, sample_dataservices, run_task):
    """An app cluster of its own, bound to the sample PostgreSQL API with the Secrets claim accepted."""
    lab.up(list(lab.state["clusters"]) + ["app-sync"])
    cluster = lab.cluster("app-sync")
    app_args = {"kubeconfig": str(cluster.admin_kubeconfig)}
    steps = [
        ("klutch.bind.klutch_template", {"kubeconfig": str(control_plane.admin_kubeconfig), "name": RESOURCE,
                                         "group": GROUP, "resource": RESOURCE,
                                         "permission_claims": [{"resource": "secrets", "owner": "Provider"}]}),
        ("klutch.bind.klutch_manifest", dict(app_args, src=str(KLUTCH_CRDS), wait=True)),
        ("klutch.bind.klutch_manifest", dict(app_args, definition={"apiVersion": "v1", "kind": "Namespace",
                                                                   "metadata": {"name": "klutch-bind"}})),
    ]
    for module, args in steps:
        result, output = run_task(module, args)
        assert not result.get("failed"), output
    info, _output = run_task("klutch.bind.klutch_cluster_info", app_args)
    export_args = {"kubeconfig": str(control_plane.admin_kubeconfig), "consumer": "app-sync",
                   "cluster_id": info["cluster_id"], "resources": [{"group": GROUP, "resource": RESOURCE}]}
    exported, output = run_task("klutch.bind.klutch_export_request", export_args)
    assert not exported.get("failed"), output
    bound_result, output = run_task("klutch.bind.klutch_binding", dict(
        app_args, name=NAME, provider_kubeconfig=exported["kubeconfig"], accept_claims=["secrets"]))
    assert not bound_result.get("failed"), output

    class Bound:
        app = ClusterClient.from_params(app_args, environ={})
        cp = ClusterClient.from_params({"kubeconfig": str(control_plane.admin_kubeconfig)}, environ={})
        namespace = exported["consumer_namespace"]
        provider_kubeconfig = yaml.safe_load(exported["kubeconfig"])

        @staticmethod
        def sync(check=False):
            result, output = run_task("klutch.bind.klutch_claim_sync", app_args, check=check)
            assert not result.get("failed"), output
            return result

        @staticmethod
        def map_namespaces():
            result, output = run_task("klutch.bind.klutch_export_request", export_args)
            assert not result.get("failed"), output

    Bound.cluster = cluster
    yield Bound
    lab.down(["app-sync"])


def test_a_claim_made_on_the_app_cluster_is_provisioned_and_its_secret_comes_back(bound, audit):
    app, cp = bound.app, bound.cp
    app.apply(NAMESPACES, {"metadata": {"name": "shop"}})
    app.apply(SECRETS, {"metadata": {"name": "my-own", "namespace": "shop"}, "stringData": {"token": "mine"}})
    app.apply(INSTANCES, {"metadata": {"name": "orders", "namespace": "shop"},
                          "spec": {"service": "postgresql-17", "plan": "postgresql-single-small",
                                   "writeConnectionSecretToRef": {"name": "orders-creds"}}})

    first = bound.sync()
    assert [(op["action"], op["namespace"]) for op in first["operations"]] == [("map_namespace", "shop")]
    bound.map_namespaces()
    mapped = f"{bound.namespace}-shop"
    second = bound.sync()
    assert {(op["direction"], op["action"]) for op in second["operations"]} == {
        ("down", "add_finalizer"), ("up", "create"), ("down", "annotate")}  # the bound mark in the same pass
    upstream = cp.wait(INSTANCES, "orders", mapped, condition_holds("Ready"), 90, "Ready on the control plane")
    assert upstream["metadata"]["annotations"][BOUND_ANNOTATION] == "true"
    cp.wait(SECRETS, "orders-creds", mapped, lambda obj: obj is not None, 30, "published by Crossplane")

    third = bound.sync()
    assert third["synced"][NAME]["down"] == {"instances": 1, "secrets": 1}  # the status, the Secret
    creds = app.get(SECRETS, "orders-creds", "shop")
    assert set(creds["data"]) == {"host", "port", "username", "password", "database", "uri"}
    assert creds["metadata"]["annotations"][OWNER_ANNOTATION] == "Provider"
    assert condition_holds("Ready")(app.get(INSTANCES, "orders", "shop"))
    assert cp.get(SECRETS, "my-own", mapped) is None, "a consumer's own Secret never goes up"

    start = now()
    fourth = bound.sync()
    assert fourth["changed"] is False and fourth["operations"] == []
    assert audit(bound.cluster).count_writes(since=start, user=ADMIN_USER) == 0


def test_consumer_edits_of_the_secret_are_reverted_and_spec_changes_go_up(bound):
    app, cp = bound.app, bound.cp
    mapped = f"{bound.namespace}-shop"
    app.apply(SECRETS, {"metadata": {"name": "orders-creds", "namespace": "shop"}, "stringData": {"password": "x"}},
              force=True)
    app.apply(INSTANCES, {"metadata": {"name": "orders", "namespace": "shop"},
                          "spec": {"service": "postgresql-17", "plan": "postgresql-single-medium",
                                   "writeConnectionSecretToRef": {"name": "orders-creds"}}}, force=True)
    planned = bound.sync(check=True)
    assert {(op["direction"], op["action"], op["kind"]) for op in planned["operations"]} >= {
        ("up", "update_spec", "instances"), ("down", "replace", "secrets")}
    assert cp.get(INSTANCES, "orders", mapped)["spec"]["plan"] == "postgresql-single-small", "check mode wrote"
    bound.sync()
    assert cp.get(INSTANCES, "orders", mapped)["spec"]["plan"] == "postgresql-single-medium"
    assert app.get(SECRETS, "orders-creds", "shop")["data"]["password"] == cp.get(
        SECRETS, "orders-creds", mapped)["data"]["password"]


def test_deleting_on_the_app_cluster_deletes_upstream_and_releases_the_finalizer(bound):
    app, cp = bound.app, bound.cp
    mapped = f"{bound.namespace}-shop"
    app.delete(INSTANCES, "orders", "shop")
    assert app.get(INSTANCES, "orders", "shop")["metadata"]["deletionTimestamp"], "held by the syncer finalizer"
    bound.sync()
    assert app.get(INSTANCES, "orders", "shop") is None
    upstream = cp.get(INSTANCES, "orders", mapped)
    assert upstream is None or upstream["metadata"].get("deletionTimestamp")


def start_agent(role, cluster, identity, *extra):
    """An agent as a local process with the admin's kubeconfig; (process, health port)."""
    port = free_port()
    environ = dict(os.environ, PYTHONPATH=os.environ["ANSIBLE_COLLECTIONS_PATH"])
    process = subprocess.Popen(
        [sys.executable, "-m", "ansible_collections.klutch.bind.plugins.module_utils.agent.cli", role,
         "--kubeconfig", str(cluster.admin_kubeconfig), "--health-port", str(port), "--health-local",
         "--resync", "5", "--identity", identity, *extra],
        env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return process, port


def stopped(process):
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def agent(bound):
    """The konnector agent on the bound app cluster; stopped with SIGTERM."""
    started = start_agent("konnector", bound.cluster, "test-agent")
    yield started
    stopped(started[0])


def health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def test_the_agent_syncs_without_a_playbook_and_stops_cleanly_on_sigterm(bound, agent, figure):
    process, port = agent
    app, cp = bound.app, bound.cp
    eventually("healthy and leading", lambda: (health(port) or {}).get("leading"))
    lease = app.get(Resource("coordination.k8s.io/v1", "Lease", "leases"), "klutch-bind", "klutch-bind")
    assert lease["spec"]["holderIdentity"] == "test-agent"

    mapped = f"{bound.namespace}-shop"
    started = time.monotonic()
    app.apply(INSTANCES, {"metadata": {"name": "invoices", "namespace": "shop"},
                          "spec": {"service": "postgresql-15", "plan": "postgresql-single-small",
                                   "writeConnectionSecretToRef": {"name": "invoices-creds"}}})
    eventually("the instance upstream", lambda: cp.get(INSTANCES, "invoices", mapped))
    figure(f"agent: instance upstream {time.monotonic() - started:.2f} s after it was created")
    eventually("its connection Secret on the app cluster", lambda: app.get(SECRETS, "invoices-creds", "shop"), 90)
    eventually("Ready on the app cluster", lambda: condition_holds("Ready")(app.get(INSTANCES, "invoices", "shop")))
    assert cp.get(Resource("klutch.anynines.com/v1alpha1", "ClusterBinding", "clusterbindings"), "cluster",
                  bound.namespace)["status"]["konnectorVersion"]

    assert cp.get(SECRETS, "my-own", mapped) is None, "the agent never uploads a consumer's own Secret either"

    app.delete(INSTANCES, "invoices", "shop")
    eventually("deleted on the app cluster, finalizer released", lambda: app.get(INSTANCES, "invoices", "shop") is None)

    process.terminate()
    assert process.wait(timeout=30) == 0
    logs = process.stderr.read()
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert records[-1]["msg"] == "konnector stopped"
    assert "token" not in logs.lower() and "password" not in logs.lower()


@pytest.fixture
def backend_agent(control_plane):
    """The backend agent on the control plane."""
    # Its default Lease namespace, klutch-bind-system, comes with the control_plane role's backend.
    started = start_agent("backend", control_plane, "test-backend", "--lease-namespace", "kube-system")
    yield started
    stopped(started[0])


def test_with_both_agents_a_new_namespace_and_a_request_by_anyone_are_served(
        bound, agent, backend_agent, run_task, control_plane, client_for):
    app, cp = bound.app, bound.cp
    eventually("both agents leading", lambda: (health(agent[1]) or {}).get("leading")
               and (health(backend_agent[1]) or {}).get("leading"))
    app.apply(NAMESPACES, {"metadata": {"name": "fresh"}})
    app.apply(INSTANCES, {"metadata": {"name": "ledger", "namespace": "fresh"},
                          "spec": {"service": "postgresql-17", "plan": "postgresql-single-small"}})
    mapped = f"{bound.namespace}-fresh"
    eventually("the namespace mapped and the instance upstream", lambda: cp.get(INSTANCES, "ledger", mapped), 60)

    result, output = run_task("klutch.bind.klutch_template", {
        "kubeconfig": str(control_plane.admin_kubeconfig), "name": "messaginginstances", "group": GROUP,
        "resource": "messaginginstances"})
    assert not result.get("failed"), output
    consumer = client_for(kubeconfig=bound.provider_kubeconfig)
    requests = Resource("klutch.anynines.com/v1alpha1", "APIServiceExportRequest", "apiserviceexportrequests")
    consumer.write("POST", requests, {
        "apiVersion": requests.api_version, "kind": requests.kind,
        "metadata": {"name": f"messaginginstances.{GROUP}", "namespace": bound.namespace},
        "spec": {"resources": [{"group": GROUP, "resource": "messaginginstances"}]}})
    served = eventually("the request Succeeded", lambda: (consumer.get(requests, f"messaginginstances.{GROUP}",
                                                                       bound.namespace).get("status") or {})
                        .get("phase") == "Succeeded", 60)
    assert served
    export = consumer.get(Resource("klutch.anynines.com/v1alpha1", "APIServiceExport", "apiserviceexports"),
                          f"messaginginstances.{GROUP}", bound.namespace)
    assert export["spec"]["names"]["kind"] == "MessagingInstance"
    cluster_binding = Resource("klutch.anynines.com/v1alpha1", "ClusterBinding", "clusterbindings")
    healthy = eventually("the ClusterBinding Healthy from the heartbeat", lambda: condition_holds("Healthy")(
        cp.get(cluster_binding, "cluster", bound.namespace)) and cp.get(cluster_binding, "cluster", bound.namespace))
    assert healthy["status"]["konnectorVersion"], "the heartbeat and the conditions live side by side"
    app.delete(INSTANCES, "ledger", "fresh")
    eventually("deleted on the app cluster", lambda: app.get(INSTANCES, "ledger", "fresh") is None)
