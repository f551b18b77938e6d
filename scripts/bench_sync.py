# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark of the sync pass and the konnector agent on a lab of its own; prints a table.

    .venv/bin/python scripts/bench_sync.py [--objects 500,2000] [--namespaces 20] [--changes 200] [--pod]

Provider-owned Secrets in the consumer's mapped namespaces are synced down to the app cluster by
one pass (what klutch_claim_sync runs). The floor is a raw bulk create of as many Secrets on the
same app cluster, with the same client and concurrency, in the same run. The agent's latency is
the time from a change of a Secret on the control plane to its copy on the app cluster, for the
agent as a local process and, with --pod, as the konnector role's Deployment on a lab node.
Not a test: it asserts nothing, it measures.
"""

import argparse
import base64
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = ROOT / ".venv" / "collections"
sys.path[:0] = [str(ROOT), str(COLLECTIONS)]

# pylint: disable=wrong-import-position
from ansible_collections.klutch.bind.plugins.module_utils.k8s import manifests
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CLUSTER_ROLES,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_BINDINGS, API_SERVICE_NAMESPACES
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import sync
from ansible_collections.klutch.bind.plugins.module_utils.plan.sync import APP_CLUSTER, CONTROL_PLANE
from klutch_lab import Lab  # noqa: E402
from klutch_lab.cluster import free_port  # noqa: E402

CRD = {"metadata": {"name": "gadgets.bench.example"}, "spec": {
    "group": "bench.example", "scope": "Namespaced",
    "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
    "versions": [{"name": "v1", "served": True, "storage": True,
                  "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
WORKERS = 8


class Counting(ClusterClient):
    """A client that counts its requests."""

    requests = 0

    def request(self, *args, **kwargs):
        Counting.requests += 1
        return super().request(*args, **kwargs)


def client(cluster):
    return Counting.from_params({"kubeconfig": str(cluster.admin_kubeconfig)}, environ={})


def playbook(text):
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        handle.write(textwrap.dedent(text))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_LOCALHOST_WARNING="0")
    run = subprocess.run([str(ROOT / ".venv" / "bin" / "ansible-playbook"), handle.name], env=env, text=True,
                         capture_output=True, check=False)
    os.unlink(handle.name)
    if run.returncode:
        sys.exit(run.stdout[-3000:] + run.stderr[-2000:])


def bind(cp_cluster, app_cluster, cp, app, namespaces):
    for crd in manifests.load(src=str(ROOT / "roles/klutch_apis/files/klutch-crds.yaml")):
        for target in (cp, app):
            target.apply(CUSTOM_RESOURCE_DEFINITIONS, crd)
    cp.apply(CUSTOM_RESOURCE_DEFINITIONS, CRD)
    cp.apply(CLUSTER_ROLES, manifests.load(src=str(ROOT / "roles/control_plane/files/binder-clusterrole.yaml"))[0])
    app.apply(NAMESPACES, {"metadata": {"name": "klutch-bind"}})
    cp.apply(NAMESPACES, {"metadata": {"name": "crossplane-system"}})  # where templates live
    time.sleep(2)  # CRDs Established
    export = f"""\
            - klutch.bind.klutch_cluster_info:
                kubeconfig: {app_cluster.admin_kubeconfig}
              register: info
            - klutch.bind.klutch_export_request:
                kubeconfig: {cp_cluster.admin_kubeconfig}
                consumer: bench
                cluster_id: "{{{{ info.cluster_id }}}}"
                external_address: {cp_cluster.pod_reachable_server}
                resources: [{{group: bench.example, resource: gadgets}}]
              register: exported
              no_log: true
"""
    playbook(f"""\
        - hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - klutch.bind.klutch_template:
                kubeconfig: {cp_cluster.admin_kubeconfig}
                name: gadgets
                group: bench.example
                resource: gadgets
                permission_claims: [{{resource: secrets, owner: Provider}}]
{export}
            - klutch.bind.klutch_binding:
                kubeconfig: {app_cluster.admin_kubeconfig}
                name: gadgets.bench.example
                provider_kubeconfig: "{{{{ exported.kubeconfig }}}}"
                accept_claims: [secrets]
        """)
    binding = app.get(API_SERVICE_BINDINGS, "gadgets.bench.example", "klutch-bind")
    bound = sync.BoundApi(binding, app, lambda config: Counting.from_params({"kubeconfig": config}, environ={}))
    for name in namespaces:
        app.apply(NAMESPACES, {"metadata": {"name": name}})
        cp.write("POST", API_SERVICE_NAMESPACES, {"apiVersion": API_SERVICE_NAMESPACES.api_version,
                                                  "kind": API_SERVICE_NAMESPACES.kind,
                                                  "metadata": {"name": name, "namespace": bound.namespace}})
    playbook(f"""\
        - hosts: localhost
          connection: local
          gather_facts: false
          tasks:
{export}
        """)  # the export again maps the namespaces
    return bound


def secret(name, namespace, value="x"):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {"value": base64.b64encode(value.encode()).decode()}}


def bulk_create(target, bodies):
    with ThreadPoolExecutor(WORKERS) as pool:
        list(pool.map(lambda body: target.write("POST", SECRETS, body), bodies))


def timed_pass(bound, app):
    Counting.requests = 0
    started = time.monotonic()
    operations, resources = sync.plan_binding(bound, app)
    _made, errors = sync.run_operations(operations, {APP_CLUSTER: app, CONTROL_PLANE: bound.control_plane}, resources,
                                        bound.namespace, WORKERS)
    return time.monotonic() - started, len(operations), Counting.requests, errors


def measure(bound, cp, app, total, namespaces, round_name):
    per_namespace = total // len(namespaces)
    provider_bodies = [secret(f"{round_name}-{index}", f"{bound.namespace}-{namespace}")
                       for namespace in namespaces for index in range(per_namespace)]
    bulk_create(cp, provider_bodies)
    seconds, writes, requests, errors = timed_pass(bound, app)
    floor_namespace = f"floor-{round_name}"
    app.apply(NAMESPACES, {"metadata": {"name": floor_namespace}})
    floor_started = time.monotonic()
    bulk_create(app, [secret(f"{round_name}-{index}", floor_namespace) for index in range(len(provider_bodies))])
    floor = time.monotonic() - floor_started
    idle_seconds, idle_writes, idle_requests, _errors = timed_pass(bound, app)
    return {"objects": len(provider_bodies), "pass_s": seconds, "writes": writes, "requests": requests,
            "errors": len(errors), "floor_s": floor, "idle_pass_s": idle_seconds, "idle_writes": idle_writes,
            "idle_requests": idle_requests}


def local_agent(app_cluster):
    """The konnector as a local process; a function that stops it."""
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    agent = subprocess.Popen([sys.executable, "-m", "ansible_collections.klutch.bind.plugins.module_utils.agent.cli",
                              "konnector", "--kubeconfig", str(app_cluster.admin_kubeconfig), "--health-port",
                              str(free_port()), "--health-local", "--resync", "30"], env=env, stderr=subprocess.DEVNULL)

    def stop():
        agent.terminate()
        agent.wait(timeout=30)
    return stop


def konnector_role(app_cluster, mode):
    playbook(f"""\
        - hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - ansible.builtin.include_role:
                name: klutch.bind.konnector
              vars:
                konnector_kubeconfig: {app_cluster.admin_kubeconfig}
                konnector_mode: {mode}
                konnector_replicas: 1
        """)


def pod_agent(app_cluster):
    """The konnector as the role's Deployment on the app cluster's node, rolled out; a function that removes it."""
    konnector_role(app_cluster, "deployment")
    return lambda: konnector_role(app_cluster, "none")


def agent_latency(bound, cp, app, namespace, changes, start_agent):
    stop = start_agent()
    try:
        target = f"{bound.namespace}-{namespace}"
        cp.apply(SECRETS, secret("latency", target, "0"), force=True)  # the previous run patched it
        deadline = time.monotonic() + 60
        while (app.get(SECRETS, "latency", namespace) or {}).get("data", {}).get("value") != "MA==" \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        latencies = []
        for change in range(1, changes + 1):
            value = base64.b64encode(str(change).encode()).decode()
            started = time.monotonic()
            cp.write("PATCH", SECRETS, {"metadata": {"name": "latency", "namespace": target},
                                        "data": {"value": value}})
            while True:
                copy = app.get(SECRETS, "latency", namespace)
                if copy and copy["data"]["value"] == value:
                    break
                if time.monotonic() - started > 30:
                    raise SystemExit(f"change {change} did not arrive within 30 s")
                time.sleep(0.01)
            latencies.append(time.monotonic() - started)
        return latencies
    finally:
        stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--objects", default="500,2000")
    parser.add_argument("--namespaces", type=int, default=20)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--pod", action="store_true", help="also measure the konnector as a Pod (the lab gets a node)")
    options = parser.parse_args()
    lab = Lab(Path(tempfile.mkdtemp(prefix="klutch-bench-")) / "lab", progress=lambda line: None)
    lab.up(["bench-cp", "bench-app"], crossplane=(), nodes=["bench-app"] if options.pod else [])
    try:
        cp_cluster, app_cluster = lab.cluster("bench-cp"), lab.cluster("bench-app")
        cp, app = client(cp_cluster), client(app_cluster)
        namespaces = [f"ns-{index:02d}" for index in range(options.namespaces)]
        bound = bind(cp_cluster, app_cluster, cp, app, namespaces)
        rows = [measure(bound, cp, app, int(total), namespaces, f"r{total}") for total in options.objects.split(",")]
        agents = {"local process": lambda: local_agent(app_cluster)}
        if options.pod:
            agents["Pod on a lab node"] = lambda: pod_agent(app_cluster)
        latencies = {name: agent_latency(bound, cp, app, namespaces[0], options.changes, start)
                     for name, start in agents.items()}
    finally:
        lab.down()
    print(f"{'objects':>8} {'pass s':>8} {'writes':>7} {'requests':>9} {'floor s':>8} {'vs floor':>9} "
          f"{'idle pass s':>12} {'idle requests':>14}")
    for row in rows:
        print(f"{row['objects']:>8} {row['pass_s']:>8.2f} {row['writes']:>7} {row['requests']:>9} "
              f"{row['floor_s']:>8.2f} {row['floor_s'] / row['pass_s']:>8.0%} {row['idle_pass_s']:>12.2f} "
              f"{row['idle_requests']:>14}")
    if len(rows) > 1:
        growth = rows[-1]["pass_s"] / rows[0]["pass_s"]
        print(f"growth {rows[0]['objects']} -> {rows[-1]['objects']} objects: {growth:.2f}x (goal: at most 4.5x)")
    print(f"sync throughput vs floor at {rows[-1]['objects']}: {rows[-1]['floor_s'] / rows[-1]['pass_s']:.0%} "
          "(goal: at least 60%)")
    for name, measured in latencies.items():
        quantiles = statistics.quantiles(measured, n=20)
        print(f"agent propagation ({name}) over {len(measured)} changes: p50 {statistics.median(measured) * 1000:.0f} ms, "
              f"p95 {quantiles[18] * 1000:.0f} ms (goal: p95 under 1 s)")


if __name__ == "__main__":
    main()
