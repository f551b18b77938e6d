# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab: N clusters of etcd + kube-apiserver + kube-controller-manager, started and ended together.

Clusters may also get Crossplane (`crossplane.py`) and a node that runs Pods (`node.py`).
"""

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import time
from pathlib import Path

import yaml

from klutch_lab import binaries, images, node, process
from klutch_lab.cluster import Cluster, kubeconfig, write_private
from klutch_lab.crossplane import Crossplane
from klutch_lab.errors import LabError
from klutch_lab.node import Node

DEFAULT_CLUSTERS = ("control-plane", "app")
CROSSPLANE_CLUSTERS = ("control-plane",)
LAB_DIR_ENV = "KLUTCH_LAB_DIR"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager")
CLUSTER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")


def default_lab_dir():
    configured = os.environ.get(LAB_DIR_ENV)
    return Path(configured).expanduser() if configured else binaries.cache_root() / "lab"


class Lab:
    """A lab rooted at a directory; its lab.json records every cluster, port and process."""

    def __init__(self, directory=None, progress=print):
        self.dir = Path(directory) if directory else default_lab_dir()
        self.progress = progress
        self.state = self._load()

    @property
    def state_file(self):
        return self.dir / "lab.json"

    @property
    def kubeconfig(self):
        """One kubeconfig with a context per cluster, named like the cluster."""
        return self.dir / "kubeconfig"

    @property
    def inventory(self):
        return self.dir / "inventory.yml"

    @property
    def clusters(self):
        return {name: Cluster(self.dir, name, record) for name, record in self.state["clusters"].items()}

    def cluster(self, name):
        if name not in self.state["clusters"]:
            known = ", ".join(self.state["clusters"]) or "none"
            raise LabError(f"The lab at {self.dir} has no cluster {name!r} (it has: {known}).")
        return Cluster(self.dir, name, self.state["clusters"][name])

    # -- state ---------------------------------------------------------------------------
    def _load(self):
        if self.dir.exists() and not self.dir.is_dir():
            raise LabError(f"{self.dir} exists and is not a directory: remove it or set {LAB_DIR_ENV} elsewhere.")
        if not self.state_file.exists():
            if self.dir.is_dir() and any(self.dir.iterdir()):
                raise LabError(
                    f"{self.dir} holds files but no lab.json, so it is not a lab this tool can manage. "
                    f"Remove it (rm -rf {self.dir}) or set {LAB_DIR_ENV} to another directory."
                )
            return {"clusters": {}}
        try:
            return json.loads(self.state_file.read_text())
        except ValueError as error:
            raise LabError(
                f"{self.state_file} is not valid JSON ({error}), so the processes it started cannot be "
                f"told apart. Their command lines name the lab directory: end them with `pkill -f {self.dir}/`, "
                f"then remove {self.dir}."
            ) from error

    def _save(self):
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, default=str))
        os.replace(tmp, self.state_file)

    def dead_components(self):
        return [
            (name, component, record)
            for name, cluster in self.clusters.items()
            for component, record in cluster.processes.items()
            if not process.alive(record)
        ]

    # -- up ------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _exclusive(self):
        """One `up` or `down` at a time per lab directory; the state is re-read under the lock."""
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.dir.with_name(self.dir.name + ".lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self.state = self._load()
                yield
            finally:
                if not self.dir.exists():
                    lock_path.unlink()  # a lab that is gone leaves nothing behind, its lock included

    def up(self, names=DEFAULT_CLUSTERS, crossplane=CROSSPLANE_CLUSTERS, nodes=()):
        """Start the named clusters that are not running yet; reuse the ones that are.

        New clusters named in `crossplane` also get Crossplane, provider-kubernetes and a registry;
        new clusters named in `nodes` get a node that runs their Pods.
        """
        with self._exclusive():
            return self._up(names, set(crossplane), set(nodes))

    def _up(self, names, crossplane, nodes):
        names = list(dict.fromkeys(names))
        bad = [name for name in names if not CLUSTER_NAME.match(name)]
        if bad or not names:
            raise LabError(
                f"Invalid cluster names {bad or names}: use lower-case letters, digits and '-', "
                "e.g. --clusters control-plane,app1,app2."
            )
        dead = self.dead_components()
        if dead:
            lines = "\n".join(f"  {name}: {component} (pid {record['pid']}, log {record['log']})"
                              for name, component, record in dead)
            raise LabError(
                f"The lab at {self.dir} is stale: these processes are no longer running:\n{lines}\n"
                "Run `python -m klutch_lab down` to clean it up, then `up` again."
            )
        new = [name for name in names if name not in self.state["clusters"]]
        for name in names:
            if name not in new:
                self.progress(f"[lab] cluster {name} is already running at {self.cluster(name).server}")
        if new:
            found = binaries.ensure_binaries(self.progress)
            builds = None
            if crossplane & set(new):
                Crossplane.check_ports()
                builds = binaries.ensure_crossplane(self.progress)
            with_node = [name for name in new if name in nodes]
            if with_node:
                node.check_prerequisites()
                node.check_socket_paths(self.dir / name for name in with_node)
                node_binaries = binaries.ensure_node(self.progress)
            started = time.monotonic()
            try:
                self._start(new, found, with_node)
                for name in new:
                    if name in crossplane:
                        self._start_crossplane(self.cluster(name), builds)
                if with_node:
                    self._start_nodes(with_node, node_binaries)
            except LabError as error:
                kept = self._keep_logs(new)
                self._remove(new)
                raise LabError(f"{error}\nThe logs of the failed start are kept in {kept}.") from error
            except BaseException:
                self._remove(new)
                raise
            self.progress(f"[lab] started {', '.join(new)} in {time.monotonic() - started:.1f} s")
        self._write_access_files()
        return self

    def _start(self, names, found, with_node):
        self.dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            self.state["clusters"][name] = {}
            if name in with_node:
                # Chosen before the certificates, which name the cluster's `kubernetes` Service IP.
                taken = {c.record["node"]["network"]["slot"] for c in self.clusters.values() if "node" in c.record}
                network = node.allocate_network(taken)
                self.state["clusters"][name] = {"node": {"network": network}, "service_cidr": network["service_cidr"]}
            self._save()
            self.cluster(name).prepare()
            self._save()
        # Start each component on every new cluster before waiting, so the clusters boot in parallel.
        for component in COMPONENTS:
            for name in names:
                cluster = self.cluster(name)
                cluster.start(component, cluster.component_argv(component, found))
                self._save()
            for name in names:
                self.cluster(name).wait_ready(component)

    def _start_crossplane(self, cluster, builds):
        started = time.monotonic()
        crossplane = Crossplane(cluster, builds)
        crossplane.prepare()
        self._save()
        crossplane.install_apis()
        crossplane.start()
        self._save()
        self.progress(f"[lab] Crossplane {binaries.CROSSPLANE_VERSION} on {cluster.name} ready in "
                      f"{time.monotonic() - started:.1f} s; registry {cluster.registry}")

    def _start_nodes(self, names, node_binaries):
        """Nodes for the named clusters: registry with the lab's images, containerd, scheduler, kubelet."""
        nodes = [Node(self.cluster(name), node_binaries) for name in names]
        for each in nodes:
            each.cluster.start_registry(node_binaries["registry"])
            self._save()
            images.push_lab_images(each.mirror, progress=self.progress)
            each.prepare(images.PAUSE_IMAGE)
            self._save()
            each.route_service()
        started = time.monotonic()
        # Each component on every node before waiting, so the nodes start in parallel.
        for component in node.NODE_COMPONENTS:
            for each in nodes:
                each.start(component)
                self._save()
            for each in nodes:
                each.wait_ready(component)
        for each in nodes:
            self.progress(f"[lab] node {each.name} of {each.cluster.name} Ready {time.monotonic() - started:.1f} s after "
                          f"containerd started; its processes use {each.rss_mib():.0f} MiB (RSS)")

    def _keep_logs(self, names):
        """Copy the logs of clusters whose start failed next to the lab, before their state goes."""
        kept = self.dir.with_name(self.dir.name + "-failed-logs")
        for name in names:
            for log in (self.dir / name).glob("*.log"):
                (kept / name).mkdir(parents=True, exist_ok=True)
                shutil.copy2(log, kept / name / log.name)
        return kept

    @property
    def agents_dir(self):
        return self.dir / "agents"

    def _stop_agents(self):
        """SIGTERM every agent that runs from the lab's agents directory (klutch.bind.klutch_agent's layout)."""
        for state in self.agents_dir.glob("*/state.json"):
            pid = json.loads(state.read_text()).get("pid")
            try:
                if pid and os.readlink(f"/proc/{pid}/cwd") == str(state.parent.resolve()):
                    os.kill(pid, signal.SIGTERM)
            except OSError:
                continue  # gone already
            deadline = time.monotonic() + 10
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)

    def _remove(self, names):
        for name in names:
            if name in self.state["clusters"]:
                cluster = self.cluster(name)
                if "node" in cluster.record:
                    Node(cluster).stop()  # in its own order, then what it left on the host
                for record in reversed(list(cluster.processes.values())):
                    process.stop(record)
                shutil.rmtree(cluster.dir, ignore_errors=True)
                del self.state["clusters"][name]
        if self.state["clusters"]:
            self._save()
        else:
            self._stop_agents()
            shutil.rmtree(self.dir, ignore_errors=True)

    def _write_access_files(self):
        clusters = self.clusters
        entries = [cluster.admin_entry() for cluster in clusters.values()]
        write_private(self.kubeconfig, yaml.safe_dump(kubeconfig(entries, entries[0].context)))
        write_private(self.inventory, yaml.safe_dump(self.inventory_data(), sort_keys=False))

    def inventory_data(self):
        """An Ansible inventory: the first cluster as control_plane, the others as app_clusters."""
        names = list(self.state["clusters"])

        def host(name):
            # Modules run on the controller, in the Python that has the collection's requirements.
            cluster = self.cluster(name)
            variables = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                         "kubeconfig": str(cluster.admin_kubeconfig),
                         # Agents that the roles run as local processes live with the lab and stop with it.
                         "konnector_run_dir": str(self.agents_dir),
                         "control_plane_backend_run_dir": str(self.agents_dir)}
            # With a node, the agents run as Deployments, as on any cluster; without one, as local
            # processes (a Deployment would be applied but never roll out).
            with_node = "node" in cluster.record
            variables.update(konnector_mode="deployment" if with_node else "local",
                             control_plane_backend="deployment" if with_node else "local",
                             konnector_rollout_wait=with_node, control_plane_backend_rollout_wait=with_node)
            if name == names[0] and any("node" in self.cluster(other).record for other in names[1:]):
                # Konnectors in Pods reach the control plane at the host's address, not at 127.0.0.1.
                variables["klutch_external_address"] = cluster.pod_reachable_server
            if "crossplane" in cluster.record:
                variables["crossplane_registry"] = cluster.registry
                variables["crossplane_crank"] = str(binaries.crank_path())
            return variables

        return {"all": {"children": {
            "control_plane": {"hosts": {names[0]: host(names[0])}},
            "app_clusters": {"hosts": {name: host(name) for name in names[1:]}},
        }}}

    # -- down / status ---------------------------------------------------------------------
    def restart(self, name, component="kube-apiserver", downtime=0.0):
        """Stop one built-in component of a cluster, wait `downtime` seconds, start it as before (fault tests)."""
        with self._exclusive():
            cluster = self.cluster(name)
            record = cluster.processes[component]
            process.stop(record)
            time.sleep(downtime)
            cluster.start(component, record["argv"])
            self._save()
            cluster.wait_ready(component)

    def down(self, names=None):
        """Stop exactly the processes this lab recorded and remove their state: all, or the named clusters."""
        with self._exclusive():
            if not self.state_file.exists():
                self.progress(f"[lab] no lab at {self.dir}; nothing to stop")
                return
            names = list(self.state["clusters"]) if names is None else [n for n in names if n in self.state["clusters"]]
            self._remove(names)  # removes the whole directory once no cluster is left
            if self.state["clusters"]:
                self._write_access_files()
            self.progress(f"[lab] stopped {', '.join(names) or 'nothing'}"
                          + ("" if self.state["clusters"] else f" and removed {self.dir}"))

    def status_lines(self):
        if not self.state["clusters"]:
            return [f"no lab at {self.dir}"]
        lines = [f"lab at {self.dir} (kubeconfig {self.kubeconfig}, inventory {self.inventory})"]
        for name, cluster in self.clusters.items():
            lines.append(f"{name}: {cluster.server}  kubeconfig {cluster.admin_kubeconfig}")
            for component, record in cluster.processes.items():
                if process.alive(record):
                    lines.append(f"  {component:<24} pid {record['pid']:<8} running")
                else:
                    lines.append(f"  {component:<24} pid {record['pid']:<8} NOT RUNNING; last lines of {record['log']}:")
                    lines.extend("    " + line for line in process.log_tail(record, 10).splitlines())
            if "crossplane" in cluster.record:
                lines.append(f"  crossplane registry: {cluster.registry}")
            if "node" in cluster.record:
                each = Node(cluster)
                network = cluster.record["node"]["network"]
                lines.append(f"  node {each.name}: bridge {network['bridge']}, Pods {network['pod_subnet']}, "
                             f"Services {network['service_cidr']}, processes {each.rss_mib():.0f} MiB (RSS)")
            if cluster.pod_reachable_server:
                lines.append(f"  API server for Pods: {cluster.pod_reachable_server}")
        return lines
