"""Lab nodes are real: Pods are scheduled, pull the public image names through the lab's mirror,
reach their own API server and another cluster's with in-cluster config, and `down` leaves the
host as it was, also after the process that started the lab was killed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from klutch_lab import Lab, LabError, images, process
from klutch_lab.node import Node

CLUSTERS = ("control-plane", "app")

# Run in a Pod: in-cluster config against its own API server (a SelfSubjectReview says who it is),
# then the other cluster's API server at the Pod-reachable URL, trusting that cluster's CA.
PROBE = textwrap.dedent("""
    import json, os, ssl, urllib.request
    sa = "/var/run/secrets/kubernetes.io/serviceaccount"
    own = "https://%s:%s" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
    review = urllib.request.Request(
        own + "/apis/authentication.k8s.io/v1/selfsubjectreviews", method="POST",
        data=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}).encode(),
        headers={"Authorization": "Bearer " + open(sa + "/token").read(), "Content-Type": "application/json"})
    answer = json.load(urllib.request.urlopen(review, context=ssl.create_default_context(cafile=sa + "/ca.crt")))
    other = urllib.request.urlopen(os.environ["OTHER_SERVER"] + "/version",
                                   context=ssl.create_default_context(cafile="/other/ca.crt"))
    seccomp = [line.split()[1] for line in open("/proc/self/status") if line.startswith("Seccomp:")][0]
    print("probe", json.dumps({"own": own, "user": answer["status"]["userInfo"]["username"],
                               "other_version": json.load(other)["gitVersion"], "uid": os.getuid(),
                               "seccomp_filter": seccomp == "2"}))
""")


def progress(line):
    print(line, file=sys.stderr)


@pytest.fixture(scope="module")
def node_lab(tmp_path_factory, figure):
    lab = Lab(tmp_path_factory.mktemp("node-lab") / "state", progress=progress)
    started = time.monotonic()
    lab.up(CLUSTERS, crossplane=[], nodes=CLUSTERS)
    figure(f"`up` of two clusters with nodes: {time.monotonic() - started:.1f} s")
    try:
        yield lab
    finally:
        lab.down()


def api(cluster, method, path, body=None):
    status, answer = cluster.request(method, path, body)
    assert status < 400, f"{method} {path}: {status} {answer}"
    return answer


def wait_for_pod(cluster, name, phases=("Succeeded",), timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pod = api(cluster, "GET", f"/api/v1/namespaces/default/pods/{name}")
        phase = pod.get("status", {}).get("phase")
        if phase in phases:
            return pod
        assert phase != "Failed", json.dumps(pod["status"], indent=1)
        time.sleep(0.5)
    raise AssertionError(f"Pod {name} not {phases} after {timeout} s: {json.dumps(pod.get('status'), indent=1)}")


def pod_log(cluster, name):
    """The Pod's log through the API server and kubelet; the lines of PROBE start with a word so they stay text."""
    status, text = cluster.request("GET", f"/api/v1/namespaces/default/pods/{name}/log")
    assert status == 200, text
    return text


def probe_pod(name, other_server, hardened):
    """The probe on the public Python image, without nodeName: the scheduler places it."""
    container = {"name": "probe", "image": images.PYTHON_IMAGE, "command": ["python", "-c", PROBE],
                 "env": [{"name": "OTHER_SERVER", "value": other_server}],
                 "volumeMounts": [{"name": "other-ca", "mountPath": "/other"}]}
    spec = {"restartPolicy": "Never", "containers": [container],
            "volumes": [{"name": "other-ca", "configMap": {"name": "other-ca"}}]}
    if hardened:
        # As the agents' Deployments run: RuntimeDefault needs runc built with seccomp.
        spec["securityContext"] = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                   "seccompProfile": {"type": "RuntimeDefault"}}
        container["securityContext"] = {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def test_nodes_are_ready_and_report_their_processes(node_lab):
    for name in CLUSTERS:
        cluster = node_lab.cluster(name)
        node = api(cluster, "GET", f"/api/v1/nodes/{Node(cluster).name}")
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions["Ready"] == "True" and not node["spec"].get("taints")
        assert node["status"]["nodeInfo"]["containerRuntimeVersion"] == "containerd://2.4.2"
        assert all(process.alive(cluster.processes[c]) for c in ("containerd", "kube-scheduler", "kubelet", "registry"))
    networks = [node_lab.cluster(name).record["node"]["network"] for name in CLUSTERS]
    for key in ("bridge", "pod_subnet", "service_cidr"):
        assert networks[0][key] != networks[1][key]
    # Agents' Deployments roll out on a node, so the inventory runs them as Deployments and waits for them.
    app_host = node_lab.inventory_data()["all"]["children"]["app_clusters"]["hosts"]["app"]
    assert app_host["konnector_mode"] == "deployment" and app_host["konnector_rollout_wait"] is True
    status = "\n".join(node_lab.status_lines())
    assert status.count("kubelet") == 2 and "MiB (RSS)" in status and "API server for Pods: https://" in status


@pytest.mark.parametrize("hardened", [False, True], ids=["root", "uid-65532-read-only-root-seccomp"])
def test_pod_uses_in_cluster_config_and_reaches_the_other_cluster(node_lab, hardened):
    app, control_plane = node_lab.cluster("app"), node_lab.cluster("control-plane")
    name = "probe-hardened" if hardened else "probe"
    app.apply("/api/v1/namespaces/default/configmaps/other-ca",
              {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other-ca", "namespace": "default"},
               "data": {"ca.crt": control_plane.ca_cert.read_text()}})
    api(app, "POST", "/api/v1/namespaces/default/pods", probe_pod(name, control_plane.pod_reachable_server, hardened))
    pod = wait_for_pod(app, name)
    assert pod["spec"]["nodeName"] == Node(app).name
    assert pod["status"]["podIP"].startswith(app.record["node"]["network"]["pod_subnet"].rsplit(".", 1)[0] + ".")
    result = json.loads(pod_log(app, name).strip().splitlines()[-1].removeprefix("probe "))
    assert result == {"own": f"https://{app.service_ip}:443", "user": "system:serviceaccount:default:default",
                      "other_version": "v1.34.2", "uid": 65532 if hardened else 0, "seccomp_filter": hardened}
    # The public name came through the mirror: nothing else could serve it here.
    events = api(app, "GET", f"/api/v1/namespaces/default/events?fieldSelector=involvedObject.name={name}")
    assert any(images.PYTHON_IMAGE in event["message"] for event in events["items"] if event["reason"] == "Pulled")


# A Pod that keeps running, with what a node must unmount and remove: an in-memory emptyDir, a
# projected token, an overlay root, a network namespace, iptables rules of its own.
SLEEPER = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": images.PYTHON_IMAGE,
                                    "command": ["python", "-c", "import time; time.sleep(3600)"],
                                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
                    "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}}]}}


def leftovers(lab_dir, networks, pids):
    """What a stopped lab must not leave: processes, mounts, bridges, iptables rules, log links."""
    found = []
    found += [f"process {pid}" for pid in pids if process.start_time(pid) is not None]
    found += [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if str(lab_dir) in line]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    rules = subprocess.run(["iptables-save"], capture_output=True, text=True, check=True).stdout
    for network in networks:
        found += [f"bridge {network['bridge']}"] if f" {network['bridge']}:" in links else []
        found += [line for line in rules.splitlines() if network["marker"] in line or network["chain"] in line]
    log_links = Path("/var/log/containers")
    if log_links.is_dir():
        found += [str(link) for link in log_links.iterdir() if str(lab_dir) in os.readlink(link)]
    return found


def node_state(lab):
    clusters = [cluster for cluster in lab.clusters.values() if "node" in cluster.record]
    return [c.record["node"]["network"] for c in clusters], [pid for c in clusters for pid in Node(c).pids()]


def test_down_leaves_nothing_behind(node_lab):
    app = node_lab.cluster("app")
    api(app, "POST", "/api/v1/namespaces/default/pods", SLEEPER)
    wait_for_pod(app, "sleeper", phases=("Running",))
    networks, pids = node_state(node_lab)
    assert len(pids) > 6, "kubelet, scheduler and containerd of two nodes, plus a shim and its containers"
    node_lab.down()
    assert leftovers(node_lab.dir, networks, pids) == []
    assert not node_lab.dir.exists()


def test_down_after_the_owner_was_killed(tmp_path_factory):
    """A test process SIGKILLed with a Pod running: a later `down` finds everything from lab.json."""
    directory = tmp_path_factory.mktemp("killed") / "lab"
    owner = textwrap.dedent(f"""
        import os, signal, time
        from klutch_lab import Lab
        lab = Lab({str(directory)!r}, progress=lambda line: None).up(["solo"], crossplane=[], nodes=["solo"])
        cluster = lab.cluster("solo")
        cluster.request("POST", "/api/v1/namespaces/default/pods", {SLEEPER!r})
        while cluster.request("GET", "/api/v1/namespaces/default/pods/sleeper")[1]["status"].get("phase") != "Running":
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed = subprocess.run([sys.executable, "-c", owner], cwd=Path(__file__).resolve().parents[2], timeout=300,
                            capture_output=True, text=True, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    lab = Lab(directory, progress=progress)
    networks, pids = node_state(lab)
    assert any(Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"python") for pid in pids), "the Pod still runs"
    assert any(str(directory) in line for line in Path("/proc/self/mountinfo").read_text().splitlines())
    lab.down()
    assert leftovers(directory, networks, pids) == []
    assert not directory.exists()


def test_a_machine_without_the_host_tools_is_told_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LabError) as error:
        Lab(tmp_path / "lab", progress=progress).up(["solo"], crossplane=[], nodes=["solo"])
    message = str(error.value)
    assert "apt-get install iproute2 iptables" in message and "leave out --nodes" in message
    assert not (tmp_path / "lab").exists(), "nothing started"


def test_a_lab_directory_too_deep_for_the_kubelet_sockets_is_refused(tmp_path):
    deep = tmp_path / ("d" * 100)
    with pytest.raises(LabError) as error:
        Lab(deep, progress=progress).up(["solo"], crossplane=[], nodes=["solo"])
    assert "at most 107 characters" in str(error.value) and "leave out --nodes" in str(error.value)
    assert not deep.exists(), "nothing started"
