"""An agent as a Deployment: what both roles apply, for either delivery."""

from ansible_collections.klutch.bind.plugins.module_utils.agent.deployment import manifests

BUNDLE = {"data": "UEsFBg==", "sha256": "ab12", "entry": "ansible_collections.klutch.bind.plugins.module_utils.agent.cli"}
PYTHON = "docker.io/library/python:3.11-slim-bookworm"


def pod_of(deployment):
    return deployment["spec"]["template"]["spec"]


def test_the_bundle_rides_in_a_configmap_that_an_official_python_runs():
    config_map, deployment = manifests("konnector", ["--resync=30"], "2", PYTHON, (), BUNDLE)
    assert (config_map["kind"], config_map["metadata"]["name"], config_map["metadata"]["namespace"]) == (
        "ConfigMap", "klutch-bind-konnector-bundle", "klutch-bind")
    assert config_map["binaryData"] == {"agent.zip": BUNDLE["data"]}
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["metadata"]["annotations"] == {"klutch.bind/bundle-sha256": "ab12"}
    container = pod_of(deployment)["containers"][0]
    assert container["image"] == PYTHON and container["command"] == ["python", "-S", "-m", BUNDLE["entry"]]
    assert container["args"] == ["konnector", "--identity=$(POD_NAME)", "--health-port=8081", "--resync=30"]
    assert {"name": "PYTHONPATH", "value": "/opt/klutch-bind/agent.zip"} in container["env"]
    assert {"name": "bundle", "configMap": {"name": "klutch-bind-konnector-bundle"}} in pod_of(deployment)["volumes"]


def test_an_image_of_ones_own_runs_alone():
    [deployment] = manifests("backend", [], 1, "registry.example.com/klutch-bind-agent:1", ["pull"])
    assert (deployment["metadata"]["name"], deployment["metadata"]["namespace"]) == (
        "klutch-bind-backend", "klutch-bind-system")
    pod = pod_of(deployment)
    assert "command" not in pod["containers"][0] and "annotations" not in deployment["spec"]["template"]["metadata"]
    assert [volume["name"] for volume in pod["volumes"]] == ["tmp"]
    assert pod["imagePullSecrets"] == [{"name": "pull"}] and pod["serviceAccountName"] == "klutch-bind-backend"


def test_the_pods_run_unprivileged_on_a_read_only_root():
    for bundle in (BUNDLE, None):
        pod = pod_of(manifests("konnector", [], 2, PYTHON, (), bundle)[-1])
        assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                          "seccompProfile": {"type": "RuntimeDefault"}}
        container = pod["containers"][0]
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                "capabilities": {"drop": ["ALL"]}}
        assert (container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"]) == (
            "/healthz", "/readyz")
