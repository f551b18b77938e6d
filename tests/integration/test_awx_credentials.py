"""The playbooks as an AWX/AAP job runs them: connections only from what the two custom credential
types inject (their injectors rendered as AWX renders them), an inventory without kubeconfigs."""

import jinja2
import pytest
import yaml

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_BINDINGS
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER
from playbook_runner import ROOT, ansible_playbook, recaps

CREDENTIAL_TYPES = ROOT / "extensions" / "awx" / "credential_types"
LAB_VARS = ROOT / "playbooks" / "vars" / "lab.yml"


def inject(credential_type, inputs, directory):
    """(env, extra vars) that AWX injects for a credential of this type with these inputs."""
    injectors = yaml.safe_load((CREDENTIAL_TYPES / credential_type).read_text())["injectors"]
    files = {}
    for key, template in injectors.get("file", {}).items():
        path = directory / f"{credential_type}.{key.split('.', 1)[1]}"
        path.write_text(jinja2.Template(template).render(**inputs))
        path.chmod(0o600)
        files[key.split(".", 1)[1]] = str(path)
    context = dict(inputs, tower={"filename": files})
    render = {section: {name: jinja2.Template(value).render(**context)
                        for name, value in injectors.get(section, {}).items()} for section in ("env", "extra_vars")}
    return render["env"], render["extra_vars"]


LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}


@pytest.mark.parametrize("credential", ["klutch app cluster", "built-in bearer token"])
def test_without_the_control_plane_credential_no_playbook_writes_anything(
        app, control_plane, audit, tmp_path, token, credential):
    # A job with only the app clusters' credential: the control plane's tasks must not fall back to the
    # K8S_AUTH_* variables it sets (a kubeconfig file; or, AWX's built-in Kubernetes bearer token type,
    # a host and token), which point at an app cluster.
    if credential == "klutch app cluster":
        app_env = inject("klutch-app-cluster.yml", {"kubeconfig": app.admin_kubeconfig.read_text()}, tmp_path)[0]
    else:
        app_env = {"K8S_AUTH_HOST": app.server, "K8S_AUTH_API_KEY": token, "K8S_AUTH_VERIFY_SSL": "True",
                   "K8S_AUTH_SSL_CA_CERT": str(app.ca_cert)}
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {
        "control_plane": {"hosts": {"control-plane": LOCAL}}, "app_clusters": {"hosts": {"app": LOCAL}}}}}))
    start = now()
    for playbook, extra in (("publish_service.yml", []), ("bind_app_cluster.yml", ["-e", f"@{LAB_VARS}"]),
                            ("unbind_app_cluster.yml", ["-e", "klutch_unbind_control_plane=exports"])):
        run = ansible_playbook(f"playbooks/{playbook}", "-i", str(inventory), *extra, env=app_env)
        assert run.returncode != 0, playbook
        assert "control-plane has no kubeconfig of its own" in run.stdout, run.stdout
        assert "klutch_control_plane_kubeconfig" in run.stdout
    for cluster in (app, control_plane):
        assert audit(cluster).count_writes(since=start, user=ADMIN_USER) == 0, cluster.name
    assert audit(app).count_writes(since=start, user="system:serviceaccount:default:token-holder") == 0


def test_each_playbook_runs_with_only_what_the_credential_types_inject(lab, control_plane, sample_dataservices,
                                                                       run_task, tmp_path):
    lab.up(list(lab.state["clusters"]) + ["app-awx"])
    cluster = lab.cluster("app-awx")
    agents = tmp_path / "agents"
    app_env, app_vars = inject("klutch-app-cluster.yml", {"kubeconfig": cluster.admin_kubeconfig.read_text()},
                               tmp_path)
    cp_env, cp_vars = inject("klutch-control-plane.yml", {"kubeconfig": control_plane.admin_kubeconfig.read_text(),
                                                          "context": ""}, tmp_path)
    assert not set(app_env) & set(cp_env) and not set(app_vars) & set(cp_vars), "the injectors clash"
    # An AWX inventory: hosts and their variables, no kubeconfig anywhere.
    inventory = tmp_path / "inventory.yml"
    lab_control_plane = lab.inventory_data()["all"]["children"]["control_plane"]["hosts"]["control-plane"]
    registry = {key: lab_control_plane[key] for key in ("crossplane_registry", "crossplane_crank")}
    inventory.write_text(yaml.safe_dump({"all": {"children": {
        "control_plane": {"hosts": {"control-plane": dict(LOCAL, **registry)}},
        "app_clusters": {"hosts": {"app-awx": LOCAL}}}}}))
    extra_vars = tmp_path / "extra-vars.yml"
    extra_vars.write_text(yaml.safe_dump(dict(app_vars, **cp_vars)))
    # The lab runs no Pods here: both agents as local processes.
    options = ["-i", str(inventory), "-e", f"@{LAB_VARS}", "-e", f"@{extra_vars}",
               "-e", f"konnector_run_dir={agents}", "-e", f"control_plane_backend_run_dir={agents}",
               "-e", "konnector_mode=local", "-e", "control_plane_backend=local"]
    environment = dict(app_env, **cp_env)
    app = ClusterClient.from_params({"kubeconfig": str(cluster.admin_kubeconfig)}, environ={})
    try:
        for playbook in ("publish_service.yml", "bind_app_cluster.yml"):
            run = ansible_playbook(f"playbooks/{playbook}", *options, env=environment)
            assert run.returncode == 0, run.stdout + run.stderr
        assert app.get(API_SERVICE_BINDINGS, "postgresqlinstances.samples.klutch.bind", "klutch-bind") is not None
        again = ansible_playbook("playbooks/bind_app_cluster.yml", *options, env=environment)
        assert all(counts["changed"] == 0 for counts in recaps(again).values()), again.stdout
        unbound = ansible_playbook("playbooks/unbind_app_cluster.yml", *options, env=environment)
        assert unbound.returncode == 0, unbound.stdout + unbound.stderr
        assert app.get(API_SERVICE_BINDINGS, "postgresqlinstances.samples.klutch.bind", "klutch-bind") is None
        for secret in (cluster.admin_kubeconfig.read_text(), control_plane.admin_kubeconfig.read_text()):
            token_like = yaml.safe_load(secret)["users"][0]["user"]["client-key-data"]
            assert token_like not in again.stdout + unbound.stdout, "a credential reached the output"
    finally:
        for role, name in (("konnector", "konnector-app-awx"), ("backend", "backend-control-plane")):
            run_task("klutch.bind.klutch_agent", {"role": role, "name": name, "run_dir": str(agents),
                                                  "state": "absent"})
        lab.down(["app-awx"])
