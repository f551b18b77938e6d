"""The lab's own lifecycle: up, reuse, down leaves nothing; failures say what to do."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from klutch_lab import Lab, LabError, binaries, process
from klutch_lab import cluster as cluster_module
from klutch_lab.cluster import port_in_use


def quiet(_line):
    pass


def test_up_then_down_leaves_no_process_port_or_state(tmp_path, figure):
    lab = Lab(tmp_path / "lab", progress=quiet)
    started = time.monotonic()
    lab.up(["first", "second"])
    elapsed = time.monotonic() - started
    figure(f"warm `up` of two clusters: {elapsed:.1f} s")
    records = [record for c in lab.clusters.values() for record in c.processes.values()]
    ports = [port for c in lab.clusters.values() for port in c.record["ports"].values()]
    assert len(records) == 6 and all(process.alive(record) for record in records)
    assert all(port_in_use(c.record["ports"]["apiserver"]) for c in lab.clusters.values())

    again = Lab(tmp_path / "lab", progress=quiet).up(["first", "second"])
    assert [r["pid"] for c in again.clusters.values() for r in c.processes.values()] == [r["pid"] for r in records]

    Lab(tmp_path / "lab", progress=quiet).down()
    assert not any(os.path.exists(f"/proc/{record['pid']}") and process.alive(record) for record in records)
    assert all(not port_in_use(port) for port in ports)
    assert list(tmp_path.iterdir()) == [], "no state, lock or log is left"


def test_up_adds_clusters_to_a_running_lab_and_the_cli_reports_them(tmp_path):
    directory = tmp_path / "lab"
    cli = [sys.executable, "-m", "klutch_lab", "--dir", str(directory)]
    try:
        first = subprocess.run(cli + ["up", "--clusters", "one"], capture_output=True, text=True, check=True)
        assert "one: https://127.0.0.1:" in first.stdout and "inventory" in first.stdout
        subprocess.run(cli + ["up", "--clusters", "one,two"], capture_output=True, text=True, check=True)
        status = subprocess.run(cli + ["status"], capture_output=True, text=True, check=False)
        assert status.returncode == 0
        assert status.stdout.count("running") == 6 and "two: https://127.0.0.1:" in status.stdout
        identity = subprocess.run(cli + ["identity", "--cluster", "two", "--user", "carol", "--group", "qa"],
                                  capture_output=True, text=True, check=True)
        assert identity.stdout.strip().endswith("identities/carol.kubeconfig")
    finally:
        subprocess.run(cli + ["down"], capture_output=True, text=True, check=True)
    assert not directory.exists()


def test_missing_binaries_without_go(tmp_path, monkeypatch):
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv(binaries.BIN_DIR_ENV, str(empty))
    monkeypatch.setenv(binaries.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(LabError) as error:
        Lab(tmp_path / "lab", progress=quiet).up(["solo"])
    message = str(error.value)
    assert "no Go toolchain on PATH" in message and binaries.BIN_DIR_ENV in message
    assert "kube-apiserver, kube-controller-manager, kubectl, etcd" in message
    assert not (tmp_path / "lab").exists(), "a failed up leaves no state"


def test_bin_dir_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.setenv(binaries.BIN_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(LabError, match="is not a directory"):
        binaries.ensure_binaries(quiet)


def test_prebuilt_directory_is_used(tmp_path, monkeypatch):
    """Users with setup-envtest assets point the lab at them; here, at the cached build."""
    prebuilt = tmp_path / "assets"
    prebuilt.mkdir()
    for name, path in binaries.ensure_binaries(quiet).items():
        (prebuilt / name).symlink_to(path)
    monkeypatch.setenv(binaries.BIN_DIR_ENV, str(prebuilt))
    assert binaries.ensure_binaries(quiet) == {name: prebuilt / name for name in binaries.ALL_BINARIES}


def test_a_component_that_dies_during_start_is_reported_with_its_log(tmp_path, monkeypatch):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy])
        real_free_port = cluster_module.free_port
        monkeypatch.setattr(cluster_module, "free_port", lambda: next(ports, None) or real_free_port())
        with pytest.raises(LabError) as error:
            Lab(tmp_path / "lab", progress=quiet).up(["clash"])
    message = str(error.value)
    assert message.startswith("etcd of cluster clash exited during start. Last lines of")
    assert "address already in use" in message
    assert not (tmp_path / "lab").exists(), "what the failed up started is stopped and removed"
    kept = tmp_path / "lab-failed-logs" / "clash" / "etcd.log"
    assert message.endswith(f"The logs of the failed start are kept in {tmp_path / 'lab-failed-logs'}.")
    assert "address already in use" in kept.read_text()


def test_a_stale_lab_is_refused_until_down(tmp_path):
    lab = Lab(tmp_path / "lab", progress=quiet).up(["stale"])
    etcd = lab.cluster("stale").processes["etcd"]
    os.killpg(etcd["pid"], signal.SIGKILL)
    while process.alive(etcd):
        time.sleep(0.05)
    status = "\n".join(Lab(tmp_path / "lab", progress=quiet).status_lines())
    assert f"NOT RUNNING; last lines of {etcd['log']}:" in status
    with pytest.raises(LabError) as error:
        Lab(tmp_path / "lab", progress=quiet).up(["stale"])
    assert "is stale" in str(error.value) and "stale: etcd (pid" in str(error.value)
    assert "`python -m klutch_lab down`" in str(error.value)
    Lab(tmp_path / "lab", progress=quiet).down()
    assert not (tmp_path / "lab").exists()


def test_a_corrupt_state_file_says_how_to_clean_up(tmp_path):
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "lab.json").write_text("{not json")
    with pytest.raises(LabError) as error:
        Lab(tmp_path / "lab", progress=quiet)
    assert f"pkill -f {tmp_path / 'lab'}/" in str(error.value)


def test_a_directory_that_is_not_a_lab_is_left_alone(tmp_path):
    foreign = tmp_path / "lab"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(LabError, match="holds files but no lab.json"):
        Lab(foreign, progress=quiet)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_bad_cluster_names(tmp_path):
    with pytest.raises(LabError, match="Invalid cluster names"):
        Lab(tmp_path / "lab", progress=quiet).up(["Bad_Name"])
