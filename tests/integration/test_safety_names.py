"""Mistakes in names never reach a collection or another API path: every module with a name, on the lab.

An undefined variable renders as "" in Ansible; "#" would end a URL path (and drop the dryRun that
check mode relies on), "../" would climb to another path. Each case states what must hold on the
cluster afterwards: the same objects as before, and not one write in the audit log, dry runs included.
"""

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CONFIG_MAPS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_BINDINGS, EXPORT_TEMPLATES
from conftest import KLUTCH_CRDS
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER

BAD_NAMES = ["", "#", "..", "../../../../api/v1/namespaces/victim/configmaps/precious", "a/b", "x?dryRun=All"]
VICTIM = "victim"
WIDGETS_CRD = {
    "metadata": {"name": "widgets.safety.example.com"},
    "spec": {"group": "safety.example.com", "scope": "Namespaced",
             "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
}


@pytest.fixture(scope="module")
def victims(klutch_apis, admin_app):
    """Objects a wrong path could reach: two templates, a ConfigMap in another namespace, on both clusters."""
    cp = klutch_apis
    cp.apply(CUSTOM_RESOURCE_DEFINITIONS, WIDGETS_CRD)
    for client in (cp, admin_app):
        client.apply(NAMESPACES, {"metadata": {"name": VICTIM}})
        client.apply(CONFIG_MAPS, {"metadata": {"name": "precious", "namespace": VICTIM}, "data": {"keep": "me"}})
    for name in ("first", "second"):
        cp.apply(EXPORT_TEMPLATES, {"metadata": {"name": name, "namespace": VICTIM},
                                    "spec": {"APIServiceSelector": {"group": "safety.example.com",
                                                                    "resource": "widgets"}}})
    return cp


@pytest.fixture(scope="module")
def admin_app(app, client_for, run_task):
    client = client_for(app.admin_kubeconfig)
    applied, output = run_task("klutch.bind.klutch_manifest", {"kubeconfig": str(app.admin_kubeconfig),
                                                               "src": str(KLUTCH_CRDS), "wait": True})
    assert not applied.get("failed"), output
    client.apply(NAMESPACES, {"metadata": {"name": "klutch-bind"}})
    client.apply(API_SERVICE_BINDINGS, {"metadata": {"name": "widgets.safety.example.com", "namespace": "klutch-bind"},
                                        "spec": {"kubeconfigSecretRef": {"namespace": "klutch-bind", "name": "kc",
                                                                         "key": "kubeconfig"}}})
    return client


def contents(client):
    """What a wrong path could have touched, by name."""
    return {
        "templates": sorted(item["metadata"]["name"] for item in client.list(EXPORT_TEMPLATES)[0])
        if client.resource_for(EXPORT_TEMPLATES.api_version, EXPORT_TEMPLATES.kind) else [],
        "bindings": sorted(item["metadata"]["name"] for item in client.list(API_SERVICE_BINDINGS)[0])
        if client.resource_for(API_SERVICE_BINDINGS.api_version, API_SERVICE_BINDINGS.kind) else [],
        "configmaps": (client.get(CONFIG_MAPS, "precious", VICTIM) or {}).get("data"),
    }


def refused_without_a_trace(run_task, audit, cluster, client, module, args, option, check=False):
    before, start = contents(client), now()
    result, output = run_task(module, args, check=check)
    assert result.get("failed"), output
    assert option in result["msg"] and "Traceback" not in output, result["msg"]
    assert contents(client) == before
    assert audit(cluster).count_writes(since=start, user=ADMIN_USER, include_dry_run=True) == 0
    return result["msg"]


@pytest.mark.parametrize("check", [False, True], ids=["run", "check"])
@pytest.mark.parametrize("name", BAD_NAMES)
def test_klutch_template_absent_with_a_bad_name_deletes_nothing(run_task, audit, control_plane, victims, name, check):
    message = refused_without_a_trace(run_task, audit, control_plane, victims, "klutch.bind.klutch_template", {
        "kubeconfig": str(control_plane.admin_kubeconfig), "name": name, "namespace": VICTIM, "state": "absent"},
        "name", check=check)
    assert "Set name to a valid Kubernetes name" in message


@pytest.mark.parametrize("namespace", ["", "../kube-system"])
def test_klutch_template_with_a_bad_namespace_deletes_nothing(run_task, audit, control_plane, victims, namespace):
    refused_without_a_trace(run_task, audit, control_plane, victims, "klutch.bind.klutch_template", {
        "kubeconfig": str(control_plane.admin_kubeconfig), "name": "first", "namespace": namespace,
        "state": "absent"}, "namespace")


@pytest.mark.parametrize("name", BAD_NAMES)
def test_klutch_binding_absent_with_a_bad_name_deletes_nothing(run_task, audit, app, admin_app, victims, name):
    refused_without_a_trace(run_task, audit, app, admin_app, "klutch.bind.klutch_binding", {
        "kubeconfig": str(app.admin_kubeconfig), "name": name, "state": "absent", "delete_crd": True}, "name")


@pytest.mark.parametrize("name", ["", "../../../apis/pkg.crossplane.io/v1/configurations"])
def test_klutch_dataservice_absent_with_a_bad_name_deletes_nothing(run_task, audit, control_plane, victims, name):
    refused_without_a_trace(run_task, audit, control_plane, victims, "klutch.bind.klutch_dataservice", {
        "kubeconfig": str(control_plane.admin_kubeconfig), "name": name, "package": "localhost:1/x:v1",
        "state": "absent"}, "name")


@pytest.mark.parametrize("name", ["..", "../victim/configmaps/precious"])
def test_klutch_manifest_absent_with_a_bad_object_name_deletes_nothing(run_task, audit, control_plane, victims, name):
    refused_without_a_trace(run_task, audit, control_plane, victims, "klutch.bind.klutch_manifest", {
        "kubeconfig": str(control_plane.admin_kubeconfig), "state": "absent",
        "definition": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": VICTIM}}},
        "ConfigMap")


@pytest.mark.parametrize("check", [False, True], ids=["run", "check"])
def test_klutch_manifest_absent_with_a_hash_in_the_name_addresses_only_that_name(run_task, audit, control_plane,
                                                                                 victims, check):
    before, start = contents(victims), now()
    result, output = run_task("klutch.bind.klutch_manifest", {
        "kubeconfig": str(control_plane.admin_kubeconfig), "state": "absent",
        "definition": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "#", "namespace": VICTIM}}},
        check=check)
    assert not result.get("failed") and not result["changed"], output
    assert [entry["action"] for entry in result["results"]] == ["absent"]
    assert contents(victims) == before
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER, include_dry_run=True) == 0


def test_klutch_manifest_with_a_bad_namespace_option_deletes_nothing(run_task, audit, control_plane, victims):
    refused_without_a_trace(run_task, audit, control_plane, victims, "klutch.bind.klutch_manifest", {
        "kubeconfig": str(control_plane.admin_kubeconfig), "state": "absent", "namespace": "",
        "definition": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "precious"}}}, "namespace")


@pytest.mark.parametrize("consumer, cluster_id", [("", "abc123"), ("app#1", "abc123"), ("app", ""), ("app", "../x")])
def test_klutch_export_request_with_a_bad_identity_removes_no_consumer(run_task, audit, control_plane, victims,
                                                                       consumer, cluster_id):
    option = "consumer" if consumer in ("", "app#1") else "cluster_id"
    refused_without_a_trace(run_task, audit, control_plane, victims, "klutch.bind.klutch_export_request", {
        "kubeconfig": str(control_plane.admin_kubeconfig), "consumer": consumer, "cluster_id": cluster_id,
        "state": "absent", "delete_namespace": True}, option)


@pytest.mark.parametrize("name", ["", "../../etc", "."])
def test_klutch_agent_with_a_bad_name_touches_no_files(run_task, tmp_path, name):
    outside = tmp_path / "etc"
    outside.mkdir()
    (outside / "state.json").write_text("{}")
    run_dir = tmp_path / "agents" / "run"
    run_dir.mkdir(parents=True)
    result, output = run_task("klutch.bind.klutch_agent", {
        "role": "konnector", "name": name, "state": "absent", "run_dir": str(run_dir)})
    assert result.get("failed") and "name" in result["msg"], output
    assert (outside / "state.json").read_text() == "{}"
