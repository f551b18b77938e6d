"""The bound world the sync scenarios and the fault test share: the MangoDB API, its roles and drivers."""

import json
import time
from pathlib import Path

from ansible_collections.klutch.bind.plugins.module_utils import manifests
from ansible_collections.klutch.bind.plugins.module_utils.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.objects import condition_holds
from ansible_collections.klutch.bind.plugins.module_utils.resources import CUSTOM_RESOURCE_DEFINITIONS, Resource

MANGODB_CRD = Path(__file__).parent / "files" / "mangodb-crd.yaml"
MANGODBS = Resource("mangodb.com/v1alpha1", "MangoDB", "mangodbs")
API = "mangodbs.mangodb.com"
TEMPLATE = {"name": "mangodbs", "group": "mangodb.com", "resource": "mangodbs",
            "permission_claims": [{"resource": "secrets", "owner": "Provider"},
                                  {"resource": "configmaps", "owner": "Consumer"}]}
AGENT_WAIT = 30  # s; the agents resync every 2 s and react to watches at once


def load_crd(client):
    for crd in manifests.load(src=str(MANGODB_CRD)):
        client.apply(CUSTOM_RESOURCE_DEFINITIONS, crd)
        client.wait(CUSTOM_RESOURCE_DEFINITIONS, crd["metadata"]["name"], None, condition_holds("Established"), 30,
                    "Established")


def konnector_play(cluster, mode, run_dir):
    variables = {"konnector_kubeconfig": str(cluster.admin_kubeconfig), "konnector_mode": mode,
                 "konnector_resync": 2, "konnector_run_dir": str(run_dir), "konnector_agent_name": "konnector"}
    return f"""\
        - name: Prepare the app cluster
          hosts: localhost
          connection: local
          gather_facts: false
          roles:
            - role: klutch.bind.konnector
              vars: {json.dumps(variables)}
        """


def recap(completed):
    """{'changed': n, 'failed': n} of a single-host play."""
    line = next(line for line in completed.stdout.splitlines() if line.startswith("localhost") and "ok=" in line)
    return dict((key, int(value)) for key, value in (part.split("=") for part in line.split()[2:]))


class World:
    """One app cluster bound to the MangoDB API, and the way its clusters are brought in step."""

    def __init__(self, driver, cluster, cp, run_task, run_playbook, plays):
        self.driver, self.cluster, self.cp, self.plays = driver, cluster, cp, plays
        self.run_task, self.run_playbook = run_task, run_playbook
        self.app = ClusterClient.from_params({"kubeconfig": str(cluster.admin_kubeconfig)}, environ={})
        self.app_args = {"kubeconfig": str(cluster.admin_kubeconfig)}
        self.namespace = None

    def bind(self, check=False):
        """klutch_export_request and klutch_binding, as the playbook runs them; (export, binding) results."""
        info, output = self.run_task("klutch.bind.klutch_cluster_info", self.app_args)
        assert not info.get("failed"), output
        self.export_args = {"kubeconfig": str(self.cp_kubeconfig), "consumer": self.cluster.name,
                            "cluster_id": info["cluster_id"], "resources": [{"group": "mangodb.com",
                                                                             "resource": "mangodbs"}]}
        exported, output = self.run_task("klutch.bind.klutch_export_request", self.export_args, check=check)
        assert not exported.get("failed"), output
        bound, output = self.run_task("klutch.bind.klutch_binding", dict(
            self.app_args, name=API, provider_kubeconfig=exported["kubeconfig"]), check=check)
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
