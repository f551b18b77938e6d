"""No client key or token is left in a file after a module run is killed with SIGKILL in the middle.

The module is stopped while it holds its credentials: it has connected to a server that accepts and never
answers. Then every file under the run's temporary directories is searched for the key and the token, in
PEM and base64 form. Ansible itself writes a module's arguments to its remote temporary directory unless
pipelining is on, so credentials given inline are tested with pipelining, as the documentation says."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from klutch_lab import pki
from playbook_runner import ansible_playbook

TOKEN = "klutch-test-token-" + "7" * 40


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers; .connected says whether one came."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(60)
    yield listener
    listener.close()


@pytest.fixture
def credentials(tmp_path, silent_server):
    """A kubeconfig with a client key, towards the silent server, inline and as a file."""
    authority = pki.CertificateAuthority.create("silent")
    key, cert = authority.issue("someone")
    key_pem = pki.key_pem(key)

    def data(pem):
        return base64.b64encode(pem).decode()

    config = {"apiVersion": "v1", "kind": "Config", "current-context": "silent",
              "clusters": [{"name": "silent", "cluster": {
                  "server": "https://127.0.0.1:%d" % silent_server.getsockname()[1],
                  "certificate-authority-data": data(pki.cert_pem(authority.cert))}}],
              "users": [{"name": "someone", "user": {"client-certificate-data": data(pki.cert_pem(cert)),
                                                     "client-key-data": data(key_pem)}}],
              "contexts": [{"name": "silent", "context": {"cluster": "silent", "user": "someone"}}]}
    path = tmp_path / "user" / "kubeconfig"
    path.parent.mkdir()
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    secrets = [data(key_pem)[:48], key_pem.decode().splitlines()[1][:48], TOKEN, data(TOKEN.encode())[:40]]
    return config, path, secrets


def run_and_kill(silent_server, tmp_path, task_args, env):
    """Start a one-task playbook in its own session, SIGKILL all of it once the module has connected."""
    temporary = {name: tmp_path / name for name in ("tmp", "remote", "local")}
    for directory in temporary.values():
        directory.mkdir()
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{
        "name": "Run a module that will be killed", "hosts": "localhost", "connection": "local",
        "gather_facts": False, "tasks": [{"name": "Read the cluster", "klutch.bind.klutch_cluster_info": task_args}]}]))
    environ = dict(env, TMPDIR=str(temporary["tmp"]), ANSIBLE_REMOTE_TMP=str(temporary["remote"]),
                   ANSIBLE_LOCAL_TEMP=str(temporary["local"]))
    command = [str(Path(sys.executable).with_name("ansible-playbook")), str(playbook)]
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("K8S_AUTH_")}
    process = subprocess.Popen(command, env=dict(inherited, **environ), cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        connection, _address = silent_server.accept()  # the module holds its credentials now
        time.sleep(0.5)
    finally:
        killed = set()
        for line in subprocess.run(["ps", "-eo", "pid=,sid="], capture_output=True, text=True, check=True).stdout.splitlines():
            pid, sid = map(int, line.split())
            if sid == process.pid:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        process.wait()
    connection.close()
    assert process.pid in killed
    return list(temporary.values())


def files_holding(directories, secrets):
    found = []
    for directory in directories:
        for path in Path(directory).rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                found += [(str(path), secret[:12]) for secret in secrets if secret.encode() in content]
    return found


@pytest.mark.parametrize("given", ["inline kubeconfig, pipelining", "kubeconfig file", "token in K8S_AUTH_API_KEY"])
def test_no_key_or_token_is_left_on_disk_after_a_sigkill_mid_run(silent_server, credentials, tmp_path, given):
    config, path, secrets = credentials
    env = {"ANSIBLE_PIPELINING": "1" if "pipelining" in given else "0"}
    args = {"kubeconfig": config} if given.startswith("inline") else {"kubeconfig": str(path)}
    if given.startswith("token"):
        args = {"host": config["clusters"][0]["cluster"]["server"], "validate_certs": False}
        env["K8S_AUTH_API_KEY"] = TOKEN
    directories = run_and_kill(silent_server, tmp_path, args, env)
    assert files_holding(directories, secrets) == []


def test_without_pipelining_ansible_itself_keeps_inline_arguments_in_its_temporary_file(
        silent_server, credentials, tmp_path):
    """Why the documentation asks for pipelining with inline credentials: this is ansible-core's doing."""
    config, _path, secrets = credentials
    directories = run_and_kill(silent_server, tmp_path, {"kubeconfig": config}, {"ANSIBLE_PIPELINING": "0"})
    leftovers = files_holding(directories, secrets)
    assert leftovers and all("AnsiballZ_" in path for path, _secret in leftovers), leftovers


def test_a_finished_run_leaves_no_temporary_file_with_a_key(credentials, tmp_path, app):
    config, _path, secrets = credentials
    config["clusters"][0]["cluster"]["server"] = app.server  # its certificate is not the CA's: fails at once
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{
        "name": "Run a module to its end", "hosts": "localhost", "connection": "local", "gather_facts": False,
        "tasks": [{"name": "Read the cluster", "klutch.bind.klutch_cluster_info": {"kubeconfig": config},
                   "ignore_errors": True}]}]))
    (tmp_path / "tmp").mkdir()
    completed = ansible_playbook(playbook, env={"TMPDIR": str(tmp_path / "tmp"), "ANSIBLE_PIPELINING": "0",
                                                "ANSIBLE_REMOTE_TMP": str(tmp_path / "tmp"),
                                                "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")}, cwd=tmp_path)
    assert "failed=0" in completed.stdout and "ignored=1" in completed.stdout, completed.stdout
    assert files_holding([tmp_path / "tmp"], secrets) == []
