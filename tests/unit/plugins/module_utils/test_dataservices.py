"""White-labelling and checks of data-service sources, without a cluster."""

from pathlib import Path

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s import manifests
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.plan import dataservices

SOURCE = Path(__file__).resolve().parents[4] / "roles" / "control_plane" / "files" / "dataservices"
POSTGRESQL = "xpostgresqlinstances.samples.klutch.bind"


@pytest.fixture
def source():
    metadata, objects = dataservices.split_package(manifests.load(src=str(SOURCE)))
    assert [doc["kind"] for doc in metadata] == ["Configuration"]
    return objects


def by_name(objects, kind):
    return {obj["metadata"]["name"]: obj for obj in objects if obj["kind"] == kind}


def plan_enum(xrd):
    return xrd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["plan"]["enum"]


def test_no_changes_leave_the_source_as_it_is(source):
    assert dataservices.customize(source, []) == source


def test_added_plans_extend_the_enum_once_and_leave_the_input_alone(source):
    changed = dataservices.customize(source, [{"name": POSTGRESQL, "plans": ["postgresql-single-huge",
                                                                             "postgresql-single-small"]}])
    xrd = by_name(changed, "CompositeResourceDefinition")[POSTGRESQL]
    assert plan_enum(xrd)[-1] == "postgresql-single-huge"
    assert plan_enum(xrd).count("postgresql-single-small") == 1
    assert "postgresql-single-huge" not in plan_enum(by_name(source, "CompositeResourceDefinition")[POSTGRESQL])


def test_a_new_claim_kind_makes_a_new_xrd_and_renames_its_compositions(source):
    changed = dataservices.customize(source, [{"name": POSTGRESQL, "group": "db.acme.example",
                                               "claim_kind": "AcmeDatabase"}])
    xrds = by_name(changed, "CompositeResourceDefinition")
    xrd = xrds["xacmedatabases.db.acme.example"]
    assert xrd["spec"]["group"] == "db.acme.example"
    assert xrd["spec"]["names"] == {"kind": "XAcmeDatabase", "plural": "xacmedatabases"}
    assert xrd["spec"]["claimNames"] == {"kind": "AcmeDatabase", "plural": "acmedatabases"}
    compositions = by_name(changed, "Composition")
    renamed = compositions["postgresql.xacmedatabases.db.acme.example"]
    assert renamed["spec"]["compositeTypeRef"] == {"apiVersion": "db.acme.example/v1", "kind": "XAcmeDatabase"}
    assert xrd["spec"]["defaultCompositionRef"] == {"name": "postgresql.xacmedatabases.db.acme.example"}
    assert "messaging" in compositions and "xmessaginginstances.samples.klutch.bind" in xrds, "others untouched"


def test_a_new_group_alone_keeps_the_kinds(source):
    changed = dataservices.customize(source, [{"name": POSTGRESQL, "group": "db.acme.example"}])
    xrd = by_name(changed, "CompositeResourceDefinition")["xpostgresqlinstances.db.acme.example"]
    assert xrd["spec"]["claimNames"]["kind"] == "PostgresqlInstance"


@pytest.mark.parametrize("overrides, message", [
    ({"name": "xnothing.samples.klutch.bind"}, "defines no such CompositeResourceDefinition"),
    ({"name": POSTGRESQL, "group": "Acme"}, "group 'Acme' is not valid"),
    ({"name": POSTGRESQL, "claim_kind": "acme-db"}, "claim_kind 'acme-db' is not valid"),
])
def test_wrong_changes_name_the_entry_and_the_fix(source, overrides, message):
    with pytest.raises(ConfigError, match=message):
        dataservices.customize(source, [overrides])


def test_plans_need_a_plan_enum(source):
    for xrd in by_name(source, "CompositeResourceDefinition").values():
        del xrd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["plan"]["enum"]
    with pytest.raises(ConfigError, match="has no spec.plan enum"):
        dataservices.customize(source, [{"name": POSTGRESQL, "plans": ["x"]}])


def served_by_provider(api_version, kind):
    return (api_version, kind) == ("kubernetes.crossplane.io/v1alpha2", "Object")


def test_compositions_may_use_kinds_of_the_source_and_of_the_cluster(source):
    dataservices.check_compositions(source, served_by_provider, "cluster cp")


def test_a_composed_kind_that_nothing_serves_is_named(source):
    with pytest.raises(ConfigError, match="composes kind Object in kubernetes.crossplane.io/v1alpha2 "
                                          r"\(resource server\), which cluster cp does not serve"):
        dataservices.check_compositions(source, lambda api_version, kind: False, "cluster cp")


def owned(controller_kind=None):
    refs = [{"kind": controller_kind, "name": "pkg-abc", "controller": True}] if controller_kind else []
    return {"kind": "CompositeResourceDefinition", "metadata": {"name": "xdbs.acme.example", "ownerReferences": refs}}


@pytest.mark.parametrize("current, owner, configuration, problem", [
    (owned("ConfigurationRevision"), "pkg", "pkg", None),
    (owned("ConfigurationRevision"), "other", "pkg", "belongs to the Crossplane package of Configuration other"),
    (owned("ConfigurationRevision"), "other", None, "belongs to the Crossplane package of Configuration other"),
    (owned(), None, "pkg", "no package controls it"),
    (owned(), None, None, None),
])
def test_one_owner_per_api(current, owner, configuration, problem):
    found = dataservices.ownership_problem(current, owner, configuration)
    assert (found is None) if problem is None else (problem in found)


def test_the_api_summary_is_what_a_template_needs(source):
    summary = dataservices.api_summary(by_name(source, "CompositeResourceDefinition")[POSTGRESQL])
    assert summary == {"name": POSTGRESQL, "group": "samples.klutch.bind", "versions": ["v1"],
                       "kind": "XPostgresqlInstance", "plural": "xpostgresqlinstances",
                       "claim_kind": "PostgresqlInstance", "claim_plural": "postgresqlinstances"}


@pytest.mark.parametrize("overrides", [{"name": POSTGRESQL, "plural": "xpgs"}, {"name": POSTGRESQL, "claim_plural": "pgs"}])
def test_plurals_alone_cannot_rename_an_xrd_in_place(source, overrides):
    with pytest.raises(ConfigError, match="plural and claim_plural change only with group, kind or claim_kind"):
        dataservices.customize(source, [overrides])


def pipeline_source():
    xrd = {"apiVersion": "apiextensions.crossplane.io/v1", "kind": "CompositeResourceDefinition",
           "metadata": {"name": "xdbs.acme.example"},
           "spec": {"group": "acme.example", "names": {"kind": "XDb", "plural": "xdbs"},
                    "versions": [{"name": "v1", "served": True}]}}
    composition = {"apiVersion": "apiextensions.crossplane.io/v1", "kind": "Composition", "metadata": {"name": "db"},
                   "spec": {"compositeTypeRef": {"apiVersion": "acme.example/v1", "kind": "XDb"}, "mode": "Pipeline",
                            "pipeline": [{"step": "patch", "functionRef": {"name": "function-patch-and-transform"},
                                          "input": {"resources": [{"name": "server", "base": {
                                              "apiVersion": "kubernetes.crossplane.io/v1alpha2", "kind": "Object"}}]}}]}}
    return [xrd, composition]


def test_pipeline_compositions_need_their_functions_and_composed_kinds():
    objects = pipeline_source()
    assert dataservices.pipeline_functions(objects) == {"function-patch-and-transform"}
    with pytest.raises(ConfigError, match="calls Function function-patch-and-transform in step patch, which is not"):
        dataservices.check_compositions(objects, served_by_provider, "cluster cp")
    dataservices.check_compositions(objects, served_by_provider, "cluster cp", {"function-patch-and-transform"})
    with pytest.raises(ConfigError, match=r"composes kind Object .* \(resource server\)"):
        dataservices.check_compositions(objects, lambda api_version, kind: False, "cluster cp",
                                        {"function-patch-and-transform"})
