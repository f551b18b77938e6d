"""klutch.bind.klutch_template on the lab's control plane: lifecycle, check mode, refusals."""

import re

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import CUSTOM_RESOURCE_DEFINITIONS, NAMESPACES
from ansible_collections.klutch.bind.plugins.module_utils.kinds import EXPORT_TEMPLATES
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER

MODULE = "klutch.bind.klutch_template"
DATA_SERVICE_CRD = {
    "metadata": {"name": "widgetinstances.data.example.com"},
    "spec": {
        "group": "data.example.com",
        "names": {"kind": "WidgetInstance", "plural": "widgetinstances", "singular": "widgetinstance",
                  "listKind": "WidgetInstanceList"},
        "scope": "Namespaced",
        "versions": [
            {"name": "v1", "served": True, "storage": True,
             "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
            {"name": "v0", "served": False, "storage": False,
             "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}},
        ],
    },
}
CLAIMS = [{"resource": "secrets", "owner": "Provider"}, {"resource": "configmaps", "owner": "Provider"}]


@pytest.fixture(scope="module")
def cp(klutch_apis):
    klutch_apis.apply(CUSTOM_RESOURCE_DEFINITIONS, DATA_SERVICE_CRD)
    klutch_apis.apply(NAMESPACES, {"metadata": {"name": "crossplane-system"}})
    return klutch_apis


@pytest.fixture
def args(control_plane, request):
    """Arguments for a template of its own per test (the name is the test's)."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:50].strip("-")
    return {"kubeconfig": str(control_plane.admin_kubeconfig), "name": name, "group": "data.example.com",
            "resource": "widgetinstances", "version": "v1", "permission_claims": CLAIMS}


def writes(audit, control_plane, since):
    return audit(control_plane).count_writes(since=since, user=ADMIN_USER)


def test_create_update_delete(run_task, cp, args, audit, control_plane):
    created = run_task(MODULE, args, diff=True)[0]
    assert created["changed"] and created["diff"]["before"] == {}
    stored = cp.get(EXPORT_TEMPLATES, args["name"], "crossplane-system")
    assert stored["spec"]["APIServiceSelector"] == {"group": "data.example.com", "resource": "widgetinstances",
                                                    "version": "v1"}
    assert [(claim["resource"], claim["selector"]["owner"], claim["required"])
            for claim in stored["spec"]["permissionClaims"]] == [("secrets", "Provider", False),
                                                                 ("configmaps", "Provider", False)]
    assert created["template"]["spec"] == stored["spec"]

    start = now()
    again = run_task(MODULE, args)[0]
    assert not again["changed"]
    assert writes(audit, control_plane, start) == 0

    extra = {"resource": "serviceaccounts", "owner": "Consumer", "names": ["settings"],
             "label_selectors": [{"app": "db"}], "required": True}
    updated = run_task(MODULE, dict(args, permission_claims=CLAIMS + [extra]), diff=True)[0]
    assert updated["changed"]
    assert len(updated["diff"]["after"]["spec"]["permissionClaims"]) == 3
    claim = cp.get(EXPORT_TEMPLATES, args["name"], "crossplane-system")["spec"]["permissionClaims"][2]
    assert claim["selector"] == {"names": ["settings"], "namespaces": ["*"], "labelSelectors": [{"app": "db"}],
                                 "owner": "Consumer"}
    assert claim["required"] is True

    deleted = run_task(MODULE, {"kubeconfig": args["kubeconfig"], "name": args["name"], "state": "absent"})[0]
    assert deleted["changed"] and cp.get(EXPORT_TEMPLATES, args["name"], "crossplane-system") is None
    assert not run_task(MODULE, {"kubeconfig": args["kubeconfig"], "name": args["name"], "state": "absent"})[0][
        "changed"]


def test_check_mode_tells_the_truth_and_writes_nothing(run_task, cp, args, audit, control_plane):
    start = now()
    planned = run_task(MODULE, args, check=True, diff=True)[0]
    assert planned["changed"]
    assert planned["template"]["metadata"]["creationTimestamp"], "answered by the API server's dry run"
    assert planned["template"]["spec"]["permissionClaims"][0]["selector"]["names"] == ["*"], "server defaults shown"
    assert cp.get(EXPORT_TEMPLATES, args["name"], "crossplane-system") is None
    assert writes(audit, control_plane, start) == 0


REFUSALS = [
    ("missing-crd", {"resource": "gadgetinstances"},
     "the CRD gadgetinstances.data.example.com is not served on the control plane. Publish the data service first "
     "(its XRD creates the CRD), fix group and resource, or set validate_api: false to skip this check."),
    ("unserved-version", {"version": "v0"},
     "the CRD widgetinstances.data.example.com does not serve version v0; it serves v1. Set version to one of them."),
    ("unserved-claim", {"permission_claims": [{"resource": "secretz"}]},
     "permission claim secretz in v1: the control plane does not serve that resource. Check group, resource "
     "(plural, lower case) and version."),
    ("unserved-claim-group", {"permission_claims": [{"group": "nothing.example.com", "resource": "things"}]},
     "permission claim things in nothing.example.com/v1: the control plane does not serve that resource."),
]


@pytest.mark.parametrize("case, change, message", REFUSALS, ids=[case[0] for case in REFUSALS])
def test_refusals_name_the_template_and_write_nothing(run_task, cp, args, audit, control_plane, case, change,
                                                      message):
    start = now()
    result = run_task(MODULE, dict(args, **change))[0]
    assert result["failed"], case
    assert result["msg"].startswith(f"APIServiceExportTemplate crossplane-system/{args['name']}: ")
    assert message in result["msg"]
    assert writes(audit, control_plane, start) == 0
    assert cp.get(EXPORT_TEMPLATES, args["name"], "crossplane-system") is None


def test_unknown_owner_is_refused_before_any_request(run_task, cp, args, audit, control_plane):
    start = now()
    result = run_task(MODULE, dict(args, permission_claims=[{"resource": "secrets", "owner": "Nobody"}]))[0]
    assert result["failed"]
    assert "value of owner must be one of: Provider, Consumer, got: Nobody" in result["msg"]
    assert writes(audit, control_plane, start) == 0


def test_a_second_template_for_the_same_api_is_refused(run_task, cp, args, audit, control_plane):
    first = dict(args, name="widgets-first")
    assert run_task(MODULE, first)[0]["changed"]
    try:
        start = now()
        result = run_task(MODULE, dict(args, name="widgets-second", namespace="default"))[0]
        assert result["failed"]
        assert result["msg"] == (
            "APIServiceExportTemplate default/widgets-second: widgetinstances.data.example.com is already exported by "
            "template crossplane-system/widgets-first; Klutch would use only one of them. Change that template "
            "instead, or delete it first.")
        assert writes(audit, control_plane, start) == 0
    finally:
        run_task(MODULE, {"kubeconfig": args["kubeconfig"], "name": "widgets-first", "state": "absent"})


def test_validate_api_false_allows_a_template_ahead_of_its_crd(run_task, cp, args):
    result = run_task(MODULE, dict(args, resource="futureinstances", validate_api=False))[0]
    assert result["changed"], result.get("msg")
    run_task(MODULE, {"kubeconfig": args["kubeconfig"], "name": args["name"], "state": "absent"})


def test_a_cluster_without_the_klutch_crds_is_refused(run_task, app, args, audit):
    start = now()
    result = run_task(MODULE, dict(args, kubeconfig=str(app.admin_kubeconfig)))[0]
    assert result["failed"]
    assert result["msg"] == (
        f"APIServiceExportTemplate crossplane-system/{args['name']}: cluster app ({app.server}) does not serve "
        "APIServiceExportTemplates. Install the Klutch CRDs first, with the klutch.bind.control_plane role.")
    assert audit(app).count_writes(since=start, user=ADMIN_USER) == 0


def test_check_mode_before_the_namespace_exists_warns_and_writes_nothing(run_task, cp, args, audit, control_plane):
    start = now()
    result, output = run_task(MODULE, dict(args, namespace="not-yet-there"), check=True)
    assert result["changed"] and not result.get("failed")
    assert "Check mode: the namespace not-yet-there does not exist yet." in output
    assert result["template"]["metadata"] == {"name": args["name"], "namespace": "not-yet-there"}
    assert writes(audit, control_plane, start) == 0
