"""The lab is real Kubernetes: validation, controllers, garbage collection, RBAC, isolation, audit."""

import base64
import time
import uuid

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import condition_holds
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CONFIG_MAPS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    ROLES,
    ROLE_BINDINGS,
    Resource,
    SECRETS,
    SERVICE_ACCOUNTS,
)
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER

WIDGETS = Resource("example.com/v1", "Widget", "widgets")
WIDGET_CRD = {
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
        "scope": "Namespaced",
        "versions": [{
            "name": "v1", "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                "type": "object", "required": ["size"],
                "properties": {"size": {"type": "integer", "minimum": 1}}}}}},
        }],
    },
}


def exists(obj):
    return obj is not None


def absent(obj):
    return obj is None


def test_crd_becomes_established_and_its_schema_rejects_invalid_objects(admin, namespace):
    admin.apply(CUSTOM_RESOURCE_DEFINITIONS, WIDGET_CRD)
    admin.wait(CUSTOM_RESOURCE_DEFINITIONS, "widgets.example.com", None, condition_holds("Established"), 30,
               "Established")
    created = admin.apply(WIDGETS, {"metadata": {"name": "ok", "namespace": namespace}, "spec": {"size": 2}})
    assert created.after["spec"]["size"] == 2

    with pytest.raises(ClusterError) as error:
        admin.apply(WIDGETS, {"metadata": {"name": "bad", "namespace": namespace}, "spec": {"size": 0}})
    assert error.value.status == 422
    message = str(error.value)
    assert "spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1" in message
    assert f"Widget {namespace}/bad" in message and "cluster app" in message
    assert admin.get(WIDGETS, "bad", namespace) is None

    # A value of the wrong type fails inside server-side apply (the server answers 500); it is
    # still the object that is invalid, so it is worded so and not retried.
    with pytest.raises(ClusterError) as error:
        admin.apply(WIDGETS, {"metadata": {"name": "bad", "namespace": namespace}, "spec": {"size": "big"}})
    assert "the object is invalid" in str(error.value) and ".spec.size: expected numeric" in str(error.value)


def test_new_namespace_gets_default_service_account_and_root_ca(admin, app, namespace):
    admin.wait(SERVICE_ACCOUNTS, "default", namespace, exists, 30, "created")
    root_ca = admin.wait(CONFIG_MAPS, "kube-root-ca.crt", namespace, exists, 30, "published")
    assert root_ca["data"]["ca.crt"] == app.ca_cert.read_text()


def test_service_account_token_secret_gets_a_token(admin, namespace):
    admin.apply(SERVICE_ACCOUNTS, {"metadata": {"name": "robot", "namespace": namespace}})
    admin.apply(SECRETS, {"metadata": {"name": "robot-token", "namespace": namespace,
                                       "annotations": {"kubernetes.io/service-account.name": "robot"}},
                          "type": "kubernetes.io/service-account-token"})
    secret = admin.wait(SECRETS, "robot-token", namespace,
                        lambda obj: bool(((obj or {}).get("data") or {}).get("token")), 30, "given a token")
    token = base64.b64decode(secret["data"]["token"]).decode()
    assert token.count(".") == 2, "a signed JWT"


def test_deleting_a_namespace_removes_it_and_its_objects(admin):
    name = "gone-" + uuid.uuid4().hex[:6]
    admin.apply(NAMESPACES, {"metadata": {"name": name}})
    admin.apply(CONFIG_MAPS, {"metadata": {"name": "data", "namespace": name}, "data": {"a": "1"}})
    admin.delete(NAMESPACES, name)
    admin.wait(NAMESPACES, name, None, absent, 60, "deleted")
    assert admin.get(CONFIG_MAPS, "data", name) is None


def test_owner_reference_child_is_garbage_collected(admin, namespace):
    parent = admin.apply(CONFIG_MAPS, {"metadata": {"name": "parent", "namespace": namespace}}).after
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "parent", "uid": parent["metadata"]["uid"]}
    admin.apply(CONFIG_MAPS, {"metadata": {"name": "child", "namespace": namespace, "ownerReferences": [owner]}})
    admin.delete(CONFIG_MAPS, "parent", namespace)
    admin.wait(CONFIG_MAPS, "child", namespace, absent, 60, "garbage collected")


def test_non_admin_identity_is_forbidden_until_a_role_binding_allows_it(admin, app, client_for, namespace):
    alice = client_for(app.mint_identity("alice", ["developers"]))
    with pytest.raises(ClusterError) as error:
        alice.list(SECRETS, namespace)
    assert error.value.status == 403
    assert f'User "alice" cannot list resource "secrets" in API group "" in the namespace "{namespace}"' in str(
        error.value)

    admin.apply(ROLES, {"metadata": {"name": "secret-reader", "namespace": namespace},
                        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}]})
    admin.apply(ROLE_BINDINGS, {
        "metadata": {"name": "alice-reads-secrets", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secret-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]})
    deadline = time.monotonic() + 10  # the authorizer's informer sees the binding within moments
    while True:
        try:
            items = alice.list(SECRETS, namespace)[0]
            break
        except ClusterError as denied:
            if denied.status != 403 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert isinstance(items, list)


def test_an_object_in_one_cluster_is_absent_in_the_other(admin, control_plane, client_for, namespace):
    admin.apply(CONFIG_MAPS, {"metadata": {"name": "only-here", "namespace": namespace}})
    other = client_for(control_plane.admin_kubeconfig)
    assert other.get(CONFIG_MAPS, "only-here", namespace) is None
    assert other.get(NAMESPACES, namespace) is None
    assert other.configuration.host != admin.configuration.host


def test_audit_log_counts_exactly_the_writes_a_test_made(admin, app, audit, client_for, namespace):
    log = audit(app)
    start = now()
    admin.apply(CONFIG_MAPS, {"metadata": {"name": "counted", "namespace": namespace}, "data": {"a": "1"}})
    admin.apply(CONFIG_MAPS, {"metadata": {"name": "counted", "namespace": namespace}, "data": {"a": "2"}})
    admin.apply(CONFIG_MAPS, {"metadata": {"name": "counted", "namespace": namespace}, "data": {"a": "2"}})
    client_for(app.admin_kubeconfig, dry_run=True).apply(
        CONFIG_MAPS, {"metadata": {"name": "counted", "namespace": namespace}, "data": {"a": "3"}})
    admin.get(CONFIG_MAPS, "counted", namespace)
    admin.delete(CONFIG_MAPS, "counted", namespace)

    writes = log.writes(since=start, user=ADMIN_USER)
    assert [(event["verb"], event["objectRef"]["name"]) for event in writes] == [
        ("patch", "counted"), ("patch", "counted"), ("delete", "counted")]
    # Every apply is planned by a dry run first; those are write requests that store nothing.
    assert log.count_writes(since=start, user=ADMIN_USER, include_dry_run=True) == 3 + 4
