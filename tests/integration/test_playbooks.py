"""The collection's playbooks, run with ansible-playbook against the lab's inventory."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ansible_playbook(*args):
    command = [str(Path(sys.executable).with_name("ansible-playbook")), *args]
    environ = dict(os.environ, ANSIBLE_NOCOLOR="1")
    return subprocess.run(command, capture_output=True, text=True, env=environ, cwd=ROOT, check=False)


def test_bind_app_cluster_reaches_every_cluster_of_the_inventory(lab, app, control_plane):
    run = ansible_playbook("-i", str(lab.inventory), "playbooks/bind-app-cluster.yml")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"control plane control-plane answers at {control_plane.server}, Kubernetes v1.34.2" in run.stdout
    assert f"app cluster app answers at {app.server}, Kubernetes v1.34.2" in run.stdout
    assert "changed=1" not in run.stdout and "failed=1" not in run.stdout


def test_bind_app_cluster_names_the_host_that_cannot_be_reached(lab, tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(lab.inventory.read_text().replace(str(lab.cluster("app").admin_kubeconfig),
                                                           str(tmp_path / "missing.kubeconfig")))
    run = ansible_playbook("-i", str(inventory), "playbooks/bind-app-cluster.yml")
    assert run.returncode != 0
    assert f"The kubeconfig file {tmp_path / 'missing.kubeconfig'} does not exist" in run.stdout + run.stderr
    assert "fatal: [app]" in run.stdout and "fatal: [control-plane]" not in run.stdout
