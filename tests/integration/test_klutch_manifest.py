"""klutch.bind.klutch_manifest through ansible-playbook: check mode, idempotence, bad input, delete."""

import uuid

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import CONFIG_MAPS, CUSTOM_RESOURCE_DEFINITIONS
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER

MODULE = "klutch.bind.klutch_manifest"


def gizmo_crd(group):
    return f"""
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {{name: gizmos.{group}}}
spec:
  group: {group}
  names: {{kind: Gizmo, plural: gizmos, singular: gizmo, listKind: GizmoList}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema: {{openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}}}
"""


@pytest.fixture
def manifest(namespace):
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    text = gizmo_crd(group) + f"""---
apiVersion: {group}/v1
kind: Gizmo
metadata: {{name: g1, namespace: {namespace}}}
spec: {{size: 1}}
---
apiVersion: v1
kind: Secret
metadata: {{name: creds}}
stringData: {{password: hunter2}}
"""
    return group, text


def writes(audit, app, since):
    return audit(app).count_writes(since=since, user=ADMIN_USER)


def test_check_mode_writes_nothing_and_plans_objects_of_a_new_crd(run_task, app, audit, manifest, namespace, admin):
    group, text = manifest
    start = now()
    result, output = run_task(MODULE, {"kubeconfig": str(app.admin_kubeconfig), "definition": text,
                                       "namespace": namespace}, check=True)
    assert result["changed"] and [entry["action"] for entry in result["results"]] == ["created"] * 3
    assert writes(audit, app, start) == 0
    assert admin.get(CUSTOM_RESOURCE_DEFINITIONS, f"gizmos.{group}") is None
    assert "hunter2" not in output


def test_apply_then_second_run_is_unchanged_without_a_write(run_task, app, audit, manifest, namespace, admin):
    group, text = manifest
    args = {"kubeconfig": str(app.admin_kubeconfig), "definition": text, "namespace": namespace}
    first = run_task(MODULE, args)[0]
    assert first["changed"], first
    assert admin.get(CUSTOM_RESOURCE_DEFINITIONS, f"gizmos.{group}") is not None
    start = now()
    second = run_task(MODULE, args)[0]
    assert not second["changed"]
    assert [entry["action"] for entry in second["results"]] == ["unchanged"] * 3
    assert writes(audit, app, start) == 0

    removed = run_task(MODULE, dict(args, state="absent", wait=True))[0]
    assert [entry["action"] for entry in removed["results"]] == ["deleted"] * 3
    assert admin.get(CUSTOM_RESOURCE_DEFINITIONS, f"gizmos.{group}") is None
    again = run_task(MODULE, dict(args, state="absent"))[0]
    assert not again["changed"] and {entry["action"] for entry in again["results"]} == {"absent"}


def test_diff_redacts_secret_values(run_task, app, namespace):
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shown", "namespace": namespace},
              "stringData": {"token": "s3cr3t-value"}}
    result, output = run_task(MODULE, {"kubeconfig": str(app.admin_kubeconfig), "definition": secret}, diff=True)
    assert result["diff"][0]["after"]["data"] == {"token": "VALUE_REDACTED"}
    assert "s3cr3t-value" not in output and "czNjcjN0LXZhbHVl" not in output


@pytest.mark.parametrize("definition, message", [
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: default}\n---\napiVersion: nothing.example.com/v1\n"
     "kind: Widget\nmetadata: {name: w}\n",
     "Widget w: cluster app ({server}) does not serve kind Widget in nothing.example.com/v1. Install its "
     "CustomResourceDefinition first, or list the CRD before this object."),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: default}\n---\napiVersion: v1\nkind: ConfigMap\n"
     "metadata: {}\n",
     "definition, document 2 (kind ConfigMap) lacks metadata.name: add it."),
    ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok, namespace: default}\n---\napiVersion: v1\n"
     "kind: ConfigMap\nmetadata: {name: nowhere}\n",
     "ConfigMap nowhere is namespaced but names no namespace: set metadata.namespace or the namespace option."),
])
def test_bad_input_fails_clearly_and_writes_nothing(run_task, app, audit, admin, definition, message):
    start = now()
    result = run_task(MODULE, {"kubeconfig": str(app.admin_kubeconfig), "definition": definition})[0]
    assert result["failed"] and result["msg"] == message.format(server=app.server)
    assert writes(audit, app, start) == 0
    assert admin.get(CONFIG_MAPS, "ok", "default") is None


def test_invalid_yaml_file_fails_clearly_and_writes_nothing(run_task, app, audit, tmp_path):
    src = tmp_path / "manifests"
    src.mkdir()
    (src / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine, namespace: default}\n")
    (src / "b.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [broken\n")
    start = now()
    result = run_task(MODULE, {"kubeconfig": str(app.admin_kubeconfig), "src": str(src)})[0]
    assert result["failed"] and result["msg"].startswith(f"{src / 'b.yaml'} is not valid YAML at line")
    assert writes(audit, app, start) == 0


def test_a_namespace_missing_on_an_object_of_a_new_crd_is_refused_before_the_crd_is_written(run_task, app, audit,
                                                                                            admin):
    group = f"g{uuid.uuid4().hex[:6]}.example.com"
    text = gizmo_crd(group) + f"---\napiVersion: {group}/v1\nkind: Gizmo\nmetadata: {{name: homeless}}\n"
    start = now()
    result = run_task(MODULE, {"kubeconfig": str(app.admin_kubeconfig), "definition": text})[0]
    assert result["failed"]
    assert result["msg"] == ("Gizmo homeless is namespaced but names no namespace: set metadata.namespace or the "
                             "namespace option.")
    assert writes(audit, app, start) == 0
    assert admin.get(CUSTOM_RESOURCE_DEFINITIONS, f"gizmos.{group}") is None
