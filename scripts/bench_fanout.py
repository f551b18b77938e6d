# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fan-out benchmark of playbooks/bind_app_cluster.yml on a lab of its own; prints a table.

    .venv/bin/python scripts/bench_fanout.py [--clusters 10] [--forks 10]

On one control plane with a published API (MangoDB) it times, in the same run:
  one     bind_app_cluster.yml for 1 new app cluster
  fan     bind_app_cluster.yml for N new app clusters in one run (goal: at most 3x `one`)
  rerun   the same N again (changed=0)
  k8s     a kubernetes.core.k8s playbook that applies the objects `fan` left on the N app clusters
          and on the control plane, precomputed, to the same clusters made new again (goal: `fan`
          no slower). It is that playbook at its fastest: one k8s task per batch of objects
          (the namespaces, the CRDs, the rest; on each cluster), not one task per object.
Both playbooks get the same forks. Each row also shows the CPU time of ansible-playbook (with its
workers and modules) and of the lab's clusters, which share the machine. Not a test: it asserts
nothing, it measures.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
COLLECTIONS = ROOT / ".venv" / "collections"
sys.path[:0] = [str(ROOT), str(COLLECTIONS)]

# pylint: disable=wrong-import-position
from ansible_collections.klutch.bind.plugins.module_utils import kinds
from ansible_collections.klutch.bind.plugins.module_utils.k8s import resources as r
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from klutch_lab import Lab  # noqa: E402

MANGODB_CRD = ROOT / "tests" / "integration" / "files" / "mangodb-crd.yaml"
DEPLOYMENTS = r.Resource("apps/v1", "Deployment", "deployments")
# What bind_app_cluster.yml writes on an app cluster, and for each consumer on the control plane.
APP_KINDS = [r.NAMESPACES, r.CUSTOM_RESOURCE_DEFINITIONS, r.SERVICE_ACCOUNTS, r.SECRETS, r.ROLES, r.ROLE_BINDINGS,
             r.CLUSTER_ROLES, r.CLUSTER_ROLE_BINDINGS, DEPLOYMENTS, kinds.API_SERVICE_BINDINGS]
CONTROL_PLANE_KINDS = [r.NAMESPACES, r.SERVICE_ACCOUNTS, r.SECRETS, r.ROLES, r.ROLE_BINDINGS, r.CLUSTER_ROLES,
                       r.CLUSTER_ROLE_BINDINGS, kinds.CLUSTER_BINDINGS, kinds.API_SERVICE_EXPORT_REQUESTS,
                       kinds.API_SERVICE_EXPORTS]
SERVER_FIELDS = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink")


def client(cluster):
    return ClusterClient.from_params({"kubeconfig": str(cluster.admin_kubeconfig)}, environ={})


def host(cluster, **variables):
    return dict({"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                 "kubeconfig": str(cluster.admin_kubeconfig)}, **variables)


def cpu_seconds(pids):
    """User and system CPU time of these processes so far (clock ticks from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Run:
    """Wall time, the CPU of ansible-playbook with its workers and modules, and the clusters' CPU."""

    def __init__(self, lab):
        self.cluster_pids = [record["pid"] for cluster in lab.clusters.values()
                             for record in cluster.processes.values()]
        self.wall = self.controller = self.clusters = 0.0

    def __call__(self, path, inventory, *args):
        """Runs ansible-playbook; returns the recap's changed count over all hosts."""
        clusters_before = cpu_seconds(self.cluster_pids)
        children_before = os.times()
        started = time.monotonic()
        changed = playbook(path, inventory, *args)
        self.wall = time.monotonic() - started
        children = os.times()
        self.controller = (children.children_user - children_before.children_user
                           + children.children_system - children_before.children_system)
        self.clusters = cpu_seconds(self.cluster_pids) - clusters_before
        return changed


def playbook(path, inventory, *args):
    """Runs ansible-playbook; returns the recap's changed count over all hosts."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS), ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    done = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(path), *args],
                          env=env, capture_output=True, text=True, check=False)
    report = json.loads(done.stdout[done.stdout.index("{"):])
    if done.returncode:
        failures = [f"{name}: {result.get('msg')}" for play in report["plays"] for task in play["tasks"]
                    for name, result in task["hosts"].items() if result.get("failed")]
        sys.exit(f"{path} failed:\n" + "\n".join(failures[:5]) + done.stderr[-2000:])
    return sum(host_stats["changed"] for host_stats in report["stats"].values())


def created_since(cluster_client, kinds, since, namespaces=None):
    """Every object of these kinds made since `since` (an RFC 3339 time), as one would apply it again.

    Creation time, not field ownership: a Namespace or ServiceAccount applied with nothing but its
    name has no managed fields. The defaults that Kubernetes adds to each new namespace are left out.
    """
    found = []
    for kind in kinds:
        scopes = namespaces if kind.namespaced and namespaces is not None else [None]
        for namespace in scopes:
            for obj in cluster_client.list(kind, namespace=namespace)[0]:
                metadata = obj["metadata"]
                if metadata["creationTimestamp"] < since or metadata["name"] in ("default", "kube-root-ca.crt"):
                    continue
                obj.pop("status", None)
                obj["metadata"] = {key: value for key, value in metadata.items() if key not in SERVER_FIELDS}
                found.append(obj)
    return found


def consumer_namespaces(cp_client, consumers):
    names = []
    for namespace in cp_client.list(r.NAMESPACES)[0]:
        identity = (namespace["metadata"].get("annotations") or {}).get("example-backend.klutch.anynines.com/identity")
        if identity and identity.split("#")[0] in consumers:
            names.append(namespace["metadata"]["name"])
    return names


K8S_PLAYBOOK = """\
- name: Apply the precomputed objects of bind_app_cluster.yml with kubernetes.core.k8s
  hosts: fan
  gather_facts: false
  tasks:
    - name: Apply each batch, in order
      kubernetes.core.k8s:
        kubeconfig: "{{ item.kubeconfig }}"
        definition: "{{ item.objects }}"
        wait: "{{ item.wait }}"
        wait_condition: {type: Established}
        wait_sleep: 1
      loop:
        - {kubeconfig: "{{ kubeconfig }}", wait: false, objects: "{{ app_objects | selectattr('kind', 'eq', 'Namespace') | list }}"}
        - {kubeconfig: "{{ kubeconfig }}", wait: true,
           objects: "{{ app_objects | selectattr('kind', 'eq', 'CustomResourceDefinition') | list }}"}
        - {kubeconfig: "{{ kubeconfig }}", wait: false,
           objects: "{{ app_objects | rejectattr('kind', 'in', ['Namespace', 'CustomResourceDefinition']) | list }}"}
        - {kubeconfig: "{{ cp_kubeconfig }}", wait: false, objects: "{{ cp_objects | selectattr('kind', 'eq', 'Namespace') | list }}"}
        - {kubeconfig: "{{ cp_kubeconfig }}", wait: false, objects: "{{ cp_objects | rejectattr('kind', 'eq', 'Namespace') | list }}"}
      loop_control:
        label: "{{ item.objects | length }} objects"
      when: item.objects | length > 0
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10)
    parser.add_argument("--forks", type=int, default=10)
    args = parser.parse_args()
    fan = [f"fan{index}" for index in range(1, args.clusters + 1)]
    work = Path(tempfile.mkdtemp(prefix="klutch-bench-fanout-"))
    lab = Lab(work / "lab", progress=lambda line: None)
    try:
        started = time.monotonic()
        lab.up(["control-plane", "one", *fan], crossplane=[])
        print(f"lab: control plane and {1 + len(fan)} app clusters up in {time.monotonic() - started:.1f} s")
        cp = lab.cluster("control-plane")
        inventory = work / "inventory.yml"
        inventory.write_text(yaml.safe_dump({"all": {"children": {
            "control_plane": {"hosts": {"control-plane": host(cp, control_plane_backend="deployment", control_plane_templates=[
                {"name": "mangodbs", "group": "mangodb.com", "resource": "mangodbs"}],
                control_plane_backend_rollout_wait=False)}},  # the lab has no node: nothing rolls out
            "app_clusters": {"vars": {"konnector_mode": "deployment", "konnector_rollout_wait": False,
                                      "klutch_services": [{"group": "mangodb.com", "resource": "mangodbs"}]},
                             "hosts": {name: host(lab.cluster(name)) for name in ["one", *fan]}},
            "fan": {"hosts": {name: {} for name in fan}}}}}))
        subprocess.run([sys.executable, "-m", "klutch_lab", "--dir", str(lab.dir), "status"], check=True,
                       capture_output=True)
        cp_client = client(cp)
        cp_client.apply(r.CUSTOM_RESOURCE_DEFINITIONS, yaml.safe_load(MANGODB_CRD.read_text()))
        bind = ROOT / "playbooks" / "bind_app_cluster.yml"
        forks = f"--forks={args.forks}"
        playbook(ROOT / "playbooks" / "publish_service.yml", inventory, forks)  # the control plane, once

        fan_limit = ",".join(["control-plane", *fan])
        # What the runs make from here on, on the fan clusters and for them on the control plane.
        fan_started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        rows = []
        for label, limit in (("one: 1 app cluster", "control-plane,one"),
                             (f"fan: {len(fan)} app clusters, forks {args.forks}", fan_limit),
                             ("rerun of fan", fan_limit)):
            run = Run(lab)
            changed = run(bind, inventory, forks, "--limit", limit)
            rows.append((label if not label.startswith("rerun") else f"{label} (changed={changed})", run))
            print(f"{rows[-1][0]}: {run.wall:.1f} s")

        # The same final objects, precomputed, onto the same clusters made new.
        app_objects = {name: created_since(client(lab.cluster(name)), APP_KINDS, fan_started) for name in fan}
        namespaces = {name: consumer_namespaces(cp_client, [name]) for name in fan}
        cp_objects = {name: [obj for obj in created_since(cp_client, CONTROL_PLANE_KINDS, fan_started, namespaces[name])
                             if obj["metadata"].get("namespace")
                             or any(namespace in obj["metadata"]["name"] for namespace in namespaces[name])]
                      for name in fan}
        objects = sum(len(found) for found in app_objects.values()) + sum(len(found) for found in cp_objects.values())
        print(f"{objects} objects to apply with kubernetes.core")
        for found in cp_objects.values():
            for obj in reversed(found):
                cp_client.delete(next(kind for kind in CONTROL_PLANE_KINDS if kind.kind == obj["kind"]),
                                 obj["metadata"]["name"], obj["metadata"].get("namespace"))
        for name in [name for found in namespaces.values() for name in found]:
            while cp_client.get(r.NAMESPACES, name) is not None:
                time.sleep(0.5)
        lab.down(fan)
        lab.up(["control-plane", "one", *fan], crossplane=[])
        k8s_inventory = work / "k8s-inventory.yml"
        k8s_inventory.write_text(yaml.safe_dump({"all": {"children": {"fan": {"hosts": {
            name: host(lab.cluster(name), cp_kubeconfig=str(cp.admin_kubeconfig), app_objects=app_objects[name],
                       cp_objects=cp_objects[name]) for name in fan}}}}}))
        k8s_playbook = work / "k8s-apply.yml"
        k8s_playbook.write_text(K8S_PLAYBOOK)
        k8s = Run(lab)
        k8s(k8s_playbook, k8s_inventory, forks)
        rows.append(("k8s: kubernetes.core.k8s, the same objects", k8s))

        one, many = rows[0][1].wall, rows[1][1].wall
        print(f"\n{'run':<44}{'seconds':>9}{'x one':>8}{'CPU s: controller':>19}{'clusters':>10}")
        for label, run in rows:
            print(f"{label:<44}{run.wall:>9.1f}{run.wall / one:>8.2f}{run.controller:>19.1f}{run.clusters:>10.1f}")
        print(f"\nfan / one = {many / one:.2f} (goal: at most 3.00); fan / k8s = {many / k8s.wall:.2f} (goal: at most 1.00)")
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)  # its inventories hold the clusters' tokens


if __name__ == "__main__":
    main()
