"""Older ansible-core releases, and the minimum Python requirements, run the collection too.

scripts/setup.sh makes one venv per line of tests/ansible-core-versions.txt: an ansible-core
release and the requirements file to install next to it.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("KLUTCH_VENV") or ROOT / ".venv")
VERSIONS = [line.split()[0] for line in (ROOT / "tests" / "ansible-core-versions.txt").read_text().splitlines()
            if line.strip()]


def core_tool(version, tool):
    path = VENV / "cores" / version / "bin" / tool
    assert path.exists(), f"{path} is missing: run scripts/setup.sh"
    return str(path)


# The sample PostgreSQL API, exported and bound (the data services are the sample_dataservices fixture's).
BIND_VARIABLES = {
    "control_plane_templates": [{"name": "postgresqlinstances", "group": "samples.klutch.bind",
                                 "resource": "postgresqlinstances",
                                 "permission_claims": [{"resource": "secrets", "owner": "Provider"}]}],
    "klutch_services": [{"group": "samples.klutch.bind", "resource": "postgresqlinstances", "accept_claims": ["secrets"]}],
    # No agent: the lab inventory would run them as local processes, which outlive this test.
    "konnector_mode": "none", "control_plane_backend": "none",
}


@pytest.fixture(scope="module")
def cores_inventory(lab, sample_dataservices, tmp_path_factory):
    """An inventory with the control plane and an app cluster of its own: the playbook changes it."""
    lab.up(list(lab.state["clusters"]) + ["app-cores"])
    data = lab.inventory_data()
    hosts = data["all"]["children"]["app_clusters"]["hosts"]
    data["all"]["children"]["app_clusters"]["hosts"] = {"app-cores": hosts["app-cores"]}
    path = tmp_path_factory.mktemp("cores") / "inventory.yml"
    path.write_text(yaml.safe_dump(data))
    yield path
    lab.down(["app-cores"])


@pytest.mark.parametrize("version", VERSIONS)
def test_bind_app_cluster_runs_on_ansible_core(version, lab, cores_inventory):
    environ = dict(os.environ, ANSIBLE_NOCOLOR="1")
    reported = subprocess.run([core_tool(version, "ansible-playbook"), "--version"], capture_output=True, text=True,
                              env=environ, check=True)
    assert f"core {version}." in reported.stdout.splitlines()[0]
    run = subprocess.run([core_tool(version, "ansible-playbook"), "-i", str(cores_inventory), "-e",
                          json.dumps(BIND_VARIABLES), "playbooks/bind_app_cluster.yml"], capture_output=True, text=True,
                         env=environ, cwd=ROOT, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    # Its summary: bound through klutch_bind, with no problems.
    assert "app-cores: cluster " in run.stdout and f"({lab.cluster('app-cores').server})" in run.stdout, run.stdout
    assert "'problems': []" in run.stdout or '"problems": []' in run.stdout, run.stdout


@pytest.mark.parametrize("version", VERSIONS)
def test_module_docs_render_on_ansible_core(version):
    environ = dict(os.environ, ANSIBLE_NOCOLOR="1")
    docs = subprocess.run([core_tool(version, "ansible-doc"), "klutch.bind.klutch_cluster_info"],
                          capture_output=True, text=True, env=environ, check=True)
    assert "K8S_AUTH_KUBECONFIG" in docs.stdout


@pytest.mark.parametrize("version", VERSIONS)
def test_token_authentication_on_ansible_core(version, app, token):
    """Bearer tokens are where kubernetes package releases differed; check each installed one."""
    environ = dict(os.environ, ANSIBLE_NOCOLOR="1", K8S_AUTH_HOST=app.server, K8S_AUTH_API_KEY=token,
                   K8S_AUTH_SSL_CA_CERT=str(app.ca_cert))
    playbook = ROOT / "tests" / "integration" / "fixtures" / "cluster-info.yml"
    run = subprocess.run([core_tool(version, "ansible-playbook"), str(playbook)], capture_output=True, text=True,
                         env=environ, cwd=ROOT, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"answers at {app.server}" in run.stdout
    assert token not in run.stdout + run.stderr
