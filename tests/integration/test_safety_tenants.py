"""Tenant isolation on the lab's control plane, with the real tokens of two consumers.

Each consumer is exported as `kubectl bind` would leave it (klutch_export_request): a namespaced
kind (MangoDB), a cluster-scoped kind (Foo) in Cluster scope, and a kind whose spec keeps unknown
fields, as a Crossplane claim's does (Gadget). Each case tries one way in with one consumer's
token against the other's objects, or against what belongs to the platform, and then checks what
the cluster holds.
"""

import base64

import pytest
import yaml

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    ROLE_BINDINGS,
    Resource,
    SECRETS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_NAMESPACES
from sync_world import FOO_API, FOOS, MANGODB_API, MANGODBS, eventually, konnector_play, load_crd

GADGETS = Resource("safety.example.com/v1", "Gadget", "gadgets")
GADGET_CRD = {
    "metadata": {"name": "gadgets.safety.example.com"},
    "spec": {"group": "safety.example.com", "scope": "Namespaced",
             "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget", "listKind": "GadgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                               "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}}}]},
}
GADGET_TEMPLATE = {"name": "gadgets", "group": "safety.example.com", "resource": "gadgets"}


class Tenant:
    """A consumer as the control plane knows it: its namespace, its token's client and one mapped namespace."""

    def __init__(self, name, result, admin):
        self.name = name
        self.namespace = result["consumer_namespace"]
        self.client = ClusterClient.from_params({"kubeconfig": yaml.safe_load(result["kubeconfig"])}, environ={})
        self.mapped = f"{self.namespace}-shop"
        self.admin = admin


@pytest.fixture(scope="module")
def tenants(control_plane, klutch_apis, control_plane_play, run_playbook, run_task):
    cp = klutch_apis
    load_crd(cp, MANGODB_API)
    load_crd(cp, FOO_API)
    cp.apply(CUSTOM_RESOURCE_DEFINITIONS, GADGET_CRD)
    completed = run_playbook(control_plane_play(
        control_plane_templates=[MANGODB_API.template, FOO_API.template, GADGET_TEMPLATE]))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    found = {}
    for name, cluster_id in (("tenant-a", "aaaaaa"), ("tenant-b", "bbbbbb")):
        base = {"kubeconfig": str(control_plane.admin_kubeconfig), "consumer": name, "cluster_id": cluster_id}
        for resources, scope in (([MANGODB_API.template, GADGET_TEMPLATE], "Namespaced"), ([FOO_API.template], "Cluster")):
            result, output = run_task("klutch.bind.klutch_export_request", dict(
                base, consumer_scope=scope,
                resources=[{"group": item["group"], "resource": item["resource"]} for item in resources]))
            assert not result.get("failed"), output
        tenant = Tenant(name, result, cp)
        # As the konnector asks for a namespace mapping, then the backend's work maps it.
        tenant.client.write("POST", API_SERVICE_NAMESPACES, {
            "apiVersion": API_SERVICE_NAMESPACES.api_version, "kind": API_SERVICE_NAMESPACES.kind,
            "metadata": {"name": "shop", "namespace": tenant.namespace}})
        result, output = run_task("klutch.bind.klutch_export_request", dict(
            base, consumer_scope="Cluster", resources=[{"group": "bar.io", "resource": "foos"}]))
        assert not result.get("failed"), output
        cp.apply(MANGODBS, {"metadata": {"name": "db", "namespace": tenant.mapped}, "spec": {"tier": "Shared"}})
        cp.apply(SECRETS, {"metadata": {"name": "db-creds", "namespace": tenant.mapped}, "stringData": {"pw": name}})
        cp.apply(FOOS, {"metadata": {"name": f"{tenant.namespace}-foo"}, "spec": {"deploymentName": name}})
        found[name] = tenant
    yield found["tenant-a"], found["tenant-b"]
    # Other tests list every object of these kinds on the shared control plane: leave none behind.
    for name, tenant in found.items():
        for obj in cp.list(FOOS)[0]:
            if obj["metadata"]["name"].startswith(tenant.namespace + "-"):
                cp.delete(FOOS, obj["metadata"]["name"])
        removed, output = run_task("klutch.bind.klutch_export_request", {
            "kubeconfig": str(control_plane.admin_kubeconfig), "consumer": name, "state": "absent",
            "cluster_id": "aaaaaa" if name == "tenant-a" else "bbbbbb", "delete_namespace": True})
        assert not removed.get("failed"), output


class Status(int):
    """An HTTP status that shows the server's message when an assertion on it fails."""

    def __new__(cls, code, message=""):
        status = super().__new__(cls, code)
        status.message = message
        return status

    def __repr__(self):
        return "%s (%s)" % (int(self), self.message)


def status(call):
    """The HTTP status a request got: 200 when it went through, else the error's."""
    try:
        call()
        return Status(200)
    except ClusterError as error:
        return Status(error.status or 0, str(error))


def mango(name, namespace, **spec):
    return {"apiVersion": MANGODBS.api_version, "kind": MANGODBS.kind, "metadata": {"name": name, "namespace": namespace},
            "spec": dict({"tier": "Shared"}, **spec)}


def test_a_tenant_reaches_its_own_objects(tenants):
    a, _b = tenants
    assert status(lambda: a.client.list(MANGODBS, a.mapped)) == 200
    assert status(lambda: a.client.get(SECRETS, "db-creds", a.mapped)) == 200
    assert status(lambda: a.client.write("POST", MANGODBS, mango("own", a.mapped))) == 200
    own = {"apiVersion": FOOS.api_version, "kind": FOOS.kind, "metadata": {"name": f"{a.namespace}-own"}}
    assert status(lambda: a.client.write("POST", FOOS, own)) == 200


@pytest.mark.parametrize("attempt", [
    "list instances", "get instance", "create instance", "delete instance", "get secret", "list secrets",
    "get token secret", "list instances cluster-wide", "list secrets cluster-wide", "create mapping",
])
def test_a_tenant_cannot_reach_another_tenants_namespaced_objects(tenants, attempt):
    a, b = tenants
    calls = {
        "list instances": lambda: a.client.list(MANGODBS, b.mapped),
        "get instance": lambda: a.client.request("GET", MANGODBS.path(b.mapped, "db"), "get", "MangoDB"),
        "create instance": lambda: a.client.write("POST", MANGODBS, mango("planted", b.mapped)),
        "delete instance": lambda: a.client.request("DELETE", MANGODBS.path(b.mapped, "db"), "delete", "MangoDB"),
        "get secret": lambda: a.client.request("GET", SECRETS.path(b.mapped, "db-creds"), "get", "Secret"),
        "list secrets": lambda: a.client.list(SECRETS, b.mapped),
        "get token secret": lambda: a.client.request("GET", SECRETS.path(b.namespace, "klutch-binder"), "get", "Secret"),
        "list instances cluster-wide": lambda: a.client.list(MANGODBS),
        "list secrets cluster-wide": lambda: a.client.list(SECRETS),
        "create mapping": lambda: a.client.write("POST", API_SERVICE_NAMESPACES, {
            "apiVersion": API_SERVICE_NAMESPACES.api_version, "kind": API_SERVICE_NAMESPACES.kind,
            "metadata": {"name": "planted", "namespace": b.namespace}}),
    }
    assert status(calls[attempt]) == 403
    admin = a.admin
    assert [item["metadata"]["name"] for item in admin.list(MANGODBS, b.mapped)[0]] == ["db"]
    assert admin.get(SECRETS, "db-creds", b.mapped) is not None
    assert admin.get(API_SERVICE_NAMESPACES, "planted", b.namespace) is None


@pytest.mark.parametrize("attempt", ["create", "update", "delete", "create unprefixed"])
def test_a_tenant_cannot_write_another_tenants_cluster_scoped_objects(tenants, attempt):
    a, b = tenants
    theirs = f"{b.namespace}-foo"
    hijacked = {"apiVersion": FOOS.api_version, "kind": FOOS.kind, "spec": {"deploymentName": "hijacked"}}
    calls = {
        "create": lambda: a.client.write("POST", FOOS, dict(hijacked, metadata={"name": f"{b.namespace}-planted"})),
        "update": lambda: a.client.write("APPLY", FOOS, dict(hijacked, metadata={"name": theirs})),
        "delete": lambda: a.client.request("DELETE", FOOS.path(None, theirs), "delete", "Foo"),
        "create unprefixed": lambda: a.client.write("POST", FOOS, dict(hijacked, metadata={"name": "global-planted"})),
    }
    assert status(calls[attempt]) == 403
    admin = a.admin
    assert admin.get(FOOS, theirs)["spec"] == {"deploymentName": "tenant-b"}
    assert admin.get(FOOS, f"{b.namespace}-planted") is None and admin.get(FOOS, "global-planted") is None


@pytest.mark.parametrize("field", ["compositionRef", "compositionSelector", "resourceRef", "compositionUpdatePolicy"])
def test_a_tenant_cannot_set_fields_that_belong_to_the_platform(tenants, field):
    a, _b = tenants
    name = f"g-{field.lower()}"
    gadget = {"apiVersion": GADGETS.api_version, "kind": GADGETS.kind,
              "metadata": {"name": name, "namespace": a.mapped}, "spec": {"size": "s", field: {"name": "premium"}}}
    assert status(lambda: a.client.write("POST", GADGETS, gadget)) == 403
    assert a.admin.get(GADGETS, name, a.mapped) is None
    # Once the platform has set it, the tenant may change its own fields but not that one.
    a.admin.apply(GADGETS, dict(gadget, spec={"size": "s", field: {"name": "standard"}}), field_manager="crossplane")
    assert status(lambda: a.client.write("APPLY", GADGETS, dict(gadget, spec={"size": "m"}))) == 200
    changed = {"metadata": {"name": name, "namespace": a.mapped}, "spec": {field: {"name": "premium"}}}
    assert status(lambda: a.client.write("PATCH", GADGETS, changed)) == 403
    removed = dict(a.admin.get(GADGETS, name, a.mapped), spec={"size": "l"})
    assert status(lambda: a.client.write("PUT", GADGETS, removed)) == 403
    assert a.admin.get(GADGETS, name, a.mapped)["spec"] == {"size": "m", field: {"name": "standard"}}


@pytest.mark.parametrize("key", ["crossplane.io/external-name", "crossplane.io/paused",
                                 "composition.crossplane.io/anything"])
def test_a_tenant_cannot_set_crossplane_annotations(tenants, key):
    a, _b = tenants
    name = "g-" + key.replace("/", "-").replace(".", "-")[:40]
    gadget = {"apiVersion": GADGETS.api_version, "kind": GADGETS.kind,
              "metadata": {"name": name, "namespace": a.mapped, "annotations": {key: "prod-db"}}, "spec": {"size": "s"}}
    assert status(lambda: a.client.write("POST", GADGETS, gadget)) == 403
    assert a.admin.get(GADGETS, name, a.mapped) is None


@pytest.fixture(scope="module")
def konnector_token(lab, run_playbook, tmp_path_factory):
    """The konnector's ServiceAccount token on an app cluster that the konnector role set up."""
    lab.up(list(lab.state["clusters"]) + ["app-guarded"])
    cluster = lab.cluster("app-guarded")
    completed = run_playbook(konnector_play(cluster, "none", tmp_path_factory.mktemp("agents")))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    admin = ClusterClient.from_params({"kubeconfig": str(cluster.admin_kubeconfig)}, environ={})
    secret = admin.wait(SECRETS, "klutch-bind-konnector-token", "klutch-bind",
                        lambda obj: bool(((obj or {}).get("data") or {}).get("token")), 30, "issued a token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    konnector = ClusterClient.from_params({"host": cluster.server, "api_key": token, "ca_cert": str(cluster.ca_cert)},
                                          environ={})
    admin.apply(NAMESPACES, {"metadata": {"name": "shop"}})
    # The API server enforces a new admission policy once its informer has it, a moment after the role
    # created it; a busy machine makes that moment longer. Probe by dry run until it holds.
    probe = ClusterClient.from_params({"host": cluster.server, "api_key": token, "ca_cert": str(cluster.ca_cert)},
                                      dry_run=True, environ={})
    eventually("the admission policy klutch-bind-konnector-grants enforced",
               lambda: status(lambda: probe.write("POST", ROLE_BINDINGS, claims_binding("kube-system"))) == 403)
    yield admin, konnector
    lab.down(["app-guarded"])


def claims_binding(namespace, role="klutch-bind-konnector-claims", subject=("klutch-bind", "klutch-bind-konnector"),
                   name="klutch-bind-konnector-claims"):
    return {"apiVersion": ROLE_BINDINGS.api_version, "kind": ROLE_BINDINGS.kind,
            "metadata": {"name": name, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "namespace": subject[0], "name": subject[1]}]}


@pytest.mark.parametrize("binding", [
    claims_binding("kube-system"),
    claims_binding("klutch-bind"),
    claims_binding("shop", subject=("shop", "default")),
    claims_binding("shop", name="something-else"),
    claims_binding("shop", role="klutch-bind-konnector-namespaces"),
], ids=["kube-system", "klutch-bind", "other subject", "other name", "other role"])
def test_a_stolen_konnector_token_cannot_grant_rights_beyond_its_claims_in_bound_namespaces(konnector_token, binding):
    admin, konnector = konnector_token
    assert status(lambda: konnector.write("POST", ROLE_BINDINGS, binding)) == 403
    assert admin.get(ROLE_BINDINGS, binding["metadata"]["name"], binding["metadata"]["namespace"]) is None


def test_the_konnector_still_grants_itself_its_claims_in_a_bound_namespace(konnector_token):
    admin, konnector = konnector_token
    assert status(lambda: konnector.write("POST", ROLE_BINDINGS, claims_binding("shop"))) == 200
    assert admin.get(ROLE_BINDINGS, "klutch-bind-konnector-claims", "shop") is not None


def test_a_tenant_cannot_get_an_existing_namespace_of_its_prefix_mapped_to_it(tenants, run_task, control_plane):
    a, _b = tenants
    private = f"{a.namespace}-private"
    a.admin.apply(NAMESPACES, {"metadata": {"name": private}})
    a.admin.apply(SECRETS, {"metadata": {"name": "platform-only", "namespace": private}, "stringData": {"k": "v"}})
    a.client.write("POST", API_SERVICE_NAMESPACES, {
        "apiVersion": API_SERVICE_NAMESPACES.api_version, "kind": API_SERVICE_NAMESPACES.kind,
        "metadata": {"name": "private", "namespace": a.namespace}})
    result, output = run_task("klutch.bind.klutch_export_request", {
        "kubeconfig": str(control_plane.admin_kubeconfig), "consumer": a.name, "cluster_id": "aaaaaa",
        "consumer_scope": "Cluster", "resources": [{"group": "bar.io", "resource": "foos"}]})
    assert result.get("failed") and f"namespace {private} exists and does not belong" in result["msg"], output
    assert status(lambda: a.client.list(SECRETS, private)) == 403
    assert (a.admin.get(API_SERVICE_NAMESPACES, "private", a.namespace).get("status") or {}).get("namespace") is None
    assert a.admin.get(ROLE_BINDINGS, "klutch-binder", private) is None
    assert status(lambda: a.client.list(MANGODBS, a.mapped)) == 200  # its other mapping still works
