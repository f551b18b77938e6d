"""The control plane's pure planning: templates in Klutch's wire format and the checks on them."""

import datetime
import itertools
import re

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import duration_seconds, parse_time
from ansible_collections.klutch.bind.plugins.module_utils.plan import consumers, health, templates


def test_template_wire_format():
    claims = [templates.permission_claim({"resource": "secrets", "owner": "Provider"})]
    template = templates.export_template("pg", "crossplane-system", "anynines.com", "postgresqlinstances", "v1",
                                         claims)
    assert template == {
        "apiVersion": "example-backend.klutch.anynines.com/v1alpha1", "kind": "APIServiceExportTemplate",
        "metadata": {"name": "pg", "namespace": "crossplane-system"},
        "spec": {"APIServiceSelector": {"group": "anynines.com", "resource": "postgresqlinstances", "version": "v1"},
                 "permissionClaims": [{"group": "", "resource": "secrets", "version": "v1", "required": False,
                                       "selector": {"owner": "Provider"}}]}}


def test_claim_selectors_and_string_label_values():
    claim = templates.permission_claim({"resource": "things", "group": "example.com", "version": "v2",
                                        "names": ["a"], "namespaces": [], "required": True,
                                        "label_selectors": [{"export": True, "tier": 1}]})
    assert claim == {"group": "example.com", "resource": "things", "version": "v2", "required": True,
                     "selector": {"names": ["a"], "namespaces": [],
                                  "labelSelectors": [{"export": "true", "tier": "1"}]}}


def test_exported_api_problems():
    crd = {"spec": {"versions": [{"name": "v1", "served": True}, {"name": "v0", "served": False}]}}
    assert templates.exported_api_problem(crd, "x.y", "v1") is None
    assert "does not serve version v0; it serves v1" in templates.exported_api_problem(crd, "x.y", "v0")
    assert "is not served on the control plane" in templates.exported_api_problem(None, "x.y", None)
    unserved = {"spec": {"versions": [{"name": "v1", "served": False}]}}
    assert "serves no version" in templates.exported_api_problem(unserved, "x.y", None)


def test_conflicting_templates_ignore_the_template_itself():
    def template(namespace, name, group, resource):
        return {"metadata": {"namespace": namespace, "name": name},
                "spec": {"APIServiceSelector": {"group": group, "resource": resource}}}

    existing = [template("a", "pg", "x.io", "pgs"), template("b", "pg2", "x.io", "pgs"),
                template("a", "other", "x.io", "others")]
    assert templates.conflicting_templates(existing, "pg", "a", "x.io", "pgs") == ["b/pg2"]
    assert templates.conflicting_templates(existing, "new", "a", "x.io", "others") == ["a/other"]


def crd(scope="Namespaced", conversion=None, versions=None):
    spec = {"group": "samples.klutch.bind", "scope": scope,
            "names": {"kind": "PostgresqlInstance", "plural": "postgresqlinstances", "singular": "postgresqlinstance",
                      "listKind": "PostgresqlInstanceList"},
            "versions": versions or [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {"type": "object"}},
                 "subresources": {"status": {}}},
                {"name": "v2", "served": False, "storage": False},
            ]}
    if conversion:
        spec["conversion"] = {"strategy": conversion}
    return {"metadata": {"name": "postgresqlinstances.samples.klutch.bind", "uid": "u1"}, "spec": spec}


def test_base62_uses_gos_digits():
    assert consumers.base62(b"\x00") == "0"
    assert consumers.base62(bytes([61])) == "Z"
    assert consumers.base62(bytes([62])) == "10"
    assert consumers.base62(bytes([1, 0])) == "48"  # 256 = 4 * 62 + 8


def namespace_with(name, identity=None):
    annotations = {consumers.IDENTITY_ANNOTATION: identity} if identity else {}
    return {"metadata": {"name": name, "annotations": annotations}}


def test_the_consumer_namespace_is_found_by_identity_and_two_claims_are_refused():
    namespaces = [namespace_with("default"), namespace_with("cluster-abcde", "app-1#X1y2Z3")]
    assert consumers.consumer_namespace(namespaces, "app-1#X1y2Z3") == "cluster-abcde"
    assert consumers.consumer_namespace(namespaces, "app-2#X1y2Z3") is None
    namespaces.append(namespace_with("cluster-fghij", "app-1#X1y2Z3"))
    with pytest.raises(ConfigError, match="cluster-abcde, cluster-fghij all claim consumer identity app-1#X1y2Z3"):
        consumers.consumer_namespace(namespaces, "app-1#X1y2Z3")


def test_the_snapshot_keeps_served_versions_only():
    snapshot = consumers.export_snapshot(crd())
    assert [version["name"] for version in snapshot["versions"]] == ["v1"]
    assert snapshot["versions"][0]["subresources"] == {"status": {}}
    assert set(snapshot) == {"group", "names", "scope", "versions"}


def test_under_a_conversion_webhook_only_the_storage_version_is_exported():
    versions = [{"name": "v1", "served": True, "storage": False}, {"name": "v2", "served": True, "storage": True}]
    snapshot = consumers.export_snapshot(crd(conversion="Webhook", versions=versions))
    assert snapshot["versions"] == [{"name": "v2", "served": True, "storage": True}]


def test_the_export_carries_the_hash_scope_and_the_template_claims():
    claims = [{"group": "", "resource": "secrets", "version": "v1", "selector": {"owner": "Provider"}}]
    export = consumers.api_service_export(crd(), "cluster-abcde", "Namespaced", claims)
    assert export["metadata"]["name"] == "postgresqlinstances.samples.klutch.bind"
    assert export["spec"]["informerScope"] == "Namespaced"
    assert export["spec"]["permissionClaims"] == claims
    assert "clusterScopedIsolation" not in export["spec"]
    digest = export["metadata"]["annotations"][consumers.SPEC_HASH_ANNOTATION]
    assert digest == consumers.spec_hash(consumers.export_snapshot(crd()))
    changed = crd()
    changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["required"] = ["spec"]
    assert consumers.spec_hash(consumers.export_snapshot(changed)) != digest
    cluster_scoped = consumers.api_service_export(crd(scope="Cluster"), "cluster-abcde", "Cluster", [])
    assert cluster_scoped["spec"]["clusterScopedIsolation"] == "Prefixed"


def test_rules_give_instances_full_verbs_and_provider_owned_claims_no_create_or_delete():
    claims = [{"group": "", "resource": "secrets", "selector": {"owner": "Provider"}},
              {"group": "", "resource": "configmaps", "selector": {"owner": "Consumer"}},
              {"group": "", "resource": "secrets", "selector": {"owner": "Provider"}}]
    export = consumers.api_service_export(crd(), "cluster-abcde", "Namespaced", claims)
    assert consumers.consumer_rules([export]) == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": consumers.INSTANCE_VERBS},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "patch", "update", "watch"]},
        {"apiGroups": ["samples.klutch.bind"], "resources": ["postgresqlinstances"],
         "verbs": consumers.INSTANCE_VERBS},
    ]
    assert consumers.consumer_rules([export], claims=False) == consumers.consumer_rules([export])[2:]


def test_namespaced_scope_binds_only_in_mapped_namespaces():
    namespaced = consumers.consumer_rbac("cluster-abcde", "uid-1", [], "Namespaced",
                                         ["cluster-abcde-default", "cluster-abcde-team"])
    kinds = [(obj["kind"], obj["metadata"].get("namespace")) for obj in namespaced]
    assert kinds == [("RoleBinding", "cluster-abcde"), ("ClusterRole", None),
                     ("RoleBinding", "cluster-abcde-default"), ("RoleBinding", "cluster-abcde-team")]
    assert namespaced[2]["roleRef"]["name"] == "klutch-binder-cluster-abcde"
    assert namespaced[2]["subjects"] == [{"kind": "ServiceAccount", "name": "klutch-binder",
                                          "namespace": "cluster-abcde"}]


def test_cluster_scope_grants_cluster_scoped_exported_kinds_cluster_wide_but_never_claimed_ones():
    claims = [{"group": "", "resource": "secrets", "selector": {"owner": "Provider"}}]
    export = consumers.api_service_export(crd("Cluster"), "cluster-abcde", "Cluster", claims)
    cluster = consumers.consumer_rbac("cluster-abcde", "uid-1", [export], "Cluster", ["cluster-abcde-default"])
    assert [obj["kind"] for obj in cluster] == ["RoleBinding", "ClusterRole", "RoleBinding", "ClusterRole",
                                                "ClusterRoleBinding"]
    cluster_wide = cluster[3]
    assert cluster_wide["metadata"]["name"] == "klutch-binder-cluster-abcde-cluster"
    assert [rule["resources"] for rule in cluster_wide["rules"]] == [["postgresqlinstances"]]
    assert cluster[4]["roleRef"]["name"] == cluster_wide["metadata"]["name"]
    assert cluster[1]["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert consumers.consumer_scope([export], "Namespaced") == "Cluster"
    assert consumers.consumer_scope([], "Namespaced") == "Namespaced"


def test_namespaced_kinds_are_never_granted_cluster_wide_not_even_in_cluster_scope():
    namespaced = consumers.api_service_export(crd(), "cluster-abcde", "Cluster", [])
    foos = dict(crd("Cluster")["spec"], group="bar.io", names={"plural": "foos", "kind": "Foo"})
    cluster_scoped = consumers.api_service_export(
        dict(crd("Cluster"), metadata={"name": "foos.bar.io"}, spec=foos), "cluster-abcde", "Cluster", [])
    alone = consumers.consumer_rbac("cluster-abcde", "uid-1", [namespaced], "Cluster", [])
    assert [obj["kind"] for obj in alone] == ["RoleBinding", "ClusterRole"]
    both = consumers.consumer_rbac("cluster-abcde", "uid-1", [namespaced, cluster_scoped], "Cluster", [])
    assert [rule["resources"] for rule in both[2]["rules"]] == [["foos"]]


def test_a_consumer_namespace_maps_to_the_prefixed_name_unless_status_says_otherwise():
    assert consumers.mapped_namespace("cluster-abcde", {"metadata": {"name": "default"}}) == "cluster-abcde-default"
    assert consumers.mapped_namespace("cluster-abcde", {"metadata": {"name": "default"},
                                                        "status": {"namespace": "elsewhere"}}) == "elsewhere"


def test_the_kubeconfig_has_klutchs_shape():
    config = consumers.kubeconfig("https://cp.example:6443", "Q0E=", "t0ken", "cluster-abcde", "cp.example")
    assert config["current-context"] == "default"
    assert config["contexts"][0]["context"] == {"cluster": "default", "user": "default", "namespace": "cluster-abcde"}
    assert config["clusters"][0]["cluster"]["tls-server-name"] == "cp.example"


def test_request_status_is_succeeded_and_keeps_transition_times():
    succeeded = consumers.request_status("2026-01-01T00:00:00Z")
    assert succeeded["phase"] == "Succeeded"
    assert consumers.request_status("2026-02-02T00:00:00Z", succeeded) == succeeded


def test_an_export_keeps_a_hash_it_already_carries_while_the_snapshot_is_the_same():
    first = consumers.api_service_export(crd(), "cluster-abcde", "Namespaced", [])
    first["metadata"]["annotations"][consumers.SPEC_HASH_ANNOTATION] = "writtenByKlutch"
    again = consumers.api_service_export(crd(), "cluster-abcde", "Namespaced", [], existing=first)
    assert again["metadata"]["annotations"][consumers.SPEC_HASH_ANNOTATION] == "writtenByKlutch"
    changed = crd()
    changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["required"] = ["spec"]
    moved = consumers.api_service_export(changed, "cluster-abcde", "Namespaced", [], existing=first)
    assert moved["metadata"]["annotations"][consumers.SPEC_HASH_ANNOTATION] != "writtenByKlutch"


@pytest.mark.parametrize("scope, informer_scope, existing, message", [
    ("Cluster", "Namespaced", None, "consumer_scope Cluster"),
    ("Namespaced", "Cluster", {"spec": {"informerScope": "Namespaced"}}, "informerScope Namespaced, which cannot"),
    ("Namespaced", "Namespaced", {"spec": {"informerScope": "Namespaced"}}, None),
])
def test_export_problems(scope, informer_scope, existing, message):
    problem = consumers.export_problem(crd(scope=scope), informer_scope, existing)
    assert (problem is None) if message is None else (message in problem)


def test_a_failed_request_says_why():
    failed = consumers.request_status("2026-03-03T00:00:00Z", None, ["CRD x.y not found"])
    assert failed["phase"] == "Failed" and failed["terminalMessage"] == "CRD x.y not found"
    assert [c["status"] for c in failed["conditions"]] == ["False", "False"]


def test_an_export_differs_on_its_hash_or_a_field_we_set():
    export = consumers.api_service_export(crd(), "cluster-abcde", "Namespaced", [])
    stored = dict(export, spec=dict(export["spec"], extraDefault=True))
    assert not consumers.export_differs(stored, export)
    changed = consumers.api_service_export(crd(scope="Namespaced"), "cluster-abcde", "Cluster", [])
    assert consumers.export_differs(export, changed)


MOMENT = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


@pytest.mark.parametrize("text, seconds", [("5m0s", 300), ("1h", 3600), ("2.5s", 2.5), ("1h2m3s", 3723), ("", None),
                                           ("5 minutes", None), ("9" * 5000 + "h", None), (300, None)])
def test_go_durations(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("status, reason", [
    ({}, "FirstHeartbeatPending"),
    ({"lastHeartbeatTime": "2026-01-01T11:59:00Z"}, "HeartbeatIntervalMissing"),
    ({"lastHeartbeatTime": "2026-01-01T11:49:59Z", "heartbeatInterval": "5m0s"}, "HeartbeatTimeout"),
    ({"lastHeartbeatTime": "2026-01-01T11:59:55Z", "heartbeatInterval": "5m0s"}, None),
])
def test_heartbeat_health(status, reason):
    found = health.heartbeat_health(status, MOMENT)
    assert found.get("reason") == reason
    assert found["status"] == ("True" if reason is None else "False")


def test_cluster_binding_conditions_keep_their_transition_time():
    status = {"lastHeartbeatTime": "2026-01-01T11:59:55Z", "heartbeatInterval": "5m0s"}
    first = health.cluster_binding_conditions(status, MOMENT, "2026-01-01T12:00:00Z")
    assert [(c["type"], c["status"]) for c in first] == [("Healthy", "True"), ("Ready", "True")]
    again = health.cluster_binding_conditions(dict(status, conditions=first), MOMENT, "2026-01-01T12:05:00Z")
    assert again == first


@pytest.mark.parametrize("text, expected", [
    ("2026-01-01T11:59:55Z", datetime.datetime(2026, 1, 1, 11, 59, 55, tzinfo=datetime.timezone.utc)),
    ("2026-01-01T11:59:55.5Z", datetime.datetime(2026, 1, 1, 11, 59, 55, 500000, tzinfo=datetime.timezone.utc)),
    ("2026-01-01T11:59:55.123456789Z",
     datetime.datetime(2026, 1, 1, 11, 59, 55, 123456, tzinfo=datetime.timezone.utc)),
    ("2026-01-01T13:59:55+02:00", datetime.datetime(2026, 1, 1, 11, 59, 55, tzinfo=datetime.timezone.utc)),
    ("2026-01-01t11:59:55z", datetime.datetime(2026, 1, 1, 11, 59, 55, tzinfo=datetime.timezone.utc)),
    ("2026-01-01T11:59:55,5Z", None), ("2026-02-30T00:00:00Z", None), ("2026-01-01T11:59:55", None),
    ("yesterday", None), ("", None), (None, None), (12345, None),
])
def test_times_are_read_as_rfc_3339(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("heartbeat, reason", [
    ("2026-01-01T11:59:55.5Z", None),
    ("2026-01-01T13:59:55+02:00", None),
    ("2026-01-01T12:00:10Z", None),  # a konnector clock a little ahead is tolerated
    ("2030-01-01T00:00:00.5Z", "HeartbeatTimeDrift"),  # would count as healthy for years
    ("2026-01-01T11:59:55,5Z", "HeartbeatTimeInvalid"),
    ("2026-13-01T00:00:00Z", "HeartbeatTimeInvalid"),
])
def test_a_heartbeat_in_any_rfc_3339_form_is_read_and_an_odd_one_is_unhealthy(heartbeat, reason):
    found = health.heartbeat_health({"lastHeartbeatTime": heartbeat, "heartbeatInterval": "5m0s"}, MOMENT)
    assert found.get("reason") == reason
    assert found["status"] == ("True" if reason is None else "False")
    if reason:
        assert heartbeat in found["message"]


LONG = "team-" + "x" * 55


def test_a_mapped_namespace_too_long_for_a_label_gets_a_stable_short_name():
    name = consumers.mapped_namespace("cluster-abcde", {"metadata": {"name": LONG}})
    assert len(name) <= 63 and re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name)
    assert name.startswith("cluster-abcde-team-xxx")
    assert name == consumers.mapped_namespace("cluster-abcde", {"metadata": {"name": LONG}})
    other = consumers.mapped_namespace("cluster-abcde", {"metadata": {"name": LONG[:-1] + "y"}})
    assert other != name and len(other) <= 63
    exact = "x" * (63 - len("cluster-abcde-"))
    assert consumers.mapped_namespace("cluster-abcde", {"metadata": {"name": exact}}) == "cluster-abcde-" + exact
    long_consumer = "c" * 60
    name = consumers.mapped_namespace(long_consumer, {"metadata": {"name": "shop"}})
    assert len(name) <= 63 and re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", name)
    assert name != consumers.mapped_namespace(long_consumer, {"metadata": {"name": "shoq"}})


def test_a_new_consumer_namespace_name_is_derived_from_the_identity():
    first = consumers.consumer_namespace_names("app-1#X1y2Z3")
    names = list(itertools.islice(first, 3))
    assert all(re.match(r"^cluster-[a-z0-9]{5}$", name) for name in names)
    assert len(set(names)) == 3, "a taken name has a next candidate"
    again = consumers.consumer_namespace_names("app-1#X1y2Z3")
    assert list(itertools.islice(again, 3)) == names
    assert next(consumers.consumer_namespace_names("app-2#X1y2Z3")) != names[0]


def test_namespaces_of_the_same_consumer_under_another_cluster_id_are_found():
    namespaces = [namespace_with("cluster-abcde", "app-1#Old1"), namespace_with("cluster-fghij", "app-1#New1"),
                  namespace_with("cluster-klmno", "app-10#Old1"), namespace_with("cluster-pqrst", "app-1#x#y"),
                  namespace_with("default")]
    assert consumers.other_cluster_ids(namespaces, "app-1", "New1") == [("cluster-abcde", "Old1")]
    assert consumers.other_cluster_ids(namespaces, "app-10", "Old1") == []


def mapped_for(source):
    return {"metadata": {"annotations": {consumers.API_SERVICE_NAMESPACE_ANNOTATION: source}}}


@pytest.mark.parametrize("target, existing, problem", [
    ("cluster-abcde-shop", None, None),
    ("cluster-abcde-shop", mapped_for("cluster-abcde/shop"), None),
    ("cluster-abcde-shop", {"metadata": {"name": "cluster-abcde-shop"}}, "does not belong to cluster-abcde/shop"),
    ("cluster-abcde-shop", mapped_for("cluster-fghij/shop"), "does not belong"),
    ("kube-system", {"metadata": {}}, "is not a namespace of consumer cluster-abcde"),
])
def test_a_consumer_is_mapped_only_to_a_namespace_of_its_own(target, existing, problem):
    found = consumers.mapping_problem("cluster-abcde", target, "cluster-abcde/shop", existing)
    assert found == problem if problem is None else problem in found


def test_claims_that_name_their_objects_are_granted_on_those_names_only():
    claims = [{"group": "", "resource": "secrets", "selector": {"owner": "Provider", "names": ["db-creds"]}},
              {"group": "", "resource": "secrets", "selector": {"owner": "Provider", "names": ["tls"]}},
              {"group": "", "resource": "configmaps", "selector": {"owner": "Consumer", "names": ["settings"]}},
              {"group": "", "resource": "serviceaccounts", "selector": {"owner": "Provider", "names": ["*"]}}]
    export = consumers.api_service_export(crd(), "cluster-abcde", "Namespaced", claims)
    rules = dict(((rule["resources"][0], bool(rule.get("resourceNames"))), rule)
                 for rule in consumers.consumer_rules([export]))
    assert rules[("secrets", True)]["resourceNames"] == ["db-creds", "tls"]
    assert ("secrets", False) not in rules
    assert rules[("configmaps", True)]["resourceNames"] == ["settings"]
    assert "create" not in rules[("configmaps", True)]["verbs"]
    assert rules[("configmaps", False)]["verbs"] == ["create"]  # RBAC cannot limit create by name
    assert ("serviceaccounts", False) in rules and ("serviceaccounts", True) not in rules
    assert ("postgresqlinstances", False) in rules
    assert consumers.claimed_names(claims + [{"resource": "secrets"}])[("", "secrets")] is None


ROTATION_MOMENT = datetime.datetime(2026, 12, 7, 20, 0, 0, tzinfo=datetime.timezone.utc)


def token(name, created="2026-12-01T00:00:00Z", retire_at=None, account=consumers.BINDER):
    secret = consumers.token_secret(name, "cluster-abcde", retire_at)
    secret["metadata"].update(creationTimestamp=created)
    secret["metadata"]["annotations"]["kubernetes.io/service-account.name"] = account
    return secret


def test_the_kubeconfig_names_its_token_secret_and_klutchs_own_carries_klutch_binder():
    assert consumers.current_token_secret(None) == consumers.BINDER
    assert consumers.current_token_secret({"metadata": {}}) == consumers.BINDER
    assert consumers.current_token_secret({"metadata": {"annotations": {
        consumers.TOKEN_SECRET_ANNOTATION: "klutch-binder-x1y2z"}}}) == "klutch-binder-x1y2z"


def test_a_token_is_due_for_rotation_once_it_is_as_old_as_asked():
    assert consumers.rotation_due(token("a", "2026-12-07T19:00:00Z"), 3600, ROTATION_MOMENT)
    assert not consumers.rotation_due(token("a", "2026-12-07T19:00:01Z"), 3600, ROTATION_MOMENT)
    assert not consumers.rotation_due(None, 1, ROTATION_MOMENT), "a Secret not there yet is never rotated"


def test_only_replaced_tokens_whose_grace_is_over_retire_and_never_the_current_or_a_foreign_one():
    secrets = [token("klutch-binder", retire_at="2026-12-07T19:59:59Z"),
               token("klutch-binder-later", retire_at="2026-12-07T20:05:00Z"),
               token("klutch-binder-garbled", retire_at="next tuesday"),
               token("klutch-binder-now"),
               token("klutch-binder-current", retire_at="2026-12-07T19:00:00Z"),
               token("someone-elses", retire_at="2026-12-07T19:00:00Z", account="other")]
    assert consumers.retired_tokens(secrets, "klutch-binder-current", ROTATION_MOMENT) == [
        "klutch-binder", "klutch-binder-garbled"]
