"""The app cluster's pure planning: claims, bindings, the CRD from an export."""

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.plan import bindings

EXPORT = {"metadata": {"name": "postgresqlinstances.samples.klutch.bind", "namespace": "cluster-abcde"},
          "spec": {"group": "samples.klutch.bind", "scope": "Namespaced", "informerScope": "Namespaced",
                   "names": {"kind": "PostgresqlInstance", "plural": "postgresqlinstances"},
                   "versions": [{"name": "v1", "served": True, "storage": True}],
                   "permissionClaims": [{"group": "", "resource": "secrets", "version": "v1", "required": True},
                                        {"group": "", "resource": "configmaps", "version": "v1"}]}}
BOUND = {"metadata": {"name": "postgresqlinstances.samples.klutch.bind", "uid": "b-1"}}


def test_cluster_id_is_six_base62_characters_of_the_namespace_uid():
    first = bindings.cluster_id("5f0c9d1e-0000-4000-8000-000000000001")
    assert len(first) == 6 and first.isalnum()
    assert first == bindings.cluster_id("5f0c9d1e-0000-4000-8000-000000000001")
    assert first != bindings.cluster_id("5f0c9d1e-0000-4000-8000-000000000002")


def test_claims_are_accepted_by_name_or_all_and_the_rest_rejected():
    claims = EXPORT["spec"]["permissionClaims"]
    assert [c["state"] for c in bindings.acceptable_claims("x", claims, ["*"])] == ["Accepted", "Accepted"]
    assert [c["state"] for c in bindings.acceptable_claims("x", claims, ["secrets"])] == ["Accepted", "Rejected"]


def test_rejecting_a_required_claim_is_refused():
    with pytest.raises(ConfigError, match="requires the permission claim on secrets"):
        bindings.acceptable_claims("x", EXPORT["spec"]["permissionClaims"], ["configmaps"])


def test_the_crd_is_the_export_snapshot_owned_by_the_binding():
    crd = bindings.crd_from_export(EXPORT, BOUND)
    assert crd["metadata"] == {"name": EXPORT["metadata"]["name"], "ownerReferences": [
        {"apiVersion": "klutch.anynines.com/v1alpha1", "kind": "APIServiceBinding", "name": BOUND["metadata"]["name"],
         "uid": "b-1", "controller": True}]}
    assert crd["spec"] == {key: EXPORT["spec"][key] for key in ("group", "names", "scope", "versions")}


def test_a_crd_not_owned_by_the_binding_is_foreign():
    crd = bindings.crd_from_export(EXPORT, BOUND)
    assert bindings.foreign_crd_problem(None, "postgresqlinstances.samples.klutch.bind") is None
    assert bindings.foreign_crd_problem(crd, "postgresqlinstances.samples.klutch.bind") is None
    crd["metadata"]["ownerReferences"] = []
    assert "ForeignCustomResourceDefinition" in bindings.foreign_crd_problem(crd, "postgresqlinstances.samples.klutch.bind")


def test_binding_status_keeps_transition_times():
    first = bindings.binding_status("klutch.bind", "2026-01-01T00:00:00Z")
    assert bindings.binding_status("klutch.bind", "2026-02-01T00:00:00Z", first) == first
    assert {c["type"] for c in first["conditions"]} == {"SecretValid", "Connected", "Ready"}


def test_the_kubeconfig_target_is_server_and_context_namespace():
    config = {"current-context": "default", "clusters": [{"name": "c", "cluster": {"server": "https://cp:6443"}}],
              "contexts": [{"name": "default", "context": {"cluster": "c", "namespace": "cluster-abcde"}}]}
    assert bindings.kubeconfig_target(config) == ("https://cp:6443", "cluster-abcde")


def test_the_konnector_gets_the_bound_kind_and_its_crd_and_only_accepted_claims():
    export_spec = {"group": "samples.klutch.bind", "names": {"plural": "postgresqlinstances"}}
    claims = [{"group": "", "resource": "secrets", "state": "Accepted"},
              {"group": "", "resource": "configmaps", "state": "Rejected"}]
    bound, claimed = bindings.konnector_roles("postgresqlinstances.samples.klutch.bind", export_spec, claims)
    assert bound["metadata"] == {"name": "klutch-bind-konnector-postgresqlinstances.samples.klutch.bind",
                                 "labels": {"klutch.bind/aggregate-to-klutch-bind-konnector": "true"}}
    crd_rule, instance_rule = bound["rules"]
    assert crd_rule["resourceNames"] == ["postgresqlinstances.samples.klutch.bind"]
    assert "create" not in crd_rule["verbs"] and "delete" not in crd_rule["verbs"]
    assert instance_rule["resources"] == ["postgresqlinstances", "postgresqlinstances/status"]
    assert claimed["metadata"]["labels"] == {"klutch.bind/aggregate-to-klutch-bind-konnector-claims": "true"}
    assert claimed["rules"] == [{"apiGroups": [""], "resources": ["secrets"], "verbs": bindings.OBJECT_VERBS}]
    assert [name for _into, name in bindings.konnector_role_names("x.y")] == [
        "klutch-bind-konnector-x.y", "klutch-bind-konnector-claims-x.y"]


def test_the_claims_role_binding_names_the_agent_account():
    binding = bindings.claims_role_binding("shop", "klutch-bind/klutch-bind-konnector")
    assert binding["metadata"] == {"name": "klutch-bind-konnector-claims", "namespace": "shop"}
    assert binding["roleRef"]["name"] == "klutch-bind-konnector-claims"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "klutch-bind-konnector",
                                    "namespace": "klutch-bind"}]


def test_a_binding_problem_makes_its_condition_and_those_after_it_false():
    now = "2026-11-25T10:00:00Z"
    served = bindings.binding_status("Provider", now)
    assert [(item["type"], item["status"]) for item in served["conditions"]] == [
        ("SecretValid", "True"), ("Connected", "True"), ("Ready", "True")]
    lost = bindings.binding_status("Provider", "2026-11-25T11:00:00Z", served,
                                   ("Connected", "APIServiceExportNotFound", "no export"))
    assert [(item["type"], item["status"], item.get("reason")) for item in lost["conditions"]] == [
        ("SecretValid", "True", None), ("Connected", "False", "APIServiceExportNotFound"),
        ("Ready", "False", "APIServiceExportNotFound")]
    assert lost["conditions"][0]["lastTransitionTime"] == now, "an unchanged condition keeps its time"
    broken = bindings.binding_status("Provider", now, None, ("SecretValid", "ProviderSecretInvalid", "bad"))
    assert [item["status"] for item in broken["conditions"]] == ["False", "False", "False"]


def test_a_claim_the_export_does_not_make_is_a_typo_not_a_silent_rejection():
    claims = EXPORT["spec"]["permissionClaims"]
    with pytest.raises(ConfigError, match=r"accept_claims names secret, which the export x does not claim \(a typo\?\)"):
        bindings.acceptable_claims("x", claims, ["secret", "*"])
