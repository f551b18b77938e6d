"""The control plane's pure planning: templates in Klutch's wire format and the checks on them."""

from ansible_collections.klutch.bind.plugins.module_utils import control_plane


def test_template_wire_format():
    claims = [control_plane.permission_claim({"resource": "secrets", "owner": "Provider"})]
    template = control_plane.export_template("pg", "crossplane-system", "anynines.com", "postgresqlinstances", "v1",
                                             claims)
    assert template == {
        "apiVersion": "example-backend.klutch.anynines.com/v1alpha1", "kind": "APIServiceExportTemplate",
        "metadata": {"name": "pg", "namespace": "crossplane-system"},
        "spec": {"APIServiceSelector": {"group": "anynines.com", "resource": "postgresqlinstances", "version": "v1"},
                 "permissionClaims": [{"group": "", "resource": "secrets", "version": "v1", "required": False,
                                       "selector": {"owner": "Provider"}}]}}


def test_claim_selectors_and_string_label_values():
    claim = control_plane.permission_claim({"resource": "things", "group": "example.com", "version": "v2",
                                            "names": ["a"], "namespaces": [], "required": True,
                                            "label_selectors": [{"export": True, "tier": 1}]})
    assert claim == {"group": "example.com", "resource": "things", "version": "v2", "required": True,
                     "selector": {"names": ["a"], "namespaces": [],
                                  "labelSelectors": [{"export": "true", "tier": "1"}]}}


def test_exported_api_problems():
    crd = {"spec": {"versions": [{"name": "v1", "served": True}, {"name": "v0", "served": False}]}}
    assert control_plane.exported_api_problem(crd, "x.y", "v1") is None
    assert "does not serve version v0; it serves v1" in control_plane.exported_api_problem(crd, "x.y", "v0")
    assert "is not served on the control plane" in control_plane.exported_api_problem(None, "x.y", None)
    unserved = {"spec": {"versions": [{"name": "v1", "served": False}]}}
    assert "serves no version" in control_plane.exported_api_problem(unserved, "x.y", None)


def test_conflicting_templates_ignore_the_template_itself():
    def template(namespace, name, group, resource):
        return {"metadata": {"namespace": namespace, "name": name},
                "spec": {"APIServiceSelector": {"group": group, "resource": resource}}}

    templates = [template("a", "pg", "x.io", "pgs"), template("b", "pg2", "x.io", "pgs"),
                 template("a", "other", "x.io", "others")]
    assert control_plane.conflicting_templates(templates, "pg", "a", "x.io", "pgs") == ["b/pg2"]
    assert control_plane.conflicting_templates(templates, "new", "a", "x.io", "others") == ["a/other"]
