# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One lab cluster: its files, its processes, a tiny HTTPS client and identity minting."""

import base64
import collections
import http.client
import json
import random
import socket
import ssl
import subprocess
import time
from pathlib import Path

import yaml

from klutch_lab import pki, process
from klutch_lab.errors import LabError

ADMIN_USER = "klutch-lab-admin"
CONTROLLER_MANAGER_USER = "klutch-lab-controller-manager"
CONTROLLERS = (
    "namespace-controller",
    "garbage-collector-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "clusterrole-aggregation-controller",
    "root-ca-certificate-publisher-controller",
)
# With a node, Deployments roll out and finished Pods go away as on any cluster.
# The node lifecycle controller lifts the not-ready taint a kubelet registers with.
NODE_CONTROLLERS = ("node-lifecycle-controller", "deployment-controller", "replicaset-controller",
                    "pod-garbage-collector-controller")
KUBELET_CLIENT_USER = "klutch-lab-apiserver-kubelet-client"
DEFAULT_SERVICE_CIDR = "10.0.0.0/24"
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}


# Below Linux's ephemeral range (32768-60999), so the kernel never hands a chosen port to an
# outgoing connection between choosing it and the component binding it; 8080 and 9443 stay free
# for provider-kubernetes, which cannot move off them.
PORT_RANGE = (20000, 32000)
_handed_out = set()


def port_in_use(port, host="127.0.0.1"):
    """Whether something listens on (or holds) the port; host 0.0.0.0 asks for every address."""
    with socket.socket() as sock:
        # Like a server, ignore connections of a stopped process that linger in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port():
    """A port that is free now on every address (API servers and kubelets listen on all) and was not handed
    out before by this process."""
    for _attempt in range(200):
        port = random.randint(*PORT_RANGE)
        if port in _handed_out or port_in_use(port, "0.0.0.0"):
            continue
        _handed_out.add(port)
        return port
    raise LabError(f"No free port in {PORT_RANGE[0]}-{PORT_RANGE[1]}: stop other labs (`down`) and retry.")


def host_address():
    """The machine's first global IPv4 address, by which Pods reach the host; None on a loopback-only machine."""
    try:
        result = subprocess.run(["ip", "-j", "-4", "addr", "show", "scope", "global"],
                                capture_output=True, text=True, check=False)
        interfaces = json.loads(result.stdout or "[]")
    except (OSError, ValueError):
        return None
    # Lab bridges carry global addresses too, but only while their node runs.
    addresses = [info["local"] for interface in interfaces if not interface["ifname"].startswith("klutch-lab-")
                 for info in interface.get("addr_info", [])]
    return addresses[0] if addresses else None


def _b64(data):
    return base64.b64encode(data).decode()


KubeconfigEntry = collections.namedtuple("KubeconfigEntry", "context cluster server ca user cert key")


def kubeconfig(entries, current):
    """A kubeconfig with one context per KubeconfigEntry, certificates embedded."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": entry.cluster, "cluster": {
            "server": entry.server, "certificate-authority-data": _b64(entry.ca)}} for entry in entries],
        "users": [{"name": entry.user, "user": {
            "client-certificate-data": _b64(entry.cert), "client-key-data": _b64(entry.key)}} for entry in entries],
        "contexts": [{"name": entry.context, "context": {"cluster": entry.cluster, "user": entry.user}}
                     for entry in entries],
        "current-context": current,
    }


def write_private(path, content):
    """Write key material and kubeconfigs readable by the owner only."""
    path = Path(path)
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


class Cluster:
    """A cluster as recorded in the lab state: `record` is the dict stored in lab.json."""

    def __init__(self, lab_dir, name, record):
        self.name = name
        self.dir = Path(lab_dir) / name
        self.record = record

    # -- files --------------------------------------------------------------------------
    @property
    def pki_dir(self):
        return self.dir / "pki"

    @property
    def server(self):
        return f"https://127.0.0.1:{self.record['ports']['apiserver']}"

    @property
    def pod_reachable_server(self):
        """The API server's URL for Pods of any lab node (the host's address), or None without one."""
        address = self.record.get("host_address")
        return f"https://{address}:{self.record['ports']['apiserver']}" if address else None

    @property
    def service_ip(self):
        """The `kubernetes` Service's ClusterIP: the first address of the Service range."""
        network = self.record.get("service_cidr", DEFAULT_SERVICE_CIDR).split("/")[0]
        return network.rsplit(".", 1)[0] + ".1"

    @property
    def registry(self):
        """The cluster's OCI registry (Crossplane's packages, the node's images), once started."""
        return f"localhost:{self.record['ports']['registry']}"

    @property
    def etcd_url(self):
        return f"http://127.0.0.1:{self.record['ports']['etcd']}"

    @property
    def admin_kubeconfig(self):
        return self.dir / "admin.kubeconfig"

    @property
    def audit_log_path(self):
        return self.dir / "audit.log"

    @property
    def ca_cert(self):
        return self.pki_dir / "ca.crt"

    @property
    def processes(self):
        return self.record.setdefault("processes", {})

    def kubeconfig_entry(self, user, cert_pem, key_pem):
        return KubeconfigEntry(self.name, self.name, self.server, self.ca_cert.read_bytes(), user, cert_pem, key_pem)

    def admin_entry(self):
        return self.kubeconfig_entry(
            f"{ADMIN_USER}@{self.name}",
            (self.pki_dir / "admin.crt").read_bytes(),
            (self.pki_dir / "admin.key").read_bytes(),
        )

    # -- preparation --------------------------------------------------------------------
    def prepare(self):
        """Make the directory, keys, certificates, policy and kubeconfigs of a new cluster."""
        self.dir.mkdir(parents=True)
        self.pki_dir.mkdir(mode=0o700)
        self.record["ports"] = {"etcd": free_port(), "etcd_peer": free_port(), "apiserver": free_port()}
        self.record.setdefault("service_cidr", DEFAULT_SERVICE_CIDR)
        self.record["host_address"] = host_address()
        serving_ca = pki.CertificateAuthority.create(f"klutch-lab-{self.name}-ca")
        client_ca = pki.CertificateAuthority.create(f"klutch-lab-{self.name}-client-ca")
        hosts = ["127.0.0.1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local", self.service_ip, socket.gethostname()]
        if self.record["host_address"]:
            hosts.append(self.record["host_address"])
        self._write_pair("ca", serving_ca.key, serving_ca.cert)
        self._write_pair("client-ca", client_ca.key, client_ca.cert)
        self._write_pair("apiserver", *serving_ca.issue("kube-apiserver", hosts=hosts))
        self._write_pair("admin", *client_ca.issue(ADMIN_USER, ["system:masters"]))
        self._write_pair("controller-manager", *client_ca.issue(CONTROLLER_MANAGER_USER, ["system:masters"]))
        self._write_pair("kubelet-client", *client_ca.issue(KUBELET_CLIENT_USER))
        sa_key = pki.new_key()
        write_private(self.pki_dir / "sa.key", pki.key_pem(sa_key))
        (self.pki_dir / "sa.pub").write_bytes(pki.public_key_pem(sa_key))
        (self.dir / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY))
        write_private(self.admin_kubeconfig, yaml.safe_dump(kubeconfig([self.admin_entry()], self.name)))
        controller_manager = self.kubeconfig_entry(
            CONTROLLER_MANAGER_USER,
            (self.pki_dir / "controller-manager.crt").read_bytes(),
            (self.pki_dir / "controller-manager.key").read_bytes(),
        )
        write_private(self.dir / "controller-manager.kubeconfig",
                      yaml.safe_dump(kubeconfig([controller_manager], self.name)))

    def _write_pair(self, name, key, cert):
        write_private(self.pki_dir / f"{name}.key", pki.key_pem(key))
        (self.pki_dir / f"{name}.crt").write_bytes(pki.cert_pem(cert))

    def mint_identity(self, user, groups=()):
        """A kubeconfig for a non-admin identity: a client certificate with CN=user, O=groups."""
        client_ca = pki.CertificateAuthority.load(
            (self.pki_dir / "client-ca.key").read_bytes(), (self.pki_dir / "client-ca.crt").read_bytes()
        )
        key, cert = client_ca.issue(user, list(groups))
        directory = self.dir / "identities"
        directory.mkdir(mode=0o700, exist_ok=True)
        entry = self.kubeconfig_entry(f"{user}@{self.name}", pki.cert_pem(cert), pki.key_pem(key))
        return write_private(directory / f"{user}.kubeconfig", yaml.safe_dump(kubeconfig([entry], self.name)))

    # -- processes ----------------------------------------------------------------------
    def start(self, component, argv, env=None):
        """Start a process that belongs to this cluster; `down` stops it with the cluster."""
        record = process.spawn(argv, self.dir / f"{component}.log", env=env)
        self.processes[component] = record
        return record

    def start_registry(self, binary):
        """Start the cluster's registry unless it runs already: Crossplane and the node share it."""
        if "registry" in self.processes:
            return
        self.record["ports"]["registry"] = free_port()
        self.start("registry", [binary, "-port", self.record["ports"]["registry"]])
        self.wait_ready("registry", ready=lambda: self.http_status(self.record["ports"]["registry"], "/v2/") == 200)

    def component_argv(self, component, binaries):
        """The command lines of the built-in components."""
        ports = self.record["ports"]
        peer = f"http://127.0.0.1:{ports['etcd_peer']}"
        pki_dir = self.pki_dir
        if component == "etcd":
            return [
                binaries["etcd"], "--name", self.name, "--data-dir", self.dir / "etcd",
                "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"{self.name}={peer}", "--unsafe-no-fsync", "--log-level", "warn",
            ]
        if component == "kube-apiserver":
            return [
                binaries["kube-apiserver"], "--etcd-servers", self.etcd_url,
                # Every address, so that Pods of any lab node reach it at pod_reachable_server.
                "--bind-address", "0.0.0.0", "--secure-port", ports["apiserver"],
                # Pods reach the `kubernetes` Service through the node's own DNAT rule, not its endpoints.
                "--advertise-address", "127.0.0.1", "--endpoint-reconciler-type", "none",
                "--tls-cert-file", pki_dir / "apiserver.crt", "--tls-private-key-file", pki_dir / "apiserver.key",
                "--client-ca-file", pki_dir / "client-ca.crt", "--authorization-mode", "Node,RBAC",
                "--kubelet-client-certificate", pki_dir / "kubelet-client.crt",
                "--kubelet-client-key", pki_dir / "kubelet-client.key",
                # A lab node's name resolves nowhere; its address is the host's.
                "--kubelet-preferred-address-types", "InternalIP",
                "--service-cluster-ip-range", self.record.get("service_cidr", DEFAULT_SERVICE_CIDR),
                "--service-account-issuer", "https://kubernetes.default.svc",
                "--service-account-key-file", pki_dir / "sa.pub",
                "--service-account-signing-key-file", pki_dir / "sa.key",
                "--cert-dir", self.dir / "apiserver-certs", "--profiling=false",
                "--audit-log-path", self.audit_log_path, "--audit-policy-file", self.dir / "audit-policy.yaml",
            ]
        if component == "kube-controller-manager":
            return [
                binaries["kube-controller-manager"], "--kubeconfig", self.dir / "controller-manager.kubeconfig",
                "--leader-elect=false", "--secure-port=0",
                "--controllers", ",".join(CONTROLLERS + (NODE_CONTROLLERS if "node" in self.record else ())),
                "--service-account-private-key-file", pki_dir / "sa.key", "--root-ca-file", self.ca_cert,
            ]
        raise ValueError(component)

    def is_ready(self, component):
        """True once a built-in component serves what the lab needs of it."""
        try:
            if component == "etcd":
                return self.http_status(self.record["ports"]["etcd"], "/health") == 200
            if component == "kube-apiserver":
                return self.request("GET", "/readyz")[0] == 200
            if component == "kube-controller-manager":
                # The default ServiceAccount and root CA ConfigMap are made by its controllers.
                return (self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200
                        and self.request("GET", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt")[0] == 200)
        except (OSError, ValueError, http.client.HTTPException):
            return False
        raise ValueError(component)

    def wait_ready(self, component, timeout=60.0, ready=None):
        """Wait for a component to serve (`ready()`, default: the built-in check); fail fast if it dies."""
        record = self.processes[component]
        ready = ready or (lambda: self.is_ready(component))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.alive(record):
                raise LabError(
                    f"{component} of cluster {self.name} exited during start. Last lines of {record['log']}:\n"
                    + process.log_tail(record)
                )
            if ready():
                return
            time.sleep(0.1)
        raise LabError(
            f"{component} of cluster {self.name} did not become ready within {timeout:.0f} s. "
            f"Last lines of {record['log']}:\n" + process.log_tail(record)
        )

    # -- HTTPS --------------------------------------------------------------------------
    def ssl_context(self):
        """TLS trusting the cluster CA and authenticating as the lab's admin."""
        context = ssl.create_default_context(cafile=str(self.ca_cert))
        context.load_cert_chain(str(self.pki_dir / "admin.crt"), str(self.pki_dir / "admin.key"))
        return context

    def request(self, method, path, body=None, timeout=10.0, content_type="application/json"):
        """One admin request; returns (status, decoded JSON or raw text)."""
        port = self.record["ports"]["apiserver"]
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=self.ssl_context(), timeout=timeout)
        try:
            headers = {"Accept": "application/json"}
            payload = None
            if body is not None:
                payload = json.dumps(body)
                headers["Content-Type"] = content_type
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read().decode()
        finally:
            connection.close()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, data

    def apply(self, path, obj):
        """Server-side apply of one object at its API path, as the lab's own field manager."""
        status, answer = self.request("PATCH", path + "?fieldManager=klutch-lab&force=true", obj,
                                      content_type="application/apply-patch+yaml")
        if status >= 400:
            message = answer.get("message") if isinstance(answer, dict) else answer
            raise LabError(f"Cluster {self.name} refused {obj.get('kind')} {obj['metadata']['name']} ({status}): {message}")
        return answer

    def wait_for(self, description, predicate, timeout=60.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise LabError(f"Cluster {self.name}: {description} did not happen within {timeout:.0f} s.")
            time.sleep(0.1)

    @staticmethod
    def http_status(port, path, timeout=2.0, tls=False):
        """The status of a GET to a loopback port (HTTPS without verification when `tls`), or None when nothing answers."""
        if tls:
            connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                                     context=ssl._create_unverified_context())
        else:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            connection.request("GET", path)
            return connection.getresponse().status
        except (OSError, http.client.HTTPException):
            return None
        finally:
            connection.close()
