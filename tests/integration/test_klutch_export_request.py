"""klutch_export_request on the lab: the backend's work for one consumer, with real RBAC."""

import json

import pytest
import yaml

from ansible_collections.klutch.bind.plugins.module_utils import arguments
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CLUSTER_ROLES,
    CLUSTER_ROLE_BINDINGS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    Resource,
    SECRETS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_EXPORTS, API_SERVICE_NAMESPACES
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle.export import export_request
from ansible_collections.klutch.bind.plugins.module_utils.plan import consumers
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER

GROUP, RESOURCE = "samples.klutch.bind", "postgresqlinstances"
CRD_NAME = f"{RESOURCE}.{GROUP}"
INSTANCES = Resource(f"{GROUP}/v1", "PostgresqlInstance", RESOURCE)


@pytest.fixture(scope="module")
def exported(control_plane, klutch_apis, sample_dataservices, run_task):
    """A template for the sample PostgreSQL claims; the module's arguments for two consumers."""
    result, output = run_task("klutch.bind.klutch_template", {
        "kubeconfig": str(control_plane.admin_kubeconfig), "name": RESOURCE, "group": GROUP, "resource": RESOURCE,
        "permission_claims": [{"resource": "secrets", "owner": "Provider"}]})
    assert not result.get("failed"), output

    def args(consumer, **extra):
        return dict({"kubeconfig": str(control_plane.admin_kubeconfig), "consumer": consumer, "cluster_id": "Ab12Cd",
                     "resources": [{"group": GROUP, "resource": RESOURCE}]}, **extra)

    return args


def test_a_consumer_gets_its_namespace_credentials_and_an_export_of_the_crd(exported, run_task, klutch_apis, audit,
                                                                            control_plane):
    first, output = run_task("klutch.bind.klutch_export_request", exported("app-one"))
    assert not first.get("failed"), output
    namespace = first["consumer_namespace"]
    assert namespace.startswith("cluster-")
    assert first["request"] == {CRD_NAME: {"phase": "Succeeded"}}
    export = klutch_apis.get(API_SERVICE_EXPORTS, CRD_NAME, namespace)
    crd = klutch_apis.get(CUSTOM_RESOURCE_DEFINITIONS, CRD_NAME)
    assert export["spec"]["versions"] == consumers.export_snapshot(crd)["versions"]
    assert export["spec"]["names"] == crd["spec"]["names"] and export["spec"]["scope"] == "Namespaced"
    assert export["spec"]["informerScope"] == "Namespaced"
    assert export["spec"]["permissionClaims"][0]["resource"] == "secrets"
    assert export["metadata"]["annotations"][consumers.SPEC_HASH_ANNOTATION] == first["exports"][0]["hash"]
    assert yaml.safe_load(first["kubeconfig"])["contexts"][0]["context"]["namespace"] == namespace

    start = now()
    second, output = run_task("klutch.bind.klutch_export_request", exported("app-one"))
    assert second["changed"] is False, output
    assert second["consumer_namespace"] == namespace, "the identity finds the same namespace"
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0


def test_a_consumer_may_read_what_the_export_granted_the_moment_it_is_served(exported, klutch_apis):
    """The API server authorizes from a cache that trails RBAC writes. A konnector acts on the returned kubeconfig and
    on a namespace as soon as its status names it: the RBAC is written first, and enough earlier (60 of 60 consumers
    read at once, without waiting for the authorizer, when this was measured)."""
    defaults = dict((name, spec.get("default")) for name, spec in arguments.EXPORT.items())
    refused = []
    for index in range(20):
        params = dict(defaults, **exported(f"fresh-rights-{index}"), state="present", wait_timeout=30)
        served = export_request(klutch_apis, False, params)[0]
        namespace = served["consumer_namespace"]
        consumer = ClusterClient.from_params({"kubeconfig": yaml.safe_load(served["kubeconfig"])}, environ={})
        try:
            consumer.list(API_SERVICE_EXPORTS, namespace)
            consumer.write("POST", API_SERVICE_NAMESPACES, {
                "apiVersion": API_SERVICE_NAMESPACES.api_version, "kind": API_SERVICE_NAMESPACES.kind,
                "metadata": {"name": "default", "namespace": namespace}})
            announced = export_request(klutch_apis, False, params)[0]
            assert not announced.get("failed")
            mapped = klutch_apis.get(API_SERVICE_NAMESPACES, "default", namespace)["status"]["namespace"]
            consumer.list(INSTANCES, mapped)
        except ClusterError as error:
            refused.append((namespace, str(error)))
    assert refused == []


def test_rbac_is_least_privilege_and_consumers_are_isolated(exported, run_task, client_for, klutch_apis):
    one, output = run_task("klutch.bind.klutch_export_request", exported("rbac-one"))
    assert not one.get("failed"), output
    other, _output = run_task("klutch.bind.klutch_export_request", exported("rbac-other"))
    assert other["consumer_namespace"] != one["consumer_namespace"]
    consumer = client_for(kubeconfig=yaml.safe_load(one["kubeconfig"]))
    namespace = one["consumer_namespace"]

    assert consumer.get(API_SERVICE_EXPORTS, CRD_NAME, namespace) is not None
    consumer.apply(API_SERVICE_NAMESPACES, {"metadata": {"name": "shop", "namespace": namespace}})
    mapped, output = run_task("klutch.bind.klutch_export_request", exported("rbac-one"))
    assert mapped["changed"] is True, output
    shop = f"{namespace}-shop"
    assert klutch_apis.get(API_SERVICE_NAMESPACES, "shop", namespace)["status"]["namespace"] == shop
    claim = {"metadata": {"name": "orders", "namespace": shop},
             "spec": {"service": "postgresql-17", "plan": "postgresql-single-small"}}
    assert consumer.apply(INSTANCES, claim).changed
    assert isinstance(consumer.list(SECRETS, shop)[0], list), "claimed Secrets are readable where mapped"

    for forbidden in (lambda: consumer.list(INSTANCES, other["consumer_namespace"]),
                      lambda: consumer.list(SECRETS, "default"),
                      lambda: consumer.list(INSTANCES),
                      lambda: consumer.apply(SECRETS, {"metadata": {"name": "x", "namespace": shop}})):
        with pytest.raises(ClusterError) as refused:
            forbidden()
        assert refused.value.status == 403
    assert klutch_apis.get(CLUSTER_ROLE_BINDINGS, consumers.cluster_wide_role(namespace)) is None
    consumer.delete(INSTANCES, "orders", shop)


@pytest.mark.parametrize("resources, message", [
    ([{"group": GROUP, "resource": "nosuchinstances"}], "has no CRD nosuchinstances.samples.klutch.bind"),
    ([{"group": GROUP, "resource": "xpostgresqlinstances"}], "no APIServiceExportTemplate"),  # never templated
])
def test_bad_input_fails_clearly_and_writes_nothing(exported, run_task, audit, control_plane, resources, message):
    start = now()
    result, output = run_task("klutch.bind.klutch_export_request", exported("bad-input", resources=resources))
    assert result.get("failed"), output
    assert message in result["msg"]
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0


def test_the_token_never_shows_in_verbose_output_or_diff_yet_the_registered_result_holds_it(
        exported, run_task, run_playbook, tmp_path):
    result, _output = run_task("klutch.bind.klutch_export_request", exported("app-one"))
    token = yaml.safe_load(result["kubeconfig"])["users"][0]["user"]["token"]
    kept = tmp_path / "kubeconfig"
    run = run_playbook(f"""\
        - name: Export without no_log, at -vvv and with diff
          hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - name: Export
              klutch.bind.klutch_export_request: {json.dumps(exported("app-one"))}
              register: export
            - name: Keep the registered kubeconfig for the test
              ansible.builtin.copy:
                content: "{{{{ export.kubeconfig }}}}"
                dest: {kept}
                mode: "0600"
              no_log: true
        """, diff=True, env={"ANSIBLE_VERBOSITY": "3"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert token not in run.stdout + run.stderr
    assert "the output has been hidden" in run.stdout
    assert yaml.safe_load(kept.read_text())["users"][0]["user"]["token"] == token


def test_check_mode_for_a_new_consumer_writes_nothing_and_reports_the_plan(exported, run_task, audit, control_plane):
    start = now()
    result, output = run_task("klutch.bind.klutch_export_request", exported("check-only"), check=True)
    assert result["changed"] is True, output
    assert {entry["kind"] for entry in result["results"]} >= {"Namespace", "ServiceAccount", "APIServiceExport"}
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0


def test_absent_removes_exports_and_rights_and_the_namespaces_only_when_asked(
        exported, run_task, client_for, klutch_apis):
    bound, output = run_task("klutch.bind.klutch_export_request", exported("leaving"))
    assert not bound.get("failed"), output
    namespace = bound["consumer_namespace"]
    consumer = client_for(kubeconfig=yaml.safe_load(bound["kubeconfig"]))

    removed, output = run_task("klutch.bind.klutch_export_request", exported("leaving", state="absent"))
    assert removed["changed"] is True, output
    assert klutch_apis.get(API_SERVICE_EXPORTS, CRD_NAME, namespace) is None
    assert not klutch_apis.get(CLUSTER_ROLES, f"klutch-binder-{namespace}").get("rules"), "no export, no rights"
    assert consumer.list(API_SERVICE_EXPORTS, namespace)[0] == [], "the consumer itself stays until asked"

    gone, output = run_task("klutch.bind.klutch_export_request",
                            exported("leaving", state="absent", resources=[], delete_namespace=True))
    assert gone["changed"] is True, output
    namespace_object = klutch_apis.get(NAMESPACES, namespace)
    assert namespace_object is None or namespace_object["metadata"].get("deletionTimestamp")


def test_cluster_scope_never_lists_a_namespaced_kind_or_secrets_cluster_wide(
        exported, run_task, client_for, klutch_apis, audit, control_plane):
    bound, output = run_task("klutch.bind.klutch_export_request", exported("cluster-wide", consumer_scope="Cluster"))
    assert not bound.get("failed"), output
    consumer = client_for(kubeconfig=yaml.safe_load(bound["kubeconfig"]))
    for kind in (INSTANCES, SECRETS):  # other consumers' instances live in their namespaces
        with pytest.raises(ClusterError) as refused:
            consumer.list(kind)
        assert refused.value.status == 403

    start = now()
    changed, output = run_task("klutch.bind.klutch_export_request", exported("cluster-wide"))
    assert changed.get("failed"), output
    assert "informerScope Cluster, which cannot change" in changed["msg"]
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0
