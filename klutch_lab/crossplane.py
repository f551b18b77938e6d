# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Crossplane on a lab cluster: core, provider-kubernetes and an OCI registry, run as processes.

What a Crossplane install would deploy runs here as local processes against the cluster's API
server: Crossplane core (package manager, XRDs, compositions), the provider that composes
Kubernetes objects, and the cluster's registry (shared with its node, if any) for Configuration packages.
"""

import os
from pathlib import Path

import yaml

from klutch_lab import pki
from klutch_lab.cluster import free_port, port_in_use, write_private
from klutch_lab.errors import LabError

NAMESPACE = "crossplane-system"
PROVIDER_CONFIG = "kubernetes-provider"  # the name Klutch's compositions refer to
# provider-kubernetes v0.17 listens on these with no flag to move them: one per machine.
PROVIDER_PORTS = (8080, 9443)
CROSSPLANE_COMPONENTS = ("crossplane", "provider-kubernetes")


def _crds(directory):
    for path in sorted(Path(directory).glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield doc


def _tls_dir(directory, names):
    """A directory with a fresh self-signed pair under the file names a component expects."""
    directory.mkdir(mode=0o700, exist_ok=True)
    ca = pki.CertificateAuthority.create("klutch-lab-crossplane-ca")
    key, cert = ca.issue("localhost", hosts=["127.0.0.1", "localhost"])
    write_private(directory / names["key"], pki.key_pem(key))
    (directory / names["cert"]).write_bytes(pki.cert_pem(cert))
    if "ca" in names:
        (directory / names["ca"]).write_bytes(pki.cert_pem(ca.cert))
    return directory


class Crossplane:
    """Crossplane's processes and objects on one lab cluster; its record lives in the cluster's."""

    def __init__(self, cluster, builds):
        self.cluster = cluster
        self.builds = builds

    @property
    def record(self):
        return self.cluster.record.setdefault("crossplane", {})

    @staticmethod
    def check_ports():
        """Fail before anything starts when provider-kubernetes could not listen."""
        taken = [port for port in PROVIDER_PORTS if port_in_use(port, "0.0.0.0")]
        if taken:
            raise LabError(
                f"provider-kubernetes needs ports {PROVIDER_PORTS[0]} and {PROVIDER_PORTS[1]}, and "
                f"{', '.join(map(str, taken))} is in use: is another lab with Crossplane running? Stop it "
                "(`python -m klutch_lab down`) or start this one with --crossplane ''."
            )

    def prepare(self):
        self.record["health_port"] = free_port()
        directory = self.cluster.dir
        (directory / "xpkg-cache").mkdir(exist_ok=True)
        _tls_dir(directory / "crossplane-tls", {"key": "tls.key", "cert": "tls.crt", "ca": "ca.crt"})
        _tls_dir(directory / "provider-tls", {"key": "tls.key", "cert": "tls.crt"})
        # Identities of their own, so the audit log tells their writes from a test's.
        self.record["kubeconfigs"] = {
            name: str(self.cluster.mint_identity(f"klutch-lab-{name}", ["system:masters"]))
            for name in ("crossplane", "provider-kubernetes")
        }

    def install_apis(self):
        """Crossplane's and the provider's CRDs, its namespace, and a ProviderConfig for this cluster."""
        apply = self.cluster.apply
        apply("/api/v1/namespaces/" + NAMESPACE, {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": NAMESPACE}})
        crds = list(_crds(self.builds["crossplane"] / "crds")) + list(_crds(self.builds["provider-kubernetes"] / "crds"))
        for crd in crds:
            if crd["metadata"]["name"] == "objects.kubernetes.crossplane.io":
                # Its conversion webhook would be a Service in a Pod; the lab has neither.
                crd["spec"]["conversion"] = {"strategy": "None"}
            apply("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + crd["metadata"]["name"], crd)
        for crd in crds:
            self.cluster.wait_for(f"CRD {crd['metadata']['name']} Established", lambda name=crd["metadata"]["name"]:
                                  _established(self.cluster, name))
        provider_kubeconfig = Path(self.record["kubeconfigs"]["provider-kubernetes"]).read_text()
        apply(f"/api/v1/namespaces/{NAMESPACE}/secrets/{PROVIDER_CONFIG}", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": PROVIDER_CONFIG, "namespace": NAMESPACE},
            "stringData": {"kubeconfig": provider_kubeconfig}})
        apply(f"/apis/kubernetes.crossplane.io/v1alpha1/providerconfigs/{PROVIDER_CONFIG}", {
            "apiVersion": "kubernetes.crossplane.io/v1alpha1", "kind": "ProviderConfig",
            "metadata": {"name": PROVIDER_CONFIG},
            "spec": {"credentials": {"source": "Secret", "secretRef": {
                "namespace": NAMESPACE, "name": PROVIDER_CONFIG, "key": "kubeconfig"}}}})

    def argv(self, component):
        directory = self.cluster.dir
        if component == "crossplane":
            return [self.builds["crossplane"] / "crossplane", "core", "start", "--enable-webhooks=false",
                    "--xpkg-cache-dir", directory / "xpkg-cache", "--metrics-port=0",
                    "--health-probe-port", self.record["health_port"],
                    "--tls-client-certs-dir", directory / "crossplane-tls"]
        if component == "provider-kubernetes":
            return [self.builds["provider-kubernetes"] / "provider-kubernetes"]
        raise ValueError(component)

    def env(self, component):
        env = dict(os.environ)
        if component == "crossplane":
            env.update(POD_NAMESPACE=NAMESPACE, KUBECONFIG=self.record["kubeconfigs"]["crossplane"])
        if component == "provider-kubernetes":
            env.update(KUBECONFIG=self.record["kubeconfigs"]["provider-kubernetes"],
                       TLS_SERVER_CERTS_DIR=str(self.cluster.dir / "provider-tls"))
        return env

    def is_ready(self, component):
        port = {"crossplane": self.record["health_port"], "provider-kubernetes": PROVIDER_PORTS[0]}[component]
        path = {"crossplane": "/readyz", "provider-kubernetes": "/metrics"}[component]
        return self.cluster.http_status(port, path) == 200

    def start(self):
        self.cluster.start_registry(self.builds["go-containerregistry"] / "registry")
        for component in CROSSPLANE_COMPONENTS:
            self.cluster.start(component, self.argv(component), env=self.env(component))
            self.cluster.wait_ready(component, ready=lambda name=component: self.is_ready(name))


def _established(cluster, name):
    status, crd = cluster.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + name)
    conditions = (crd.get("status") or {}).get("conditions") or [] if status == 200 else []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
