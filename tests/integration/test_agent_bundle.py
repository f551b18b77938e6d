"""The konnector as the roles deliver it by default: the agent bundle in a ConfigMap, run by an official Python.

The lab has no node, so no Pod ever runs here. The konnector role therefore applies its Deployment with
konnector_rollout_wait false, and the test checks what it applied. The zip that the role put in the ConfigMap then
runs as a local process the way the Pod would run it: a Python with nothing but its standard library and the zip
on its path (python -S, as the Deployment's command), user 65532, a read-only root filesystem (a private mount
namespace) with a small tmpfs as its only writable place, and "in cluster" credentials: KUBERNETES_SERVICE_HOST
and PORT, and a directory holding a real token of the konnector's ServiceAccount, the cluster's CA and the
namespace. It must answer /healthz, take the Lease and sync a bound world.

What only a node can show is not tested here: the image pull, the kubelet's ConfigMap and projected-token
volumes (and their rotation), the emptyDir, probes and real Pods' logs. The rollout wait is tested for its
failure messages only, on Pods whose status the test writes itself.
"""

import base64
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from urllib.request import urlopen

import pytest
import yaml

from ansible_collections.klutch.bind.plugins.module_utils.agent.konnector import Konnector
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CONFIG_MAPS,
    DEPLOYMENTS,
    NAMESPACES,
    PODS,
    Resource,
    SECRETS,
    SERVICE_ACCOUNTS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_NAMESPACES
from klutch_lab.cluster import free_port
from playbook_runner import recap
from sync_world import MANGODBS, eventually, instance, konnector_play

ROOT = Path(__file__).resolve().parents[2]
ENTRY = "ansible_collections.klutch.bind.plugins.module_utils.agent.cli"
LEASES = Resource("coordination.k8s.io/v1", "Lease", "leases")
PYTHON_IMAGE = yaml.safe_load((ROOT / "roles" / "konnector" / "defaults" / "main.yml").read_text())[
    "konnector_python_image"]
IDENTITY = "konnector-from-bundle"


@pytest.fixture(scope="module")
def world(bound_world):
    """An app cluster bound to the MangoDB API, with the konnector role in mode none: no agent yet."""
    with bound_world("module", "app-bundle", agent_names=()) as bound:
        yield bound


def deployment_play(world, **variables):
    return konnector_play(world.cluster, "deployment", world.run_dir, **dict({"konnector_rollout_wait": False},
                                                                             **variables))


def shipped_zip(world):
    configmap = world.app.get(CONFIG_MAPS, "klutch-bind-konnector-bundle", "klutch-bind")
    return base64.b64decode(configmap["binaryData"]["agent.zip"])


def test_deployment_mode_ships_the_bundle_in_a_configmap_and_a_second_run_changes_nothing(world, run_playbook, figure):
    applied = run_playbook(deployment_play(world))
    assert applied.returncode == 0, applied.stdout
    data = shipped_zip(world)
    assert len(data) < 512 * 1024, "well under a ConfigMap's 1 MiB"
    figure(f"bundle: {len(data)} bytes, {len(base64.b64encode(data))} in the ConfigMap")
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert ENTRY.replace(".", "/") + ".py" in names and "urllib3/__init__.py" in names and "yaml/__init__.py" in names

    deployment = world.app.get(DEPLOYMENTS, "klutch-bind-konnector", "klutch-bind")
    template = deployment["spec"]["template"]
    assert template["metadata"]["annotations"]["klutch.bind/bundle-sha256"] == hashlib.sha256(data).hexdigest()
    pod = template["spec"]
    container = pod["containers"][0]
    assert container["image"] == PYTHON_IMAGE == "docker.io/library/python:3.11-slim-bookworm"
    assert container["command"] == ["python", "-S", "-m", ENTRY]
    assert container["args"][0] == "konnector" and "--grant-claims-to=klutch-bind/klutch-bind-konnector" in container[
        "args"]
    assert {"name": "PYTHONPATH", "value": "/opt/klutch-bind/agent.zip"} in container["env"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (65532, 65532)
    mounts = dict((mount["name"], mount["mountPath"]) for mount in container["volumeMounts"])
    assert mounts == {"tmp": "/tmp", "bundle": "/opt/klutch-bind"}
    volumes = dict((volume["name"], volume) for volume in pod["volumes"])
    assert volumes["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Mi"}
    assert volumes["bundle"]["configMap"]["name"] == "klutch-bind-konnector-bundle"

    again = run_playbook(deployment_play(world))
    assert recap(again)["changed"] == 0, again.stdout


def python_for_the_image():
    """The Python of the default image's minor version (the venv's pythons/ has it), else this one."""
    version = PYTHON_IMAGE.rpartition(":")[2].split("-")[0]
    candidate = Path(sys.executable).parent.parent / "pythons" / f"python{version}"
    python = Path(os.path.realpath(candidate if candidate.exists() else sys.executable))
    return python


def konnector_token(world):
    """A token of the konnector's ServiceAccount, as the kubelet projects it into the Pod."""
    review = world.app.request(
        "POST", SERVICE_ACCOUNTS.path("klutch-bind", "klutch-bind-konnector", "token"), "create", "a token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}})
    return review["status"]["token"]


def test_the_konnector_reads_a_claimed_kind_at_once_where_it_just_granted_itself_the_right(world, run_playbook):
    """The API server authorizes from a cache of RBAC objects that trails their writes: a read right after a fresh
    grant was refused about once in twenty namespaces (403 mid-pass) until the grant waited for it."""
    assert run_playbook(deployment_play(world)).returncode == 0  # the konnector's ServiceAccount and its rights
    konnector_client = ClusterClient.from_params({"kubeconfig": {
        "apiVersion": "v1", "kind": "Config", "current-context": "konnector",
        "clusters": [{"name": "app", "cluster": {"server": world.cluster.server,
                                                 "certificate-authority": str(world.cluster.ca_cert)}}],
        "users": [{"name": "konnector", "user": {"token": konnector_token(world)}}],
        "contexts": [{"name": "konnector", "context": {"cluster": "app", "user": "konnector"}}]}}, environ={})
    grant = Konnector().grant(konnector_client, "klutch-bind/klutch-bind-konnector")
    namespaces = [f"fresh-grant-{index}" for index in range(60)]
    refused = []
    try:
        for namespace in namespaces:
            world.app.apply(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            grant([namespace], [SECRETS])
            try:
                konnector_client.list(SECRETS, namespace)
            except ClusterError as error:
                refused.append((namespace, error.status))
    finally:
        for namespace in namespaces:
            world.app.delete(NAMESPACES, namespace)
    assert refused == []


@pytest.fixture
def pod_files(world):
    """A directory holding what a Pod of the Deployment would see: the zip and its ServiceAccount's token, CA and
    namespace; and the places for the tmpfs and the Python."""
    directory = Path(tempfile.mkdtemp(prefix="klutch-bundle-"))
    directory.chmod(0o755)  # uid 65532 reads it, as the Pod's user reads its volumes
    (directory / "agent.zip").write_bytes(shipped_zip(world))
    account = directory / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(konnector_token(world))
    shutil.copy(world.cluster.ca_cert, account / "ca.crt")
    (account / "namespace").write_text("klutch-bind")
    for path in (account, *account.iterdir(), directory / "agent.zip"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (directory / "tmp").mkdir()
    (directory / "python").mkdir()
    yield directory
    shutil.rmtree(directory)


def pod_environment(world, directory, python):
    """What the kubelet and the Deployment give the container, and nothing from this process."""
    port = world.cluster.server.rpartition(":")[2]
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(directory / "agent.zip"),
            "PYTHONUNBUFFERED": "1", "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port,
            "KLUTCH_BIND_SERVICE_ACCOUNT_DIR": str(directory / "serviceaccount"), "TMPDIR": str(directory / "tmp"),
            # The Python is bound elsewhere (below): its shared library must be found there too.
            "LD_LIBRARY_PATH": str(directory / "python" / "lib")}


def launch(directory, python, arguments, environ, output):
    """`python -S <arguments>` as uid 65532 on a read-only root filesystem whose only writable place is a tmpfs
    at <directory>/tmp, in a mount namespace of its own. The Python's installation is bound into
    <directory>/python, since it may live where uid 65532 cannot enter (/root)."""
    script = ('mount --bind -o ro "$1" "$2/python" && mount -t tmpfs -o size=16m,mode=1777 tmpfs "$2/tmp" '
              '&& mount -o remount,bind,ro / && shift 2 '
              '&& exec setpriv --reuid 65532 --regid 65532 --clear-groups "$@"')
    bound = directory / "python" / python.relative_to(python.parents[1])
    return subprocess.Popen(["unshare", "--mount", "--", "sh", "-c", script, "sh", str(python.parents[1]),
                             str(directory), str(bound), "-S", *arguments], env=environ, stdout=output,
                            stderr=subprocess.STDOUT, cwd=directory)


def health(port):
    try:
        with urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return yaml.safe_load(response.read())
    except (OSError, ValueError):
        return {}


def test_the_shipped_bundle_runs_in_cluster_as_uid_65532_on_a_read_only_root_and_syncs(world, pod_files, run_task,
                                                                                       figure):
    python = python_for_the_image()
    figure(f"bundle: runs on {python}")
    environ = pod_environment(world, pod_files, python)
    # What that Python finds: the zip's packages, and neither kubernetes nor ansible-core.
    probe = ("import importlib.util; print(sorted(name for name in ('kubernetes', 'ansible', 'urllib3', 'yaml') "
             "if importlib.util.find_spec(name)))")
    for path, expected in (("", "[]"), (environ["PYTHONPATH"], "['urllib3', 'yaml']")):
        found = launch(pod_files, python, ["-c", probe], dict(environ, PYTHONPATH=path), subprocess.PIPE)
        assert found.communicate(timeout=30)[0].decode().strip() == expected and found.returncode == 0

    container = world.app.get(DEPLOYMENTS, "klutch-bind-konnector", "klutch-bind")["spec"]["template"]["spec"][
        "containers"][0]
    assert container["command"][1:] == ["-S", "-m", ENTRY]
    port = free_port()
    # The Deployment's arguments; the kubelet would expand $(POD_NAME), and a Pod has a network of its own.
    arguments = [argument for argument in container["args"] if not argument.startswith(("--identity", "--health"))]
    arguments += [f"--identity={IDENTITY}", f"--health-port={port}", "--health-local"]
    log_path = pod_files / "agent.log"
    app, cp = world.app, world.cp
    with open(log_path, "wb") as log:
        agent = launch(pod_files, python, ["-m", ENTRY, *arguments], environ, log)
    try:
        eventually("healthy on /healthz", lambda: health(port).get("healthy") and health(port).get("leading"))
        lease = world.app.get(LEASES, "klutch-bind", "klutch-bind")
        assert lease["spec"]["holderIdentity"] == IDENTITY
        mounts = Path(f"/proc/{agent.pid}/mountinfo").read_text().splitlines()
        root = next(line.split() for line in mounts if line.split()[4] == "/")
        assert "ro" in root[5].split(","), "the agent's root filesystem is read-only"
        ids = [line.split()[1:] for line in Path(f"/proc/{agent.pid}/status").read_text().splitlines()
               if line.startswith(("Uid:", "Gid:"))]
        assert ids == [["65532"] * 4] * 2, "user and group 65532"

        # It syncs: an instance goes up (once the backend's work maps its namespace), a claimed Secret comes down.
        app.apply(MANGODBS, instance("from-bundle"))
        eventually("the namespace requested upstream", lambda: cp.get(API_SERVICE_NAMESPACES, "default",
                                                                      world.namespace))
        mapped, output = run_task("klutch.bind.klutch_export_request", world.export_args)
        assert not mapped.get("failed"), output
        eventually("the instance upstream", lambda: cp.get(MANGODBS, "from-bundle", world.mapped()))
        cp.apply(SECRETS, {"metadata": {"name": "from-bundle-creds", "namespace": world.mapped()},
                           "stringData": {"password": "bundled"}})
        eventually("the claimed Secret downstream", lambda: app.get(SECRETS, "from-bundle-creds", "default"))
        # CA data went to TLS in memory: nothing was written, not even to the tmpfs.
        assert os.listdir(f"/proc/{agent.pid}/root{pod_files}/tmp") == []
        assert agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        returncode = agent.wait(timeout=30)
    log = log_path.read_text()
    assert returncode == 0 and "Traceback" not in log and "konnector stopped" in log, log
    app.delete(MANGODBS, "from-bundle", "default")


def write_pod(app, name, status, image=PYTHON_IMAGE):
    """A Pod the Deployment's selector finds, with the status a kubelet or scheduler would have written."""
    app.write("POST", PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": name, "namespace": "klutch-bind", "labels": {"app.kubernetes.io/name": "klutch-bind-konnector"}},
        "spec": {"automountServiceAccountToken": False, "containers": [{"name": "konnector", "image": image}]}})
    app.write("PATCH", PODS, {"metadata": {"name": name, "namespace": "klutch-bind"}, "status": status},
              subresource="status")


def test_the_rollout_wait_fails_with_each_pods_reason(world, run_playbook):
    app = world.app
    waiting = {"name": "konnector", "image": PYTHON_IMAGE, "imageID": "", "ready": False, "restartCount": 0}
    write_pod(app, "konnector-pull", {"phase": "Pending", "containerStatuses": [dict(waiting, state={"waiting": {
        "reason": "ImagePullBackOff", "message": f'Back-off pulling image "{PYTHON_IMAGE}"'}})]})
    write_pod(app, "konnector-crash", {"phase": "Running", "containerStatuses": [dict(waiting, restartCount=4, state={
        "waiting": {"reason": "CrashLoopBackOff"}}, lastState={"terminated": {"exitCode": 1, "reason": "Error"}})]})
    write_pod(app, "konnector-pending", {"phase": "Pending", "conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient memory."}]})
    try:
        # The roles wait for a rollout they start: a new resync changes the Deployment.
        failed = run_playbook(deployment_play(world, konnector_rollout_wait=True, konnector_rollout_timeout=2,
                                              konnector_resync=11))
        assert failed.returncode != 0
        for expected in ("Timed out after 2s waiting for Deployment klutch-bind/klutch-bind-konnector on cluster "
                         "app-bundle", "0 of 2 replicas available",
                         f"Pod konnector-pull: container konnector cannot pull image {PYTHON_IMAGE} (ImagePullBackOff",
                         # The API server answers an empty log for a Pod that no node runs.
                         "Pod konnector-crash: container konnector keeps crashing (CrashLoopBackOff, last exit code 1 "
                         "(Error), restart count 4); its log is empty",
                         "Pod konnector-pending is not scheduled (Unschedulable: 0/1 nodes are available: 1 "
                         "Insufficient memory.)"):
            assert expected in failed.stdout, failed.stdout
    finally:
        for name in ("konnector-pull", "konnector-crash", "konnector-pending"):
            app.delete(PODS, name, "klutch-bind")
    alone = run_playbook(deployment_play(world, konnector_rollout_wait=True, konnector_rollout_timeout=2,
                                         konnector_resync=12))
    assert alone.returncode != 0 and "no deployment controller runs on this cluster" in alone.stdout, alone.stdout
