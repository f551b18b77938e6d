"""The collection as a user installs it, from the README alone: a virtualenv that holds only ansible-core
and requirements.txt, the collection installed from its built tarball, and the main playbook run by its
name against the lab, with an inventory whose hosts use the Python that runs Ansible."""

import os
import subprocess
import sys

import yaml

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import condition_holds
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_BINDINGS
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER
from playbook_runner import ROOT, recaps

LAB_VARS = ROOT / "playbooks" / "vars" / "lab.yml"


def run(command, **options):
    completed = subprocess.run(command, capture_output=True, text=True, check=False, **options)
    assert completed.returncode == 0, (command, completed.stdout[-3000:], completed.stderr[-3000:])
    return completed


def test_a_virtualenv_with_only_the_requirements_installs_the_collection_and_binds_by_playbook_name(
        lab, control_plane, sample_dataservices, audit, tmp_path):
    venv, collections = tmp_path / "venv", tmp_path / "collections"
    # Nothing of this run's environment: no Ansible settings, no collections path, no Python path.
    environ = {key: value for key, value in os.environ.items()
               if not key.startswith(("K8S_AUTH_", "ANSIBLE_", "PYTHON"))}
    environ.update(ANSIBLE_COLLECTIONS_PATH=str(collections), PATH=f"{venv / 'bin'}:{environ['PATH']}",
                   ANSIBLE_NOCOLOR="1")
    run([sys.executable, "-m", "venv", str(venv)], env=environ)
    run([str(venv / "bin" / "pip"), "install", "--quiet", "ansible-core>=2.17", "-r", str(ROOT / "requirements.txt")],
        env=environ)
    run([str(venv / "bin" / "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), str(ROOT)],
        env=environ)
    tarball = next(tmp_path.glob("klutch-bind-*.tar.gz"))
    run([str(venv / "bin" / "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(collections)],
        env=environ, cwd=tmp_path)
    assert (collections / "ansible_collections" / "klutch" / "bind" / "playbooks" / "bind_app_cluster.yml").exists()

    lab.up(list(lab.state["clusters"]) + ["app-install"])
    try:
        # The lab's inventory with only the control plane and the new app cluster; like the README's, its
        # hosts use the Python that runs ansible-playbook, here the new virtualenv's.
        inventory = yaml.safe_load(lab.inventory.read_text())
        app_clusters = inventory["all"]["children"]["app_clusters"]["hosts"]
        inventory["all"]["children"]["app_clusters"]["hosts"] = {"app-install": app_clusters["app-install"]}
        assert app_clusters["app-install"]["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
        path = tmp_path / "inventory.yml"
        path.write_text(yaml.safe_dump(inventory))
        command = [str(venv / "bin" / "ansible-playbook"), "-i", str(path), "-e", f"@{LAB_VARS}",
                   "-e", "konnector_mode=none", "-e", "control_plane_backend=none", "klutch.bind.bind_app_cluster"]
        first = run(command, env=environ, cwd=tmp_path)
        app = ClusterClient.from_params({"kubeconfig": str(lab.cluster("app-install").admin_kubeconfig)}, environ={})
        binding = app.get(API_SERVICE_BINDINGS, "postgresqlinstances.samples.klutch.bind", "klutch-bind")
        assert condition_holds("Ready")(binding), first.stdout[-3000:]

        start = now()
        second = run(command, env=environ, cwd=tmp_path)
        assert all(counts["changed"] == 0 for counts in recaps(second).values()), second.stdout
        assert audit(lab.cluster("app-install")).count_writes(since=start, user=ADMIN_USER) == 0
    finally:
        lab.down(["app-install"])
