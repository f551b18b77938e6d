"""Publishing data services with klutch_dataservice and the control_plane role, on the lab's Crossplane."""

from pathlib import Path

import pytest
import yaml

from ansible_collections.klutch.bind.plugins.module_utils import oci
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import condition_holds
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    Resource,
    SECRETS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import COMPOSITE_RESOURCE_DEFINITIONS, COMPOSITIONS
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER
from playbook_runner import recap

SOURCE = Path(__file__).resolve().parents[2] / "roles" / "control_plane" / "files" / "dataservices"
CONFIGURATIONS = Resource("pkg.crossplane.io/v1", "Configuration", "configurations", namespaced=False)
SAMPLE_XRDS = ["xmessaginginstances.samples.klutch.bind", "xpostgresqlinstances.samples.klutch.bind"]
POSTGRESQL_XRD = "xpostgresqlinstances.samples.klutch.bind"


@pytest.fixture(scope="module")
def cp(control_plane, client_for):
    return client_for(control_plane.admin_kubeconfig)


def test_check_mode_before_publishing_writes_nothing_and_tells_what_would_change(sample_dataservices):
    run = sample_dataservices.runs["check"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert recap(run)["changed"] >= 1
    assert sample_dataservices.writes["check"] == 0
    assert sample_dataservices.listings["check"] == sample_dataservices.listings["first"]
    assert not sample_dataservices.in_registry["check"], "check mode pushed the package"


def test_the_role_builds_pushes_and_installs_the_sample_package(sample_dataservices, cp, figure):
    run = sample_dataservices.runs["first"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert sample_dataservices.in_registry["first"]
    configuration = cp.get(CONFIGURATIONS, "sample-dataservices")
    assert condition_holds("Installed")(configuration) and condition_holds("Healthy")(configuration)
    assert configuration["status"]["currentIdentifier"] == sample_dataservices.package
    assert f"revision {configuration['status']['currentRevision']}, healthy" in run.stdout
    for xrd in SAMPLE_XRDS:
        assert condition_holds("Offered")(cp.get(COMPOSITE_RESOURCE_DEFINITIONS, xrd))
    # Listed as the role returned: the package's APIs served their kinds by then, ready for a template.
    served = sample_dataservices.listings["second"]["CustomResourceDefinition"]
    assert {"postgresqlinstances.samples.klutch.bind", "xpostgresqlinstances.samples.klutch.bind"} <= set(served)
    figure(f"role with the sample package: first run {sample_dataservices.seconds['first']:.1f} s, "
           f"second run {sample_dataservices.seconds['second']:.1f} s")


def test_a_second_run_changes_and_writes_nothing(sample_dataservices):
    run = sample_dataservices.runs["second"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert recap(run)["changed"] == 0
    assert sample_dataservices.writes["second"] == 0
    assert sample_dataservices.listings["second"] == sample_dataservices.listings["after"]


MODIFIED_GROUP = "modified.samples.example"
MODIFIED = Resource(f"{MODIFIED_GROUP}/v1", "PostgresqlInstance", "postgresqlinstances")
RENAMED = Resource(f"{MODIFIED_GROUP}/v1", "ManagedDatabase", "manageddatabases")


def test_a_new_plan_and_then_a_new_claim_kind_reach_the_cluster_as_new_package_versions(
        cp, crossplane, control_plane_play, run_playbook, sample_dataservices):
    package = f"{crossplane['registry']}/klutch-bind/modified-samples"

    def publish(tag, **changes):
        apis = [dict({"name": xrd, "group": MODIFIED_GROUP}, **(changes if xrd == POSTGRESQL_XRD else {}))
                for xrd in SAMPLE_XRDS]
        run = run_playbook(control_plane_play(control_plane_dataservices=[
            {"name": "modified-samples", "src": "dataservices", "package": f"{package}:{tag}", "apis": apis}]))
        assert run.returncode == 0, run.stdout + run.stderr
        configuration = cp.get(CONFIGURATIONS, "modified-samples")
        assert configuration["status"]["currentIdentifier"] == f"{package}:{tag}"
        assert condition_holds("Healthy")(configuration)
        return configuration["status"]["currentRevision"]

    cp.apply(NAMESPACES, {"metadata": {"name": "modified-claims"}})
    first = publish("v1.0.0")
    claim = {"metadata": {"name": "ledger", "namespace": "modified-claims"},
             "spec": {"service": "postgresql-17", "plan": "postgresql-single-medium"}}
    cp.apply(MODIFIED, claim)
    with pytest.raises(ClusterError) as refused:
        cp.apply(MODIFIED, dict(claim, spec=dict(claim["spec"], plan="postgresql-single-huge")))
    assert refused.value.status == 422

    second = publish("v1.1.0", plans=["postgresql-single-huge"])
    assert second != first
    plans = cp.get(CUSTOM_RESOURCE_DEFINITIONS, f"postgresqlinstances.{MODIFIED_GROUP}")["spec"]["versions"][0][
        "schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["plan"]["enum"]
    assert plans[-1] == "postgresql-single-huge"
    with pytest.raises(ClusterError) as downgrade:
        cp.apply(MODIFIED, dict(claim, spec=dict(claim["spec"], plan="postgresql-single-small")))
    assert downgrade.value.status == 422
    assert "Transition from bigger to smaller plan size is not supported." in str(downgrade.value)
    assert cp.apply(MODIFIED, dict(claim, spec=dict(claim["spec"], plan="postgresql-single-huge"))).changed

    publish("v1.2.0", plans=["postgresql-single-huge"], claim_kind="ManagedDatabase")
    xrd = cp.get(COMPOSITE_RESOURCE_DEFINITIONS, f"xmanageddatabases.{MODIFIED_GROUP}")
    assert xrd["spec"]["claimNames"] == {"kind": "ManagedDatabase", "plural": "manageddatabases"}
    assert cp.get(COMPOSITIONS, f"postgresql.xmanageddatabases.{MODIFIED_GROUP}")["spec"]["compositeTypeRef"] == {
        "apiVersion": f"{MODIFIED_GROUP}/v1", "kind": "XManagedDatabase"}
    cp.apply(RENAMED, {"metadata": {"name": "ledger", "namespace": "modified-claims"},
                       "spec": {"service": "postgresql-15", "plan": "postgresql-single-huge",
                                "writeConnectionSecretToRef": {"name": "ledger-creds"}}})
    cp.wait(RENAMED, "ledger", "modified-claims", condition_holds("Ready"), 90, "Ready")
    secret = cp.wait(SECRETS, "ledger-creds", "modified-claims", lambda obj: obj is not None, 30, "published")
    assert {"host", "port", "username", "password", "database", "uri"} == set(secret["data"])
    assert cp.get(MODIFIED, "ledger", "modified-claims") is not None, "the original API keeps its claims"
    for kind in (RENAMED, MODIFIED):
        cp.delete(kind, "ledger", "modified-claims")


DIRECT_GROUP = "direct.samples.example"


def test_xrds_and_compositions_applied_directly_are_updated_in_place(cp, run_task, audit, control_plane):
    args = {"name": "direct-samples", "src": str(SOURCE), "kubeconfig": str(control_plane.admin_kubeconfig),
            "apis": [{"name": xrd, "group": DIRECT_GROUP} for xrd in SAMPLE_XRDS]}
    first, output = run_task("klutch.bind.klutch_dataservice", args)
    assert not first.get("failed"), output
    assert sorted(api["claim_kind"] for api in first["apis"]) == ["MessagingInstance", "PostgresqlInstance"]
    created = {entry["name"] for entry in first["results"] if entry["action"] == "created"}
    assert {f"xpostgresqlinstances.{DIRECT_GROUP}", f"postgresql.xpostgresqlinstances.{DIRECT_GROUP}"} <= created
    assert all(entry["kind"] != "Configuration" for entry in first["results"]), "crossplane.yaml is not applied"
    assert condition_holds("Offered")(cp.get(COMPOSITE_RESOURCE_DEFINITIONS, f"xpostgresqlinstances.{DIRECT_GROUP}"))

    start = now()
    second, _output = run_task("klutch.bind.klutch_dataservice", args)
    assert second["changed"] is False
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0

    args["apis"][1]["plans"] = ["postgresql-replica-huge"]
    third, output = run_task("klutch.bind.klutch_dataservice", args, diff=True)
    assert third["changed"] is True, output
    assert [entry["name"] for entry in third["results"] if entry["action"] == "updated"] == [
        f"xpostgresqlinstances.{DIRECT_GROUP}"]
    crd = cp.wait(CUSTOM_RESOURCE_DEFINITIONS, f"postgresqlinstances.{DIRECT_GROUP}",
                  None, lambda obj: "postgresql-replica-huge" in str(obj), 30, "with the new plan")
    assert crd is not None

    removed, output = run_task("klutch.bind.klutch_dataservice", dict(args, state="absent"))
    assert removed["changed"] is True, output
    assert cp.get(COMPOSITE_RESOURCE_DEFINITIONS, f"xpostgresqlinstances.{DIRECT_GROUP}") is None


def broken_source(tmp_path, name, edit):
    """A copy of the sample source with `edit(path)` applied to it."""
    source = tmp_path / name
    source.mkdir()
    for path in SOURCE.glob("*.yaml"):
        (source / path.name).write_text(path.read_text())
    edit(source)
    return source


def compose_missing_kind(source):
    path = source / "postgresql-composition.yaml"
    composition = yaml.safe_load(path.read_text())
    composition["spec"]["resources"][0]["base"].update(apiVersion="databases.nowhere.example/v1", kind="Server")
    path.write_text(yaml.safe_dump(composition))


def point_at_missing_xrd(source):
    path = source / "postgresql-composition.yaml"
    composition = yaml.safe_load(path.read_text())
    composition["spec"]["compositeTypeRef"]["kind"] = "XPostgresqlServer"
    path.write_text(yaml.safe_dump(composition))


@pytest.mark.parametrize("case, message", [
    ("missing package", "has no package"),
    ("invalid YAML", "postgresql-definition.yaml is not valid YAML at line"),
    ("composed kind missing", "Composition postgresql composes kind Server in databases.nowhere.example/v1 "
                              "(resource server), which"),
    ("composite kind missing", "Composition postgresql is for kind XPostgresqlServer in samples.klutch.bind/v1, "
                               "which no CompositeResourceDefinition in the source defines"),
    ("crossplane missing", "Crossplane is not installed on"),
    ("same tag, other content", "already holds a different package"),
    ("API of another package", "samples.klutch.bind already belongs to the Crossplane package of Configuration "
                               "sample-dataservices"),
])
def test_bad_input_is_refused_with_a_clear_message_and_nothing_written(
        case, message, run_task, control_plane, app, audit, crossplane, sample_dataservices, tmp_path):
    args = {"name": "refused", "kubeconfig": str(control_plane.admin_kubeconfig), "crank": crossplane["crank"]}
    package = f"{crossplane['registry']}/klutch-bind/refused:v1.0.0"
    cluster = control_plane
    if case == "missing package":
        args["package"] = package
    elif case == "invalid YAML":
        args["src"] = str(broken_source(tmp_path, "yaml", lambda source: (source / "postgresql-definition.yaml")
                                        .write_text("spec:\n  group: [unclosed\n")))
        args["package"] = package
    elif case == "composed kind missing":
        args["src"] = str(broken_source(tmp_path, "composed", compose_missing_kind))
    elif case == "composite kind missing":
        args["src"] = str(broken_source(tmp_path, "composite", point_at_missing_xrd))
        args["package"] = package
    elif case == "crossplane missing":
        cluster = app
        args.update(kubeconfig=str(app.admin_kubeconfig), src=str(SOURCE))
    elif case == "API of another package":
        args.update(src=str(SOURCE))
    else:
        args.update(name="sample-dataservices", src=str(SOURCE), package=sample_dataservices.package,
                    apis=[{"name": POSTGRESQL_XRD, "plans": ["postgresql-single-other"]}])
    start = now()
    result, output = run_task("klutch.bind.klutch_dataservice", args)
    assert result.get("failed"), output
    assert message in result["msg"]
    assert "Traceback" not in output
    assert audit(cluster).count_writes(since=start, user=ADMIN_USER) == 0
    assert oci.Registry().manifest(oci.Reference(package)) is None
