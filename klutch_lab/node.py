# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A node for a lab cluster: containerd, kubelet and kube-scheduler as processes, Pods on a CNI bridge.

Everything a node writes lives under `<cluster dir>/node`: containerd's root, state and socket, the
kubelet's root and certificate directories, the CNI configuration and IP allocations, Pod logs.
Each node has a slot number that names its bridge, Pod subnet and Service range, so nodes of
several clusters (and labs) share one machine. The `kubernetes` Service is a DNAT rule of the
lab's own in a chain per node (see `service_rules`), not kube-proxy: kube-proxies of two clusters
on one host would fight over the same fixed chains.
"""

import ctypes
import ctypes.util
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import yaml

from klutch_lab import process
from klutch_lab.cluster import free_port, host_address
from klutch_lab.errors import LabError

NODE_COMPONENTS = ("containerd", "kube-scheduler", "kubelet")
CRI_NAMESPACE = "k8s.io"
SLOTS = range(1, 251)
# Prefixes of the addresses a node's Pods and Services get, completed by the slot: 10.244.<slot>.0/24.
POD_NETWORK = "10.244"
SERVICE_NETWORK = "10.96"
WITHOUT_NODES = "start the lab without nodes (leave out --nodes)"
# Debian packages of the host tools a node uses at run time.
HOST_TOOLS = {"iptables": "iptables", "iptables-save": "iptables", "ip": "iproute2"}
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21
# The longest Unix socket path Linux takes, and the longest one a node makes below its kubelet's root.
UNIX_SOCKET_PATH_MAX = 107
KUBELET_SOCKET = "pod-resources/1234567890"
MNT_DETACH = 2
# The kubelet links every container's log here, a path it does not let move.
CONTAINER_LOG_LINKS = Path("/var/log/containers")
# containerd-shim-runc-v2 listens here and keeps runc's state here, paths it does not let move either.
SHIM_SOCKET_DIR = Path("/run/containerd/s")
RUNC_STATE_DIR = Path("/run/containerd/runc") / CRI_NAMESPACE
# containerd puts each task's cgroup below this one in every hierarchy.
CGROUP_PARENT = CRI_NAMESPACE


def network_for(slot):
    """The names and address ranges of the node in `slot`; `marker` tags every iptables rule it owns."""
    return {"slot": slot, "bridge": f"klutch-lab-{slot}", "marker": f"klutch-lab-{slot}-net",
            "chain": f"KLUTCH-LAB-{slot}-SVC", "pod_subnet": f"{POD_NETWORK}.{slot}.0/24",
            "service_cidr": f"{SERVICE_NETWORK}.{slot}.0/24", "service_ip": f"{SERVICE_NETWORK}.{slot}.1"}


def allocate_network(taken):
    """The network of a free slot: not in `taken` (this lab's) and with no bridge or route of another lab."""
    links = {link["ifname"] for link in _ip_json("link")}
    routes = {route.get("dst") for route in _ip_json("route")}
    for slot in SLOTS:
        network = network_for(slot)
        if slot in taken or network["bridge"] in links or network["pod_subnet"] in routes:
            continue
        return network
    raise LabError(f"All {len(SLOTS)} node slots are taken by bridges klutch-lab-N: stop other labs "
                   f"(`python -m klutch_lab down`) or {WITHOUT_NODES}.")


def _ip_json(*args):
    """`ip -j` output, or [] where iproute2 is missing (check_prerequisites names it)."""
    try:
        result = subprocess.run(["ip", "-j"] + list(args), capture_output=True, text=True, check=False)
    except OSError:
        return []
    return json.loads(result.stdout or "[]") if result.returncode == 0 else []


def check_prerequisites():
    """Fail before anything starts when this machine cannot run a node, naming the fix."""
    problems = []
    missing = sorted({package for tool, package in HOST_TOOLS.items() if not shutil.which(tool)})
    if missing:
        problems.append(f"the Debian packages {', '.join(missing)} are missing (apt-get install {' '.join(missing)}; "
                        "scripts/setup.sh installs them)")
    capabilities = _effective_capabilities()
    if os.geteuid() != 0 or not capabilities & (1 << CAP_NET_ADMIN) or not capabilities & (1 << CAP_SYS_ADMIN):
        problems.append("a node needs root with CAP_NET_ADMIN and CAP_SYS_ADMIN (bridges, iptables, mounts); "
                        "run the lab as root outside a restricted container")
    if "overlay" not in Path("/proc/filesystems").read_text().split():
        problems.append("the kernel has no overlayfs, which containerd unpacks images onto (modprobe overlay)")
    if not _has_cgroups():
        problems.append("no cgroup hierarchy with the memory and cpu controllers is mounted under /sys/fs/cgroup")
    if not missing and host_address() is None:
        problems.append("it has no non-loopback IPv4 address, by which Pods would reach the API servers")
    if problems:
        raise LabError("This machine cannot run a lab node: " + "; ".join(problems)
                       + f". Fix that, or {WITHOUT_NODES}.")


def check_socket_paths(cluster_dirs):
    """Fail before anything starts when the node directories are too deep for the kubelet's sockets."""
    too_long = [str(directory) for directory in cluster_dirs
                if len(str(node_dir(directory) / "kubelet" / KUBELET_SOCKET)) > UNIX_SOCKET_PATH_MAX]
    if too_long:
        room = UNIX_SOCKET_PATH_MAX - len(str(Path("node") / "kubelet" / KUBELET_SOCKET)) - 1
        raise LabError(f"The kubelet makes Unix sockets below {', '.join(too_long)}, and Linux takes socket paths of "
                       f"at most {UNIX_SOCKET_PATH_MAX} characters: give the lab a directory whose cluster directories "
                       f"have at most {room} characters (--dir or KLUTCH_LAB_DIR), or {WITHOUT_NODES}.")


def node_dir(cluster_dir):
    return Path(cluster_dir) / "node"


def _effective_capabilities():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def _has_cgroups():
    root = Path("/sys/fs/cgroup")
    unified = root / "cgroup.controllers"
    if unified.is_file():
        return {"memory", "cpu"} <= set(unified.read_text().split())
    return (root / "memory").is_dir() and (root / "cpu").is_dir()


# -- configuration (pure: unit-tested) ---------------------------------------------------
def _toml(value):
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def containerd_config(paths, runc, sandbox_image):
    """containerd's configuration: every path in the node directory, CRI wired to the lab's CNI and mirrors."""
    runtime = '[plugins."io.containerd.cri.v1.runtime"'
    images = '[plugins."io.containerd.cri.v1.images"'
    return f"""version = 3
root = {_toml(paths['containerd_root'])}
state = {_toml(paths['containerd_state'])}

[grpc]
  address = {_toml(paths['socket'])}

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml(paths['opt'])}

# Its socket has a fixed default path that the node of another cluster would share.
[plugins."io.containerd.nri.v1.nri"]
  disable = true

{runtime}]
  # Raising a container's OOM score needs CAP_SYS_RESOURCE, which a lab's root may lack.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true

{runtime}.cni]
  bin_dirs = [{_toml(paths['cni_bin'])}]
  conf_dir = {_toml(paths['cni_conf'])}

{runtime}.containerd]
  default_runtime_name = "runc"

{runtime}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{runtime}.containerd.runtimes.runc.options]
  BinaryName = {_toml(runc)}
  SystemdCgroup = false

{images}.pinned_images]
  sandbox = {_toml(sandbox_image)}

{images}.registry]
  config_path = {_toml(paths['registry_hosts'])}
"""


MIRRORED_REGISTRIES = {"docker.io": "https://registry-1.docker.io", "registry.k8s.io": "https://registry.k8s.io"}


def registry_hosts(mirror):
    """{registry: hosts.toml}: pulls of public names go to the lab's registry over plain HTTP, and nowhere else."""
    return {
        name: f"""server = {_toml(upstream)}

[host.{_toml('http://' + mirror)}]
  capabilities = ["pull", "resolve"]
"""
        for name, upstream in MIRRORED_REGISTRIES.items()
    }


def cni_conflist(network, ipam_dir):
    """Pods on the node's own bridge and subnet, masqueraded to the outside, with host ports."""
    return {
        "cniVersion": "1.0.0",
        "name": network["marker"],
        "plugins": [
            {"type": "bridge", "bridge": network["bridge"], "isGateway": True, "ipMasq": True,
             "ipMasqBackend": "iptables", "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(ipam_dir), "ranges": [[{"subnet": network["pod_subnet"]}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "backend": "iptables", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(paths, ports, client_ca):
    """A kubelet that runs on cgroup v1 or v2 without systemd, swap checks or QoS cgroups, on its own ports."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": "unix://" + str(paths["socket"]),
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        "failCgroupV1": False,
        # QoS cgroups and node allocatable enforcement want the whole cgroup tree, which a lab may not own.
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        "port": ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports["kubelet_healthz"],
        # The API server's logs and exec calls come with its kubelet client certificate.
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(client_ca)}},
        "authorization": {"mode": "AlwaysAllow"},
        "podLogsDir": str(paths["pod_logs"]),
        "volumePluginDir": str(paths["volume_plugins"]),
        "serializeImagePulls": False,
        # A developer's disk is fuller than a server's: evict only when it is nearly full.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "imageGCHighThresholdPercent": 99,
        "imageGCLowThresholdPercent": 98,
    }


def service_rules(network, apiserver):
    """iptables arguments (nat table) that send the node's Pods from the `kubernetes` Service to the API server."""
    chain = network["chain"]
    return [
        ["-N", chain],
        ["-A", chain, "-s", network["pod_subnet"], "-d", network["service_ip"] + "/32", "-p", "tcp", "--dport", "443",
         "-j", "DNAT", "--to-destination", apiserver],
        ["-A", "PREROUTING", "-m", "comment", "--comment", network["marker"] + " kubernetes Service", "-j", chain],
    ]


def rules_to_remove(dump, marker):
    """From an iptables-save dump of one table: (rules to delete, chains to flush and delete) a node owns.

    A node's rules carry its marker in a comment (CNI's name, the lab's Service rule); the chains they
    jump to or live in are the node's too (CNI's per-container chains, the lab's Service chain).
    """
    declared = {line[1:].split()[0] for line in dump.splitlines() if line.startswith(":")}
    builtin = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
    rules = [shlex.split(line)[1:] for line in dump.splitlines() if line.startswith("-A ")]
    ours = [rule for rule in rules if any(marker in word for word in rule)]
    chains = set()
    for rule in ours:
        if rule[0] not in builtin:
            chains.add(rule[0])
        if "-j" in rule and rule[rule.index("-j") + 1] in declared - builtin:
            chains.add(rule[rule.index("-j") + 1])
    return ours, sorted(chains)


def shim_socket(containerd_socket, task_id):
    """Where containerd-shim-runc-v2 puts the socket of a task (its own naming, pkg/shim CreateSocketAddress)."""
    digest = hashlib.sha256(os.path.join(containerd_socket, CRI_NAMESPACE, task_id).encode()).hexdigest()
    return SHIM_SOCKET_DIR / digest


# -- processes on the host -----------------------------------------------------------------
def _all_processes():
    """{pid: (parent pid, argv)} of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        found[int(entry.name)] = (int(stat[stat.rindex(")") + 2:].split()[1]), argv)
    return found


def _descendants(roots, table):
    children = {}
    for pid, (parent, _argv) in table.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_and_wait(pids, timeout=10.0):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(process.start_time(pid) is not None for pid in pids):
        for pid in pids:
            process.reap(pid)
        time.sleep(0.05)


def _rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _mount_points():
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # mountinfo escapes space, tab, newline and backslash as octal.
        points.append(re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), line.split()[4]))
    return points


def _unmount_under(directory):
    """Detach every mount below `directory`, deepest first (emptyDir tmpfs, projected tokens, overlays, netns)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    prefix = str(directory).rstrip("/") + "/"
    for _round in range(5):
        points = sorted({point for point in _mount_points() if point.startswith(prefix)},
                        key=lambda point: point.count("/"), reverse=True)
        if not points:
            return []
        for point in points:
            libc.umount2(point.encode(), MNT_DETACH)
    return [point for point in _mount_points() if point.startswith(prefix)]


def _remove_empty_dir(path):
    try:
        path.rmdir()
    except OSError:
        pass  # not there, or still used


def _run(argv):
    return subprocess.run([str(arg) for arg in argv], capture_output=True, text=True, check=False)


class Node:
    """The node of one lab cluster; its record (ports, network, paths) lives in the cluster's."""

    def __init__(self, cluster, binaries=None):
        self.cluster = cluster
        self.binaries = binaries

    @property
    def record(self):
        return self.cluster.record["node"]

    @property
    def name(self):
        return f"{self.cluster.name}-node"

    @property
    def dir(self):
        return node_dir(self.cluster.dir)

    @property
    def mirror(self):
        """The cluster's registry as containerd's mirror for docker.io and registry.k8s.io."""
        return f"127.0.0.1:{self.cluster.record['ports']['registry']}"

    @property
    def paths(self):
        directory = self.dir
        return {
            "containerd_root": directory / "containerd", "containerd_state": directory / "containerd-state",
            "socket": directory / "containerd.sock", "opt": directory / "containerd-opt",
            "cni_bin": self.record.get("cni_bin", ""), "cni_conf": directory / "cni", "ipam": directory / "cni-ipam",
            "registry_hosts": directory / "registry-hosts", "kubelet_root": directory / "kubelet",
            "kubelet_certs": directory / "kubelet-pki", "pod_logs": directory / "pod-logs",
            "volume_plugins": directory / "volume-plugins",
        }

    # -- preparation --------------------------------------------------------------------------
    def prepare(self, sandbox_image):
        """Write the configuration of containerd, CNI, kubelet and kube-scheduler; mint their identities."""
        cluster = self.cluster
        self.record["cni_bin"] = str(self.binaries["cni-plugins"])
        self.record["ports"] = {"kubelet": free_port(), "kubelet_healthz": free_port(), "scheduler": free_port()}
        paths = self.paths
        for key in ("containerd_root", "containerd_state", "opt", "cni_conf", "ipam", "kubelet_root",
                    "kubelet_certs", "pod_logs", "volume_plugins"):
            paths[key].mkdir(parents=True, exist_ok=True)
        (self.dir / "containerd.toml").write_text(
            containerd_config(paths, self.binaries["runc"], sandbox_image))
        for registry, text in registry_hosts(self.mirror).items():
            (paths["registry_hosts"] / registry).mkdir(parents=True, exist_ok=True)
            (paths["registry_hosts"] / registry / "hosts.toml").write_text(text)
        (paths["cni_conf"] / "10-klutch-lab.conflist").write_text(
            json.dumps(cni_conflist(self.record["network"], paths["ipam"]), indent=2))
        (self.dir / "kubelet.yaml").write_text(yaml.safe_dump(
            kubelet_config(paths, self.record["ports"], cluster.pki_dir / "client-ca.crt")))
        self.record["kubeconfigs"] = {
            "kubelet": str(cluster.mint_identity(f"system:node:{self.name}", ["system:nodes"])),
            "kube-scheduler": str(cluster.mint_identity("system:kube-scheduler")),
        }

    def argv(self, component):
        paths = self.paths
        if component == "containerd":
            return [self.binaries["containerd"], "--config", self.dir / "containerd.toml"]
        if component == "kube-scheduler":
            return [self.binaries["kube-scheduler"], "--kubeconfig", self.record["kubeconfigs"]["kube-scheduler"],
                    "--authentication-kubeconfig", self.record["kubeconfigs"]["kube-scheduler"],
                    "--authorization-kubeconfig", self.record["kubeconfigs"]["kube-scheduler"],
                    "--leader-elect=false", "--bind-address", "127.0.0.1",
                    "--secure-port", self.record["ports"]["scheduler"]]
        if component == "kubelet":
            return [self.binaries["kubelet"], "--config", self.dir / "kubelet.yaml",
                    "--kubeconfig", self.record["kubeconfigs"]["kubelet"], "--hostname-override", self.name,
                    "--node-ip", self.cluster.record["host_address"], "--root-dir", paths["kubelet_root"],
                    "--cert-dir", paths["kubelet_certs"]]
        raise ValueError(component)

    def env(self):
        # The shim and CNI plugins find runc's helpers and iptables through PATH.
        return dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")

    def is_ready(self, component):
        if component == "containerd":
            return _run([self.binaries["ctr"], "--address", self.paths["socket"], "version"]).returncode == 0
        if component == "kube-scheduler":
            return self.cluster.http_status(self.record["ports"]["scheduler"], "/healthz", tls=True) == 200
        if component == "kubelet":
            status, node = self.cluster.request("GET", "/api/v1/nodes/" + self.name)
            conditions = (node.get("status") or {}).get("conditions") or [] if status == 200 else []
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
        raise ValueError(component)

    def start(self, component):
        self.cluster.start(component, self.argv(component), env=self.env())

    def wait_ready(self, component, timeout=90.0):
        self.cluster.wait_ready(component, timeout=timeout, ready=lambda: self.is_ready(component))

    def route_service(self):
        """The `kubernetes` Service's ClusterIP:443, DNATed to the API server for this node's Pods."""
        host, port = self.cluster.pod_reachable_server[len("https://"):].rsplit(":", 1)
        for rule in service_rules(self.record["network"], f"{host}:{port}"):
            result = _run(["iptables", "-w", "-t", "nat"] + rule)
            if result.returncode != 0:
                raise LabError(f"iptables {' '.join(rule)} failed: {result.stderr.strip()}. Check that iptables works "
                               f"(`iptables -t nat -L`), or {WITHOUT_NODES}.")

    # -- what runs --------------------------------------------------------------------------
    def _shims(self, table):
        socket = str(self.paths["socket"])
        return [pid for pid, (_parent, argv) in table.items()
                if argv and argv[0].endswith("containerd-shim-runc-v2") and socket in argv]

    def pids(self):
        """Every process of the node: kubelet, scheduler, containerd, the shims and the containers under them."""
        table = _all_processes()
        records = [self.cluster.processes[name] for name in NODE_COMPONENTS if name in self.cluster.processes]
        shims = self._shims(table)
        return [record["pid"] for record in records if process.alive(record)] + shims + _descendants(shims, table)

    def rss_mib(self):
        return sum(_rss_kib(pid) for pid in self.pids()) / 1024

    # -- stop -------------------------------------------------------------------------------
    def stop(self):
        """Stop the node and undo what it did to the host: mounts, bridge, iptables rules, links, sockets.

        Works from the record alone, so it also cleans up after a lab whose owner was killed.
        """
        processes = self.cluster.processes
        for name in ("kubelet", "kube-scheduler"):
            if name in processes:
                process.stop(processes[name])
        table = _all_processes()
        shims = self._shims(table)
        _kill_and_wait(_descendants(shims, table))
        if "containerd" in processes:
            process.stop(processes["containerd"])
        _kill_and_wait(shims)
        self._remove_task_leftovers()
        left = _unmount_under(self.dir)
        if left:
            raise LabError(f"Could not unmount {', '.join(left)}: unmount them by hand (umount -l), then run `down` again.")
        network = self.record.get("network")
        if network:
            if any(link["ifname"] == network["bridge"] for link in _ip_json("link")):
                _run(["ip", "link", "delete", network["bridge"]])
            self._remove_iptables(network["marker"])
        self._remove_log_links()

    def _remove_task_leftovers(self):
        """What the shims and runc of this node's tasks keep outside the node directory, when killed."""
        tasks = self.paths["containerd_state"] / "io.containerd.runtime.v2.task" / CRI_NAMESPACE
        task_ids = [task.name for task in tasks.iterdir()] if tasks.is_dir() else []
        for task_id in task_ids:
            shim_socket(str(self.paths["socket"]), task_id).unlink(missing_ok=True)
            shutil.rmtree(RUNC_STATE_DIR / task_id, ignore_errors=True)
        # cgroup v1 has one hierarchy per controller, v2 just one.
        for parent in list(Path("/sys/fs/cgroup").glob("*/" + CGROUP_PARENT)) + [Path("/sys/fs/cgroup") / CGROUP_PARENT]:
            for task_id in task_ids:
                _remove_empty_dir(parent / task_id)
            _remove_empty_dir(parent)  # shared by the nodes of other labs: only once they are gone too
        for shared in (RUNC_STATE_DIR, RUNC_STATE_DIR.parent, SHIM_SOCKET_DIR, SHIM_SOCKET_DIR.parent):
            _remove_empty_dir(shared)

    @staticmethod
    def _remove_iptables(marker):
        for table in ("nat", "filter", "mangle"):
            dump = _run(["iptables-save", "-t", table])
            if dump.returncode != 0:
                continue
            rules, chains = rules_to_remove(dump.stdout, marker)
            for rule in rules:
                _run(["iptables", "-w", "-t", table, "-D"] + rule)
            for chain in chains:
                _run(["iptables", "-w", "-t", table, "-F", chain])
                _run(["iptables", "-w", "-t", table, "-X", chain])

    def _remove_log_links(self):
        if not CONTAINER_LOG_LINKS.is_dir():
            return
        pod_logs = str(self.paths["pod_logs"]) + "/"
        for link in CONTAINER_LOG_LINKS.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(pod_logs):
                link.unlink()
