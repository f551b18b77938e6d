"""The konnector role and the control plane's backend agent: Deployment and local modes, least
privilege checked by the API server's own authorizer, check mode, diff, idempotence and absent.

The lab has no node: Deployments are applied with the rollout wait off and never run here."""

import base64
import hashlib
import json
import os

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CLUSTER_ROLES,
    CONFIG_MAPS,
    CUSTOM_RESOURCE_DEFINITIONS,
    DEPLOYMENTS,
    NAMESPACES,
    Resource,
    SECRETS,
    SERVICE_ACCOUNTS,
)
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER
from playbook_runner import recap
from sync_world import konnector_play

ACCESS_REVIEWS = Resource("authorization.k8s.io/v1", "SubjectAccessReview", "subjectaccessreviews", namespaced=False)
KONNECTOR_USER = "system:serviceaccount:klutch-bind:klutch-bind-konnector"
IMAGE = "registry.example.com/klutch-bind-agent:0.1.0"


@pytest.fixture(scope="module")
def app_role(lab, tmp_path_factory):
    lab.up(list(lab.state["clusters"]) + ["app-role"])
    cluster = lab.cluster("app-role")
    cluster.run_dir = tmp_path_factory.mktemp("agents")
    cluster.client = ClusterClient.from_params({"kubeconfig": str(cluster.admin_kubeconfig)}, environ={})
    yield cluster
    lab.down(["app-role"])


def konnector(cluster, **variables):
    return konnector_play(cluster, variables.pop("konnector_mode", "deployment"), cluster.run_dir,
                          konnector_agent_delivery="image", konnector_image=IMAGE, konnector_rollout_wait=False,
                          **variables)


def allowed(client, user, verb, resource, namespace=None, group="", name=None):
    """What the API server's authorizer says the user may do."""
    attributes = {"verb": verb, "resource": resource, "group": group}
    if namespace:
        attributes["namespace"] = namespace
    if name:
        attributes["name"] = name
    review = client.write("POST", ACCESS_REVIEWS, {"apiVersion": ACCESS_REVIEWS.api_version,
                                                   "kind": ACCESS_REVIEWS.kind,
                                                   "spec": {"user": user, "resourceAttributes": attributes}})
    return review["status"].get("allowed", False)


def test_deployment_mode_plans_in_check_mode_then_applies_once(app_role, run_playbook, audit):
    client = app_role.client
    start = now()
    checked = run_playbook(konnector(app_role), check=True)
    assert checked.returncode == 0, checked.stdout
    assert audit(app_role).count_writes(since=start, user=ADMIN_USER) == 0
    assert client.get(NAMESPACES, "klutch-bind") is None

    applied = run_playbook(konnector(app_role), diff=True)
    assert applied.returncode == 0, applied.stdout
    deployment = client.get(DEPLOYMENTS, "klutch-bind-konnector", "klutch-bind")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "klutch-bind-konnector"
    assert pod["containers"][0]["image"] == IMAGE
    assert "--grant-claims-to=klutch-bind/klutch-bind-konnector" in pod["containers"][0]["args"]
    assert deployment["spec"]["replicas"] == 2
    assert client.get(CUSTOM_RESOURCE_DEFINITIONS, "apiservicebindings.klutch.anynines.com") is not None
    token = client.wait(SECRETS, "klutch-bind-konnector-token", "klutch-bind",
                        lambda obj: bool(((obj or {}).get("data") or {}).get("token")), 30, "issued a token")
    assert base64.b64decode(token["data"]["token"]).decode() not in applied.stdout, "the diff shows no token"

    start = now()
    again = run_playbook(konnector(app_role))
    assert recap(again)["changed"] == 0, again.stdout
    assert audit(app_role).count_writes(since=start, user=ADMIN_USER) == 0


def test_the_konnector_holds_least_privilege(app_role, run_playbook):
    client = app_role.client
    assert allowed(client, KONNECTOR_USER, "list", "secrets", "klutch-bind")
    assert not allowed(client, KONNECTOR_USER, "list", "secrets"), "no Secrets cluster-wide"
    assert not allowed(client, KONNECTOR_USER, "get", "secrets", "default"), "claimed kinds only where it binds them"
    assert allowed(client, KONNECTOR_USER, "create", "leases", "klutch-bind", group="coordination.k8s.io")
    assert not allowed(client, KONNECTOR_USER, "create", "leases", "default", group="coordination.k8s.io")
    assert allowed(client, KONNECTOR_USER, "bind", "clusterroles", group="rbac.authorization.k8s.io",
                   name="klutch-bind-konnector-claims")
    assert not allowed(client, KONNECTOR_USER, "bind", "clusterroles", group="rbac.authorization.k8s.io",
                       name="cluster-admin")
    assert not allowed(client, KONNECTOR_USER, "create", "clusterroles", group="rbac.authorization.k8s.io")
    assert not allowed(client, KONNECTOR_USER, "delete", "customresourcedefinitions", group="apiextensions.k8s.io",
                       name="apiservicebindings.klutch.anynines.com")
    for role in client.list(CLUSTER_ROLES)[0]:
        if role["metadata"]["name"].startswith("klutch-bind-konnector"):
            for rule in role.get("rules") or []:
                assert "*" not in rule.get("verbs", []) + rule.get("resources", []) + rule.get("apiGroups", []), role


def test_local_mode_replaces_the_deployment_with_a_process_restarted_on_change(app_role, run_playbook):
    client = app_role.client
    local = run_playbook(konnector(app_role, konnector_mode="local"))
    assert local.returncode == 0, local.stdout
    assert client.get(DEPLOYMENTS, "klutch-bind-konnector", "klutch-bind") is None
    assert "konnector started" in local.stdout
    state = json.loads((app_role.run_dir / "konnector" / "state.json").read_text())
    os.kill(state["pid"], 0)  # running
    assert oct((app_role.run_dir / "konnector" / "kubeconfig").stat().st_mode & 0o777) == "0o600"

    again = run_playbook(konnector(app_role, konnector_mode="local"))
    assert recap(again)["changed"] == 0, again.stdout
    changed = run_playbook(konnector(app_role, konnector_mode="local", konnector_resync=7))
    assert "konnector restarted" in changed.stdout
    restarted = json.loads((app_role.run_dir / "konnector" / "state.json").read_text())
    assert restarted["pid"] != state["pid"] and restarted["health_port"] == state["health_port"]
    with pytest.raises(ProcessLookupError):
        os.kill(state["pid"], 0)


def test_absent_stops_the_agent_and_removes_its_rbac_but_keeps_the_bindings_home(app_role, run_playbook):
    client = app_role.client
    pid = json.loads((app_role.run_dir / "konnector" / "state.json").read_text())["pid"]
    checked = run_playbook(konnector(app_role, konnector_mode="local", konnector_state="absent"), check=True)
    assert checked.returncode == 0, checked.stdout
    os.kill(pid, 0)  # check mode stopped nothing
    assert client.get(SERVICE_ACCOUNTS, "klutch-bind-konnector", "klutch-bind") is not None

    removed = run_playbook(konnector(app_role, konnector_mode="local", konnector_state="absent"))
    assert removed.returncode == 0, removed.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert client.get(SERVICE_ACCOUNTS, "klutch-bind-konnector", "klutch-bind") is None
    assert client.get(CLUSTER_ROLES, "klutch-bind-konnector") is None
    assert client.get(NAMESPACES, "klutch-bind") is not None
    again = run_playbook(konnector(app_role, konnector_mode="local", konnector_state="absent"))
    assert recap(again)["changed"] == 0, again.stdout


def test_the_control_plane_role_runs_the_backend_as_a_deployment(control_plane, control_plane_play, run_playbook,
                                                                 run_task, tmp_path):
    client = ClusterClient.from_params({"kubeconfig": str(control_plane.admin_kubeconfig)}, environ={})
    # The default delivery: the bundle in a ConfigMap, run by the official Python image.
    play = control_plane_play(control_plane_backend="deployment", control_plane_backend_rollout_wait=False)
    applied = run_playbook(play)
    assert applied.returncode == 0, applied.stdout
    bundle = base64.b64decode(client.get(CONFIG_MAPS, "klutch-bind-backend-bundle", "klutch-bind-system")[
        "binaryData"]["agent.zip"])
    template = client.get(DEPLOYMENTS, "klutch-bind-backend", "klutch-bind-system")["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert container["image"] == "docker.io/library/python:3.11-slim-bookworm" and container["args"][0] == "backend"
    assert template["metadata"]["annotations"]["klutch.bind/bundle-sha256"] == hashlib.sha256(bundle).hexdigest()
    assert template["spec"]["serviceAccountName"] == "klutch-bind-backend"
    again = run_playbook(play)
    assert recap(again)["changed"] == 0, again.stdout

    # A team's own image: the ConfigMap goes; the image delivery refuses to run without an image.
    missing = run_playbook(control_plane_play(control_plane_backend="deployment",
                                              control_plane_backend_agent_delivery="image"))
    assert missing.returncode != 0 and "set control_plane_backend_image" in missing.stdout, missing.stdout
    play = control_plane_play(control_plane_backend="deployment", control_plane_backend_agent_delivery="image",
                              control_plane_backend_image=IMAGE, control_plane_backend_rollout_wait=False)
    applied = run_playbook(play)
    assert applied.returncode == 0, applied.stdout
    template = client.get(DEPLOYMENTS, "klutch-bind-backend", "klutch-bind-system")["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert container["image"] == IMAGE and "command" not in container and not template["metadata"].get("annotations")
    assert client.get(CONFIG_MAPS, "klutch-bind-backend-bundle", "klutch-bind-system") is None
    again = run_playbook(play)
    assert recap(again)["changed"] == 0, again.stdout
    # Back to no agent of ours on the shared control plane: local mode removes the Deployment.
    # Switching to local mode removes the Deployment; the local agent is stopped again at the end.
    local = run_playbook(control_plane_play(control_plane_backend="local", control_plane_backend_run_dir=str(tmp_path),
                                            control_plane_backend_agent_name="backend"))
    try:
        assert local.returncode == 0, local.stdout
        assert client.get(DEPLOYMENTS, "klutch-bind-backend", "klutch-bind-system") is None
    finally:
        result, output = run_task("klutch.bind.klutch_agent", {"role": "backend", "run_dir": str(tmp_path),
                                                               "state": "absent"})
        assert result["action"] == "stopped", output
