"""klutch_binding and klutch_bind on the lab: template -> export request -> binding (-> sync), with the sample
Crossplane claim CRD."""

import base64
import json

import pytest
import yaml

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    Resource,
    SECRETS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_BINDINGS, API_SERVICE_EXPORTS
from ansible_collections.klutch.bind.plugins.module_utils.plan import bindings
from conftest import KLUTCH_CRDS
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER
from sync_world import consumer_name

GROUP, RESOURCE = "samples.klutch.bind", "postgresqlinstances"
NAME = f"{RESOURCE}.{GROUP}"
INSTANCES = Resource(f"{GROUP}/v1", "PostgresqlInstance", RESOURCE)


@pytest.fixture(scope="module")
def template(control_plane, klutch_apis, sample_dataservices, run_task):
    result, output = run_task("klutch.bind.klutch_template", {
        "kubeconfig": str(control_plane.admin_kubeconfig), "name": RESOURCE, "group": GROUP, "resource": RESOURCE,
        "permission_claims": [{"resource": "secrets", "owner": "Provider", "required": True},
                              {"resource": "configmaps", "owner": "Provider"}]})
    assert not result.get("failed"), output


@pytest.fixture(scope="module")
def app(lab):
    """An app cluster of these tests' own: binding installs the Klutch CRDs, which other tests expect absent."""
    lab.up(list(lab.state["clusters"]) + ["app-bound"])
    yield lab.cluster("app-bound")
    lab.down(["app-bound"])


@pytest.fixture
def admin(app):
    return ClusterClient.from_params({"kubeconfig": str(app.admin_kubeconfig)}, environ={})


@pytest.fixture(scope="module")
def prepare(run_task):
    """prepare(cluster): what the konnector role gives an app cluster before binding, its CRDs and klutch-bind."""

    def run(cluster):
        for manifests in ({"src": str(KLUTCH_CRDS), "wait": True},
                          {"definition": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "klutch-bind"}}}):
            applied, output = run_task("klutch.bind.klutch_manifest", dict(kubeconfig=str(cluster.admin_kubeconfig),
                                                                           **manifests))
            assert not applied.get("failed"), output

    return run


@pytest.fixture(scope="module")
def export_for(template, prepare, control_plane, run_task):
    """export_for(cluster) -> klutch_export_request's result for it: the playbook's steps before binding."""

    def run(cluster):
        app_args = {"kubeconfig": str(cluster.admin_kubeconfig)}
        prepare(cluster)
        info, output = run_task("klutch.bind.klutch_cluster_info", app_args)
        assert info["cluster_id"], output
        exported, output = run_task("klutch.bind.klutch_export_request", {
            "kubeconfig": str(control_plane.admin_kubeconfig), "consumer": consumer_name(cluster),
            "cluster_id": info["cluster_id"], "resources": [{"group": GROUP, "resource": RESOURCE}]})
        assert not exported.get("failed"), output
        return exported

    return run


@pytest.fixture(scope="module")
def bind(export_for, run_task):
    """bind(cluster, **binding_args) -> (export_request result, binding result, output)."""

    def run(cluster, **binding_args):
        exported = export_for(cluster)
        bound, output = run_task("klutch.bind.klutch_binding", dict(dict(
            {"kubeconfig": str(cluster.admin_kubeconfig)}, name=NAME, provider_kubeconfig=exported["kubeconfig"],
            accept_claims=["secrets", "configmaps"]), **binding_args))
        return exported, bound, output

    return run


def test_binding_creates_the_crd_of_the_provider_with_claims_and_conditions(bind, app, admin, klutch_apis, audit):
    exported, bound, output = bind(app)
    assert not bound.get("failed"), output
    crd = admin.get(CUSTOM_RESOURCE_DEFINITIONS, NAME)
    provider = klutch_apis.get(CUSTOM_RESOURCE_DEFINITIONS, NAME)
    for field in ("group", "names", "scope"):
        assert crd["spec"][field] == provider["spec"][field]
    served = [version for version in provider["spec"]["versions"] if version["served"]]
    assert [v["name"] for v in crd["spec"]["versions"]] == [v["name"] for v in served]
    assert crd["spec"]["versions"][0]["schema"] == served[0]["schema"]
    assert crd["metadata"]["ownerReferences"][0]["kind"] == "APIServiceBinding"
    binding = admin.get(API_SERVICE_BINDINGS, NAME, "klutch-bind")
    assert [claim["state"] for claim in binding["spec"]["permissionClaims"]] == ["Accepted", "Accepted"]
    assert binding["status"]["providerPrettyName"] == "klutch.bind"
    assert {c["type"]: c["status"] for c in binding["status"]["conditions"]} == {
        "SecretValid": "True", "Connected": "True", "Ready": "True"}
    secret = admin.get(SECRETS, binding["spec"]["kubeconfigSecretRef"]["name"], "klutch-bind")
    assert secret["metadata"]["name"].startswith("kubeconfig-")

    admin.apply(NAMESPACES, {"metadata": {"name": "shop"}})
    with pytest.raises(ClusterError) as refused:
        admin.apply(INSTANCES, {"metadata": {"name": "orders", "namespace": "shop"},
                                "spec": {"service": "postgresql-17", "plan": "postgresql-single-tiny"}})
    assert refused.value.status == 422, "the provider's enum holds on the app cluster"

    start = now()
    _exported, again, output = bind(app)
    assert again["changed"] is False, output
    assert audit(app).count_writes(since=start, user=ADMIN_USER) == 0


def test_a_rejected_required_claim_and_a_foreign_crd_are_refused_without_writes(export_for, lab, audit, run_task):
    lab.up(list(lab.state["clusters"]) + ["app-foreign"])
    try:
        cluster = lab.cluster("app-foreign")
        client = ClusterClient.from_params({"kubeconfig": str(cluster.admin_kubeconfig)}, environ={})
        args = {"kubeconfig": str(cluster.admin_kubeconfig), "name": NAME,
                "provider_kubeconfig": export_for(cluster)["kubeconfig"], "accept_claims": []}
        start = now()
        for accepted in ([], ["configmaps"]):  # none by default: a required claim needs consent by name
            rejected, output = run_task("klutch.bind.klutch_binding", dict(args, accept_claims=accepted))
            assert rejected.get("failed"), output
            assert "requires the permission claim on secrets" in rejected["msg"]
            assert "Add secrets to accept_claims" in rejected["msg"]
        del args["accept_claims"]
        rejected, output = run_task("klutch.bind.klutch_binding", args)
        assert rejected.get("failed") and "requires the permission claim on secrets" in rejected["msg"], output
        assert audit(cluster).count_writes(since=start, user=ADMIN_USER) == 0
        args["accept_claims"] = ["secrets"]

        client.apply(CUSTOM_RESOURCE_DEFINITIONS, {
            "metadata": {"name": NAME}, "spec": {
                "group": GROUP, "scope": "Namespaced", "names": {"kind": "PostgresqlInstance", "plural": RESOURCE},
                "versions": [{"name": "v1", "served": True, "storage": True,
                              "schema": {"openAPIV3Schema": {"type": "object"}}}]}})
        start = now()
        foreign, output = run_task("klutch.bind.klutch_binding", args)
        assert foreign.get("failed"), output
        assert "ForeignCustomResourceDefinition" in foreign["msg"]
        assert audit(cluster).count_writes(since=start, user=ADMIN_USER) == 0
    finally:
        lab.down(["app-foreign"])


def test_wrong_or_malformed_provider_kubeconfigs_are_refused_without_writes(export_for, app, run_task, audit):
    export_for(app)  # the app cluster has the Klutch CRDs, so a kubeconfig for it finds no export there
    args = {"kubeconfig": str(app.admin_kubeconfig), "name": NAME}
    other_cluster = yaml.safe_load(app.admin_kubeconfig.read_text())
    other_cluster["contexts"][0]["context"]["namespace"] = "default"
    for provider, message in (("apiVersion: v1\nkind: Config\n", "provider_kubeconfig is not a kubeconfig"),
                              ("/nonexistent/kubeconfig", "cannot be read (No such file or directory)"),
                              (other_cluster, "has no APIServiceExport")):
        start = now()
        result, output = run_task("klutch.bind.klutch_binding", dict(args, provider_kubeconfig=provider))
        assert result.get("failed"), output
        assert message in result["msg"]
        assert audit(app).count_writes(since=start, user=ADMIN_USER) == 0


def test_unbinding_keeps_the_crd_unless_asked(bind, lab, run_task):
    lab.up(list(lab.state["clusters"]) + ["app-leaving"])
    try:
        cluster = lab.cluster("app-leaving")
        client = ClusterClient.from_params({"kubeconfig": str(cluster.admin_kubeconfig)}, environ={})
        _exported, bound, output = bind(cluster)
        assert not bound.get("failed"), output
        args = {"kubeconfig": str(cluster.admin_kubeconfig), "name": NAME, "state": "absent"}
        removed, output = run_task("klutch.bind.klutch_binding", args)
        assert removed["changed"] is True, output
        assert client.get(API_SERVICE_BINDINGS, NAME, "klutch-bind") is None
        assert client.get(CUSTOM_RESOURCE_DEFINITIONS, NAME) is not None
        assert [s for s in client.list(SECRETS, "klutch-bind")[0] if s["metadata"]["name"].startswith("kubeconfig-")] == []
        removed, output = run_task("klutch.bind.klutch_binding", dict(args, delete_crd=True))
        assert removed["changed"] is True, output
        crd = client.get(CUSTOM_RESOURCE_DEFINITIONS, NAME)
        assert crd is None or crd["metadata"].get("deletionTimestamp")
    finally:
        lab.down(["app-leaving"])


def test_the_cluster_id_is_klutchs(app, admin, bind):
    uid = admin.get(NAMESPACES, "klutch-bind")["metadata"]["uid"]
    _exported, bound, _output = bind(app)
    assert bound["cluster_id"] == bindings.cluster_id(uid)


DRIFT_CRD = {"metadata": {"name": "gadgets.drift.example"}, "spec": {
    "group": "drift.example", "scope": "Namespaced",
    "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
        "type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}}


@pytest.fixture(scope="module")
def gadgets(klutch_apis, control_plane, run_task):
    """A second exported API on the control plane, gadgets.drift.example."""
    klutch_apis.apply(CUSTOM_RESOURCE_DEFINITIONS, DRIFT_CRD)
    result, output = run_task("klutch.bind.klutch_template", {
        "kubeconfig": str(control_plane.admin_kubeconfig), "name": "gadgets", "group": "drift.example",
        "resource": "gadgets"})
    assert not result.get("failed"), output


def test_a_schema_change_on_the_provider_reaches_the_app_cluster_on_the_next_run(
        export_for, gadgets, app, admin, klutch_apis, control_plane, run_task):
    info, _output = run_task("klutch.bind.klutch_cluster_info", {"kubeconfig": str(app.admin_kubeconfig)})
    request = {"kubeconfig": str(control_plane.admin_kubeconfig), "consumer": "app-bound", "cluster_id": info["cluster_id"],
               "resources": [{"group": "drift.example", "resource": "gadgets"}]}

    def export_and_bind():
        exported, output = run_task("klutch.bind.klutch_export_request", request)
        assert not exported.get("failed"), output
        bound, output = run_task("klutch.bind.klutch_binding", {
            "kubeconfig": str(app.admin_kubeconfig), "name": "gadgets.drift.example",
            "provider_kubeconfig": exported["kubeconfig"]})
        assert not bound.get("failed"), output
        return exported, bound

    first, _bound = export_and_bind()
    changed = klutch_apis.get(CUSTOM_RESOURCE_DEFINITIONS, "gadgets.drift.example")
    spec_properties = changed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    spec_properties["colour"] = {"type": "string", "enum": ["red", "blue"]}
    klutch_apis.apply(CUSTOM_RESOURCE_DEFINITIONS, {"metadata": {"name": "gadgets.drift.example"},
                                                    "spec": changed["spec"]})
    second, bound = export_and_bind()
    assert second["exports"][0]["hash"] != first["exports"][0]["hash"]
    assert second["exports"][0]["action"] == "updated"
    assert bound["crd"]["action"] == "updated"
    app_schema = admin.get(CUSTOM_RESOURCE_DEFINITIONS, "gadgets.drift.example")["spec"]["versions"][0]["schema"]
    assert app_schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["colour"]["enum"] == ["red", "blue"]


def test_check_mode_binds_nothing_and_two_app_clusters_are_isolated(
        export_for, bind, app, lab, audit, run_task, client_for):
    lab.up(list(lab.state["clusters"]) + ["app-two"])
    try:
        cluster = lab.cluster("app-two")
        exported = export_for(cluster)
        args = {"kubeconfig": str(cluster.admin_kubeconfig), "name": NAME, "provider_kubeconfig": exported["kubeconfig"],
                "accept_claims": ["secrets"]}
        start = now()
        planned, output = run_task("klutch.bind.klutch_binding", args, check=True)
        assert planned["changed"] is True, output
        assert audit(cluster).count_writes(since=start, user=ADMIN_USER) == 0

        first, _bound, output = bind(app)
        assert exported["consumer_namespace"] != first["consumer_namespace"]
        two = client_for(kubeconfig=yaml.safe_load(exported["kubeconfig"]))
        with pytest.raises(ClusterError) as refused:
            two.list(SECRETS, first["consumer_namespace"])
        assert refused.value.status == 403
    finally:
        lab.down(["app-two"])


def test_an_unreachable_control_plane_is_named_and_nothing_is_written(export_for, app, audit, run_task):
    config = yaml.safe_load(export_for(app)["kubeconfig"])
    config["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:9"
    start = now()
    result, output = run_task("klutch.bind.klutch_binding", {
        "kubeconfig": str(app.admin_kubeconfig), "name": NAME, "provider_kubeconfig": config},
        env={"KLUTCH_BIND_RETRY_BUDGET": "3"})  # refused connections are retried for this long
    assert result.get("failed"), output
    assert "127.0.0.1:9" in result["msg"] and "refused" in result["msg"]
    assert audit(app).count_writes(since=start, user=ADMIN_USER) == 0


def test_no_token_in_verbose_output_or_diff(export_for, app, run_playbook):
    exported = export_for(app)
    token = yaml.safe_load(exported["kubeconfig"])["users"][0]["user"]["token"]
    args = {"kubeconfig": str(app.admin_kubeconfig), "name": NAME, "provider_kubeconfig": exported["kubeconfig"],
            "accept_claims": ["secrets", "configmaps"]}
    run = run_playbook(f"""\
        - name: Bind, verbosely and with diff
          hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - name: Bind
              klutch.bind.klutch_binding: {json.dumps(args)}
        """, diff=True, env={"ANSIBLE_VERBOSITY": "3"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert token not in run.stdout + run.stderr


def test_objects_have_the_shapes_a_klutch_konnector_reads(bind, app, admin, klutch_apis, client_for):
    exported, bound, output = bind(app)
    assert not bound.get("failed"), output
    namespace = exported["consumer_namespace"]
    info_id = bound["cluster_id"]
    assert klutch_apis.get(NAMESPACES, namespace)["metadata"]["annotations"][
        "example-backend.klutch.anynines.com/identity"] == f"{consumer_name(app)}#{info_id}"
    cluster_binding = klutch_apis.get(Resource("klutch.anynines.com/v1alpha1", "ClusterBinding", "clusterbindings"),
                                      "cluster", namespace)
    assert cluster_binding["spec"]["kubeconfigSecretRef"] == {"name": "kubeconfig", "key": "kubeconfig"}
    provider_secret = klutch_apis.get(SECRETS, "kubeconfig", namespace)
    assert set(provider_secret["data"]) == {"kubeconfig"}
    token = klutch_apis.get(SECRETS, "klutch-binder", namespace)
    assert token["type"] == "kubernetes.io/service-account-token"
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "klutch-binder"

    binding = admin.get(API_SERVICE_BINDINGS, NAME, "klutch-bind")
    ref = binding["spec"]["kubeconfigSecretRef"]
    assert ref["namespace"] == "klutch-bind" and ref["key"] == "kubeconfig" and ref["name"].startswith("kubeconfig-")
    stored = yaml.safe_load(base64.b64decode(admin.get(SECRETS, ref["name"], "klutch-bind")["data"]["kubeconfig"]))
    assert bindings.kubeconfig_target(stored)[1] == namespace
    owner = admin.get(CUSTOM_RESOURCE_DEFINITIONS, NAME)["metadata"]["ownerReferences"][0]
    assert owner == {"apiVersion": "klutch.anynines.com/v1alpha1", "kind": "APIServiceBinding", "name": NAME,
                     "uid": binding["metadata"]["uid"], "controller": True}

    # What the konnector does with the stored kubeconfig: read the export, heartbeat, read its Secret.
    konnector = client_for(kubeconfig=stored)
    assert konnector.get(API_SERVICE_EXPORTS, NAME, namespace)["spec"]["informerScope"] == "Namespaced"
    heartbeat = {"apiVersion": "klutch.anynines.com/v1alpha1", "kind": "ClusterBinding",
                 "metadata": {"name": "cluster", "namespace": namespace},
                 "status": {"heartbeatInterval": "5m0s", "konnectorVersion": "unknown"}}
    konnector.apply(Resource("klutch.anynines.com/v1alpha1", "ClusterBinding", "clusterbindings"), heartbeat,
                    subresource="status")
    assert konnector.get(SECRETS, "kubeconfig", namespace) is not None


@pytest.fixture
def other_app(lab, prepare):
    """A new app cluster, prepared as the konnector role leaves it."""
    lab.up(list(lab.state["clusters"]) + ["app-bind"])
    cluster = lab.cluster("app-bind")
    prepare(cluster)
    yield cluster
    lab.down(["app-bind"])


def bind_args(cluster, control_plane, **options):
    return dict({"kubeconfig": str(cluster.admin_kubeconfig), "control_plane_kubeconfig": str(control_plane.admin_kubeconfig),
                 "consumer": consumer_name(cluster),
                 "services": [{"group": GROUP, "resource": RESOURCE, "accept_claims": ["secrets"]}]},
                **options)


def test_klutch_bind_exports_binds_and_syncs_in_one_task_and_again_writes_nothing(
        template, other_app, control_plane, klutch_apis, run_task, audit, client_for):
    app = client_for(other_app.admin_kubeconfig)
    start = now()
    planned, output = run_task("klutch.bind.klutch_bind", bind_args(other_app, control_plane), check=True)
    assert planned["changed"] is True, output
    assert planned["bindings"] == {NAME: {"conditions": []}}, "a new consumer's bindings can only be planned"
    assert audit(other_app).count_writes(since=start, user=ADMIN_USER) == 0
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0

    bound, output = run_task("klutch.bind.klutch_bind", bind_args(other_app, control_plane))
    assert bound["changed"] is True and not bound.get("failed"), output
    assert bound["cluster_id"] == bindings.cluster_id(app.get(NAMESPACES, "klutch-bind")["metadata"]["uid"])
    identity = klutch_apis.get(NAMESPACES, bound["consumer_namespace"])["metadata"]["annotations"][
        "example-backend.klutch.anynines.com/identity"]
    assert identity == f"{consumer_name(other_app)}#{bound['cluster_id']}"
    assert klutch_apis.get(API_SERVICE_EXPORTS, NAME, bound["consumer_namespace"]) is not None
    binding = app.get(API_SERVICE_BINDINGS, NAME, "klutch-bind")
    assert [claim["state"] for claim in binding["spec"]["permissionClaims"]] == ["Accepted", "Rejected"]
    assert bound["bindings"][NAME]["rejected_claims"] == ["configmaps"]
    assert f"Binding {NAME} rejects the permission claims on configmaps, which accept_claims does not list" in \
        " ".join(output.split()), "a rejected claim is a warning"
    assert {c["type"]: c["status"] for c in bound["bindings"][NAME]["conditions"]}["Ready"] == "True"
    assert bound["bindings"][NAME]["crd"]["action"] == "created"
    assert app.get(CUSTOM_RESOURCE_DEFINITIONS, NAME)["metadata"]["ownerReferences"][0]["name"] == NAME
    assert bound["synced"] == {NAME: {"up": {}, "down": {}}}, "nothing to sync on a new app cluster"
    assert {entry["cluster"] for entry in bound["results"]} == {"control_plane", "app_cluster"}
    token = klutch_apis.get(SECRETS, "klutch-binder", bound["consumer_namespace"])["data"]["token"]
    assert "kubeconfig" not in bound, "the consumer's kubeconfig stays inside the module"
    assert base64.b64decode(token).decode() not in output

    start = now()
    again, output = run_task("klutch.bind.klutch_bind", bind_args(other_app, control_plane))
    assert again["changed"] is False, output
    consumer = f"system:serviceaccount:{bound['consumer_namespace']}:klutch-binder"
    assert audit(other_app).count_writes(since=start, user=ADMIN_USER) == 0
    for user in (ADMIN_USER, consumer):
        assert audit(control_plane).count_writes(since=start, user=user) == 0


def test_klutch_bind_reaches_the_control_plane_by_a_context_of_the_environments_kubeconfig(
        template, other_app, control_plane, run_task, tmp_path):
    merged = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [], "contexts": []}
    for cluster in (other_app, control_plane):
        config = yaml.safe_load(cluster.admin_kubeconfig.read_text())
        for section in ("clusters", "users", "contexts"):
            merged[section].extend(dict(entry, name=f"{cluster.name}-{entry['name']}") for entry in config[section])
        merged["contexts"][-1]["context"] = {"cluster": f"{cluster.name}-{config['contexts'][0]['context']['cluster']}",
                                             "user": f"{cluster.name}-{config['contexts'][0]['context']['user']}"}
    path = tmp_path / "merged.kubeconfig"
    path.write_text(yaml.safe_dump(merged))
    contexts = [context["name"] for context in merged["contexts"]]
    args = {"control_plane_context": contexts[1], "consumer": consumer_name(other_app),
            "services": [{"group": GROUP, "resource": RESOURCE, "accept_claims": ["secrets"]}]}
    bound, output = run_task("klutch.bind.klutch_bind", args,
                             env={"K8S_AUTH_KUBECONFIG": str(path), "K8S_AUTH_CONTEXT": contexts[0]})
    assert not bound.get("failed"), output
    assert bound["cluster"].startswith(f"cluster {contexts[0]} ")


def test_klutch_bind_refuses_an_unprepared_app_cluster_or_no_control_plane_without_writes(
        template, lab, control_plane, run_task, audit):
    lab.up(list(lab.state["clusters"]) + ["app-bare"])
    try:
        cluster = lab.cluster("app-bare")
        start = now()
        refused, output = run_task("klutch.bind.klutch_bind", bind_args(cluster, control_plane))
        assert refused.get("failed"), output
        assert "does not serve APIServiceBinding" in refused["msg"] and "klutch.bind.konnector" in refused["msg"]
        assert audit(cluster).count_writes(since=start, user=ADMIN_USER) == 0
        applied, output = run_task("klutch.bind.klutch_manifest", {"kubeconfig": str(cluster.admin_kubeconfig),
                                                                   "src": str(KLUTCH_CRDS), "wait": True})
        assert not applied.get("failed"), output
        start = now()
        refused, output = run_task("klutch.bind.klutch_bind", bind_args(cluster, control_plane))
        assert refused.get("failed"), output
        assert "has no namespace klutch-bind" in refused["msg"] and "klutch.bind.konnector" in refused["msg"]
        no_control_plane, output = run_task("klutch.bind.klutch_bind", {
            key: value for key, value in bind_args(cluster, control_plane).items() if key != "control_plane_kubeconfig"})
        assert no_control_plane.get("failed"), output
        assert "control_plane_kubeconfig, control_plane_context" in no_control_plane["msg"]
        assert audit(cluster).count_writes(since=start, user=ADMIN_USER) == 0
        assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0
    finally:
        lab.down(["app-bare"])


def test_klutch_bind_in_check_mode_plans_a_new_service_of_a_bound_consumer_without_writes(
        template, gadgets, other_app, control_plane, run_task, audit):
    bound, output = run_task("klutch.bind.klutch_bind", bind_args(other_app, control_plane))
    assert not bound.get("failed"), output
    both = bind_args(other_app, control_plane, services=[
        {"group": GROUP, "resource": RESOURCE, "accept_claims": ["secrets"]}, {"group": "drift.example", "resource": "gadgets"}])
    start = now()
    planned, output = run_task("klutch.bind.klutch_bind", both, check=True)
    assert planned["changed"] is True, output
    assert planned["bindings"]["gadgets.drift.example"] == {"conditions": []}, "its export is only a dry run"
    assert {c["type"]: c["status"] for c in planned["bindings"][NAME]["conditions"]}["Ready"] == "True"
    assert list(planned["synced"]) == [NAME], "check mode syncs the bindings there are"
    assert audit(other_app).count_writes(since=start, user=ADMIN_USER) == 0
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0


@pytest.fixture
def fresh_app(lab, export_for):
    """A new app cluster with the Klutch CRDs, klutch-bind and its export: each test's writes are its own."""
    lab.up(list(lab.state["clusters"]) + ["app-partial"])
    cluster = lab.cluster("app-partial")
    cluster.exported = export_for(cluster)
    yield cluster
    lab.down(["app-partial"])


def test_a_caller_who_may_not_grant_a_claimed_kind_leaves_no_clusterrole_written(fresh_app, run_task, audit):
    admin = ClusterClient.from_params({"kubeconfig": str(fresh_app.admin_kubeconfig)}, environ={})
    # The binder may manage RBAC, CRDs, Klutch objects and the bound kind, but holds no right on Secrets or
    # ConfigMaps, the claimed kinds, so it may not grant them (RBAC refuses the escalation).
    admin.apply(Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", namespaced=False), {
        "metadata": {"name": "limited-binder"}, "rules": [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],  # not escalate
             "verbs": ["get", "list", "create", "update", "patch", "delete"]},
            {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["*"]},
            {"apiGroups": ["klutch.anynines.com"], "resources": ["*"], "verbs": ["*"]},
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "create", "patch"]},
            {"apiGroups": [GROUP], "resources": ["*"], "verbs": ["*"]}]})
    admin.apply(Resource("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False), {
        "metadata": {"name": "limited-binder"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "limited-binder"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "limited-binder"}]})
    start = now()
    refused, output = run_task("klutch.bind.klutch_binding", {
        "kubeconfig": str(fresh_app.mint_identity("limited-binder")), "name": NAME,
        "provider_kubeconfig": fresh_app.exported["kubeconfig"], "accept_claims": ["secrets", "configmaps"]})
    assert refused.get("failed") and "403" in refused["msg"], output
    assert [(event["verb"], event["requestURI"]) for event in
            audit(fresh_app).writes(since=start, user="limited-binder")] == [], refused["msg"]
    assert admin.get(API_SERVICE_BINDINGS, NAME, "klutch-bind") is None


def test_an_export_schema_the_app_cluster_refuses_leaves_nothing_written(fresh_app, klutch_apis, run_task, audit):
    consumer = ClusterClient.from_params({"kubeconfig": yaml.safe_load(fresh_app.exported["kubeconfig"])}, environ={})
    namespace = fresh_app.exported["consumer_namespace"]
    export = consumer.get(API_SERVICE_EXPORTS, NAME, namespace)
    # No version is the storage version: the CRD it describes is invalid on any cluster.
    versions = [dict(version, storage=False) for version in export["spec"]["versions"]]
    klutch_apis.write("PATCH", API_SERVICE_EXPORTS, {"metadata": {"name": NAME, "namespace": namespace},
                                                     "spec": {"versions": versions}})
    start = now()
    refused, output = run_task("klutch.bind.klutch_binding", {
        "kubeconfig": str(fresh_app.admin_kubeconfig), "name": NAME, "provider_kubeconfig": fresh_app.exported["kubeconfig"],
        "accept_claims": ["secrets"]})
    assert refused.get("failed") and "CustomResourceDefinition " + NAME in refused["msg"], output
    assert "storage version" in refused["msg"]
    assert audit(fresh_app).count_writes(since=start, user=ADMIN_USER) == 0


def test_klutch_bind_absent_unbinds_in_one_task_and_keeps_the_control_plane_unless_asked(
        template, other_app, control_plane, klutch_apis, run_task, audit, client_for):
    app = client_for(other_app.admin_kubeconfig)
    bound, output = run_task("klutch.bind.klutch_bind", bind_args(other_app, control_plane))
    assert not bound.get("failed"), output
    namespace = bound["consumer_namespace"]
    unbind = dict(bind_args(other_app, control_plane), state="absent")

    start = now()
    planned, output = run_task("klutch.bind.klutch_bind", unbind, check=True)
    assert planned["changed"] is True and planned["unbound"] == [NAME], output
    unbound, output = run_task("klutch.bind.klutch_bind", unbind)
    assert unbound["changed"] is True and unbound["unbound"] == [NAME], output
    assert app.get(API_SERVICE_BINDINGS, NAME, "klutch-bind") is None
    assert app.get(CUSTOM_RESOURCE_DEFINITIONS, NAME) is not None, "the CRD and local instances stay unless asked"
    assert klutch_apis.get(API_SERVICE_EXPORTS, NAME, namespace) is not None, "the control plane keeps its data"
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0

    start = now()
    again, output = run_task("klutch.bind.klutch_bind", unbind)
    assert again["changed"] is False, output
    assert audit(other_app).count_writes(since=start, user=ADMIN_USER) == 0

    withdrawn, output = run_task("klutch.bind.klutch_bind", dict(unbind, control_plane_cleanup="exports",
                                                                 delete_crds=True))
    assert withdrawn["exports"] == [{"name": NAME, "action": "deleted"}], output
    assert withdrawn["consumer_namespace"] == namespace
    assert klutch_apis.get(API_SERVICE_EXPORTS, NAME, namespace) is None
    assert klutch_apis.get(NAMESPACES, namespace) is not None, "the consumer's namespace goes only with everything"
    crd = app.get(CUSTOM_RESOURCE_DEFINITIONS, NAME)
    assert crd is None or crd["metadata"].get("deletionTimestamp"), "asked: the CRD goes"
