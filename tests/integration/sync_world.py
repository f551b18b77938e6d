"""The bound world the sync scenarios and the agent tests share: an exported API, its roles and drivers."""

import time
from collections import namedtuple
from pathlib import Path

from ansible_collections.klutch.bind.plugins.module_utils.k8s import manifests
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import condition_holds
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import CUSTOM_RESOURCE_DEFINITIONS, Resource
from playbook_runner import role_play

FILES = Path(__file__).parent / "files"
# An exported API: its CRD file, template, and the consumer scope its export needs.
Api = namedtuple("Api", ["crd_file", "template", "consumer_scope"])
MANGODBS = Resource("mangodb.com/v1alpha1", "MangoDB", "mangodbs")
# Klutch's MangoDB: namespaced; Secrets owned by the provider, ConfigMaps by the consumer.
MANGODB_API = Api(FILES / "mangodb-crd.yaml", {
    "name": "mangodbs", "group": "mangodb.com", "resource": "mangodbs",
    "permission_claims": [{"resource": "secrets", "owner": "Provider"}, {"resource": "configmaps", "owner": "Consumer"}]},
    None)
FOOS = Resource("bar.io/v1alpha1", "Foo", "foos", namespaced=False)
# Klutch's cluster-scoped Foo, which only a consumer in Cluster scope can bind.
FOO_API = Api(FILES / "foo-crd.yaml", {"name": "foos", "group": "bar.io", "resource": "foos",
                                       "permission_claims": [{"resource": "secrets", "owner": "Provider"}]}, "Cluster")
AGENT_WAIT = 30  # s; the agents resync every 2 s and react to watches at once


def load_crd(client, api=MANGODB_API):
    for crd in manifests.load(src=str(api.crd_file)):
        client.apply(CUSTOM_RESOURCE_DEFINITIONS, crd, force=True)  # a test may have changed its schema
        client.wait(CUSTOM_RESOURCE_DEFINITIONS, crd["metadata"]["name"], None, condition_holds("Established"), 30,
                    "Established")


def konnector_play(cluster, mode, run_dir, agent_name="konnector", **variables):
    return role_play("klutch.bind.konnector", dict({
        "konnector_kubeconfig": str(cluster.admin_kubeconfig), "konnector_mode": mode, "konnector_resync": 2,
        "konnector_run_dir": str(run_dir), "konnector_agent_name": agent_name}, **variables))


def consumer_name(cluster):
    """The consumer identity of a lab cluster: its name and port, since a cluster of the same name started
    again is another cluster, with another id, which the control plane refuses under the old consumer."""
    return "%s-%s" % (cluster.name, cluster.server.rsplit(":", 1)[1])


def eventually(what, check, timeout=30):
    """What check() returns once it is truthy; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


class World:
    """One app cluster bound to an exported API, and the way its clusters are brought in step."""

    def __init__(self, driver, cluster, cp, run_task, run_playbook, plays, api=MANGODB_API):
        self.driver, self.cluster, self.cp, self.plays, self.api = driver, cluster, cp, plays, api
        self.run_task, self.run_playbook = run_task, run_playbook
        self.app = ClusterClient.from_params({"kubeconfig": str(cluster.admin_kubeconfig)}, environ={})
        self.app_args = {"kubeconfig": str(cluster.admin_kubeconfig)}
        # Consent to every kind the template claims: the scenarios test what crosses under each claim.
        self.accept_claims = [claim["resource"] for claim in api.template.get("permission_claims") or []]
        self.namespace = None

    def bind(self, check=False):
        """klutch_export_request and klutch_binding, as the playbook runs them; (export, binding) results."""
        info, output = self.run_task("klutch.bind.klutch_cluster_info", self.app_args)
        assert not info.get("failed"), output
        template = self.api.template
        self.export_args = {"kubeconfig": str(self.cp_kubeconfig), "consumer": consumer_name(self.cluster),
                            "cluster_id": info["cluster_id"],
                            "resources": [{"group": template["group"], "resource": template["resource"]}]}
        if self.api.consumer_scope:
            self.export_args["consumer_scope"] = self.api.consumer_scope
        exported, output = self.run_task("klutch.bind.klutch_export_request", self.export_args, check=check)
        assert not exported.get("failed"), output
        bound, output = self.run_task("klutch.bind.klutch_binding", dict(
            self.app_args, name="%(resource)s.%(group)s" % template, provider_kubeconfig=exported["kubeconfig"],
            accept_claims=self.accept_claims), check=check)
        assert not bound.get("failed"), output
        self.namespace = exported["consumer_namespace"]
        return exported, bound

    def mapped(self, namespace="default"):
        return f"{self.namespace}-{namespace}"

    def converge(self, what, check):
        """Bring both sides in step the driver's way, then insist that `check()` holds."""
        if self.driver == "agents":
            deadline = time.monotonic() + AGENT_WAIT
            while time.monotonic() < deadline:
                if check():
                    return
                time.sleep(0.2)
            raise AssertionError(f"the agents did not make this true within {AGENT_WAIT} s: {what}")
        for attempt in range(3):
            result, output = self.run_task("klutch.bind.klutch_claim_sync", self.app_args)
            assert not result.get("failed"), output
            if check():
                return
            if attempt == 0:  # a new namespace is mapped by the backend's work: klutch_export_request
                mapped, output = self.run_task("klutch.bind.klutch_export_request", self.export_args)
                assert not mapped.get("failed"), output
        raise AssertionError(f"klutch_claim_sync did not make this true in 3 runs: {what}")


def instance(name, tier="Dedicated", namespace="default"):
    return {"apiVersion": MANGODBS.api_version, "kind": MANGODBS.kind,
            "metadata": {"name": name, "namespace": namespace}, "spec": {"tier": tier}}


def make_world(driver, name, lab, control_plane, control_plane_play, run_playbook, run_task, run_dir, api=MANGODB_API):
    """An app cluster `name` bound to `api`; with driver "agents" both agents run as the roles start them."""
    agents = driver == "agents"
    cp = ClusterClient.from_params({"kubeconfig": str(control_plane.admin_kubeconfig)}, environ={})
    load_crd(cp, api)
    play = control_plane_play(control_plane_templates=[api.template],
                              control_plane_backend="local" if agents else "none",
                              control_plane_backend_resync=2, control_plane_backend_run_dir=str(run_dir),
                              control_plane_backend_agent_name="backend")
    completed = run_playbook(play)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lab.up(list(lab.state["clusters"]) + [name])
    cluster = lab.cluster(name)
    plays = {"control_plane": play, "konnector": konnector_play(cluster, "local" if agents else "none", run_dir)}
    completed = run_playbook(plays["konnector"])
    assert completed.returncode == 0, completed.stdout + completed.stderr
    world = World(driver, cluster, cp, run_task, run_playbook, plays, api)
    world.cp_kubeconfig = control_plane.admin_kubeconfig
    world.run_dir = run_dir
    world.bind()
    return world


def end_world(world, lab, run_task, agent_names=("konnector", "backend")):
    """Stop the world's local agents (a running one would outlive the test run) and its app cluster."""
    for agent_name in agent_names:
        role = "backend" if agent_name == "backend" else "konnector"
        result, output = run_task("klutch.bind.klutch_agent", {"role": role, "name": agent_name,
                                                               "run_dir": str(world.run_dir), "state": "absent"})
        assert not result.get("failed"), output
    lab.down([world.cluster.name])
