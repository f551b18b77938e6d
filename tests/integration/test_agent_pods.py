"""The agents as real Pods: Klutch's scenario A on a lab whose control plane and app cluster have a node.

The README's playbooks run as a user runs them, with the lab's inventory, which asks for both agents
as Deployments on clusters with a node: the backend in klutch-bind-system on the control plane, the
konnector in klutch-bind on the app cluster, each two replicas on the official Python image with
the bundle in a ConfigMap. Only one Crossplane can run per machine, so this module brings up a lab
of its own and runs before the session's lab starts (conftest orders it first).
"""

import sys
import tempfile
import time
from pathlib import Path

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.agent.runtime import LEASES
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import condition_holds
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import NAMESPACES, PODS, Resource, SECRETS
from ansible_collections.klutch.bind.plugins.module_utils.plan.consumers import BINDER, IDENTITY_ANNOTATION
from klutch_lab import DEFAULT_CLUSTERS, AuditLog, Lab
from playbook_runner import ROOT, ansible_playbook, recaps
from sync_world import eventually

LAB_VARS = ROOT / "playbooks" / "vars" / "lab.yml"
INSTANCES = Resource("samples.klutch.bind/v1", "PostgresqlInstance", "postgresqlinstances")
KONNECTOR = ("klutch-bind", "klutch-bind", "klutch-bind-konnector")  # namespace, Lease, ServiceAccount
BACKEND = ("klutch-bind-system", "klutch-bind-backend", "klutch-bind-backend")


@pytest.fixture(scope="module")
def pods_lab(figure):
    # A short directory: the kubelet's Unix sockets live below it.
    lab = Lab(Path(tempfile.mkdtemp(prefix="klp-")) / "lab", progress=lambda line: print(line, file=sys.stderr))
    started = time.monotonic()
    lab.up(DEFAULT_CLUSTERS, nodes=DEFAULT_CLUSTERS)
    figure(f"pods: lab with two nodes up in {time.monotonic() - started:.1f} s")
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture(scope="module")
def clients(pods_lab):
    return {name: ClusterClient.from_params({"kubeconfig": str(pods_lab.cluster(name).admin_kubeconfig)}, environ={})
            for name in DEFAULT_CLUSTERS}


def playbook(pods_lab, name, *options):
    completed = ansible_playbook(f"playbooks/{name}", "-i", str(pods_lab.inventory), "-e", f"@{LAB_VARS}",
                                 "-e", "konnector_resync=5", "-e", "control_plane_backend_resync=5", *options)
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-6000:]
    return completed


def agent_pods(client, agent):
    namespace = agent[0]
    return [pod for pod in client.list(PODS, namespace)[0] if pod["metadata"]["name"].startswith(agent[2])]


def ready(pod):
    return condition_holds("Ready")(pod) and not pod["metadata"].get("deletionTimestamp")


def holder(client, agent):
    return ((client.get(LEASES, agent[1], agent[0]) or {}).get("spec") or {}).get("holderIdentity")


@pytest.fixture(scope="module")
def bound(pods_lab, clients):
    """The demo's path: publish and bind with both agents as Deployments, then the sample instance."""
    first = playbook(pods_lab, "bind_app_cluster.yml")
    sample = ansible_playbook("playbooks/lab_sample_instance.yml", "-i", str(pods_lab.inventory))
    assert sample.returncode == 0, (sample.stdout + sample.stderr)[-6000:]
    return first


def test_scenario_a_runs_through_agents_in_pods(pods_lab, clients, bound):
    app, cp = clients["app"], clients["control-plane"]
    creds = app.get(SECRETS, "orders-creds", "demo")
    assert set(creds["data"]) >= {"host", "port", "username", "password"}, "the connection Secret came down"
    assert condition_holds("Ready")(app.get(INSTANCES, "orders", "demo")), "the status came down"
    for client, agent in ((app, KONNECTOR), (cp, BACKEND)):
        pods = agent_pods(client, agent)
        assert len(pods) == 2 and all(ready(pod) for pod in pods), [pod["status"] for pod in pods]
        assert holder(client, agent) in [pod["metadata"]["name"] for pod in pods]
    assert not list(pods_lab.agents_dir.glob("*/state.json")), "no agent runs as a local process"
    again = playbook(pods_lab, "bind_app_cluster.yml")
    assert all(counts["changed"] == 0 for counts in recaps(again).values()), again.stdout[-4000:]


def test_the_pods_run_as_non_root_on_a_read_only_root_with_their_service_account(pods_lab, clients, bound):
    for name, agent in (("app", KONNECTOR), ("control-plane", BACKEND)):
        for pod in agent_pods(clients[name], agent):
            spec = pod["spec"]
            container = spec["containers"][0]
            assert spec["serviceAccountName"] == agent[2]
            assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == 65532
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["image"] == "docker.io/library/python:3.11-slim-bookworm"
            # No kubeconfig is mounted: only the bundle, /tmp and the projected ServiceAccount token.
            volumes = {volume["name"]: volume for volume in spec["volumes"]}
            assert not any("secret" in volume for volume in volumes.values()), volumes
            assert "--kubeconfig" not in " ".join(container.get("args") or [])
        # The agent's requests come from its ServiceAccount.
        users = {event["user"]["username"] for event in AuditLog(pods_lab.cluster(name)).events()}
        assert f"system:serviceaccount:{agent[0]}:{agent[2]}" in users


def test_the_other_replica_leads_within_a_lease_term_when_the_leader_goes(pods_lab, clients, bound, figure):
    app = clients["app"]
    leader = holder(app, KONNECTOR)
    deleted = time.monotonic()
    app.delete(PODS, leader, KONNECTOR[0])
    successor = eventually("another konnector Pod holds the Lease",
                           lambda: (holder(app, KONNECTOR) or leader) != leader and holder(app, KONNECTOR), timeout=60)
    took = time.monotonic() - deleted
    figure(f"pods: konnector leadership moved from {leader} to {successor} in {took:.1f} s")
    assert took < 15, "within a lease term"
    # Nothing lost: an instance created now still goes up and its Secret comes down.
    app.apply(INSTANCES, {"metadata": {"name": "after-failover", "namespace": "demo"},
                          "spec": {"service": "postgresql-17", "plan": "postgresql-single-small",
                                   "writeConnectionSecretToRef": {"name": "after-failover-creds"}}})
    eventually("the new instance's connection Secret", lambda: app.get(SECRETS, "after-failover-creds", "demo"), 180)


def test_readiness_follows_the_control_planes_credentials(pods_lab, clients, bound):
    app, cp = clients["app"], clients["control-plane"]
    consumer_namespace = next(namespace["metadata"]["name"] for namespace in cp.list(NAMESPACES)[0]
                              if IDENTITY_ANNOTATION in (namespace["metadata"].get("annotations") or {}))
    # Revoked: the consumer's token Secret goes, and with it the token the konnector uses.
    cp.delete(SECRETS, BINDER, consumer_namespace)
    eventually("the leading konnector Pod turns unready",
               lambda: any(not ready(pod) and pod["metadata"]["name"] == holder(app, KONNECTOR)
                           for pod in agent_pods(app, KONNECTOR)), timeout=90)
    # Bound again: a new token, the binding's kubeconfig Secret rewritten; the Pods are ready again.
    playbook(pods_lab, "bind_app_cluster.yml")
    eventually("both konnector Pods ready again",
               lambda: all(ready(pod) for pod in agent_pods(app, KONNECTOR)) and len(agent_pods(app, KONNECTOR)) == 2,
               timeout=90)
