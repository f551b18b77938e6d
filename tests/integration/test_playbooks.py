"""The collection's playbooks, run with ansible-playbook against the lab's inventory."""

from playbook_runner import ansible_playbook


def test_bind_app_cluster_reaches_every_cluster_of_the_inventory(lab, app, control_plane):
    run = ansible_playbook("playbooks/bind-app-cluster.yml", "-i", str(lab.inventory))
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"control plane control-plane answers at {control_plane.server}, Kubernetes v1.34.2" in run.stdout
    assert f"app cluster app answers at {app.server}, Kubernetes v1.34.2" in run.stdout
    assert "changed=1" not in run.stdout and "failed=1" not in run.stdout


def test_bind_app_cluster_names_the_host_that_cannot_be_reached(lab, tmp_path):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(lab.inventory.read_text().replace(str(lab.cluster("app").admin_kubeconfig),
                                                           str(tmp_path / "missing.kubeconfig")))
    run = ansible_playbook("playbooks/bind-app-cluster.yml", "-i", str(inventory))
    assert run.returncode != 0
    assert f"The kubeconfig file {tmp_path / 'missing.kubeconfig'} does not exist" in run.stdout + run.stderr
    assert "fatal: [app]" in run.stdout and "fatal: [control-plane]" not in run.stdout
