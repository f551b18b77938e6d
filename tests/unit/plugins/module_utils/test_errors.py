"""Every API failure becomes one sentence naming the action, the object, the cluster and a fix."""

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import (
    BadRequest,
    ClusterError,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    NotFound,
    Unauthorized,
    Unavailable,
    api_error_message,
    connection_error_message,
    object_missing,
    status_error,
)

TARGET = "Secret klutch-bind/kubeconfig"
CLUSTER = "cluster app (https://127.0.0.1:6443)"


def message(status, body=None):
    return api_error_message(status, body or {}, "apply", TARGET, CLUSTER)


@pytest.mark.parametrize("status, fragment", [
    (401, "credentials were rejected (401 Unauthorized)"),
    (403, "permission denied (403 Forbidden)"),
    (409, "conflict (409)"),
    (422, "the object is invalid (422)"),
    (429, "throttling requests (429)"),
    (503, "the API server failed (503)"),
])
def test_status_messages_name_action_object_and_cluster(status, fragment):
    text = message(status)
    assert fragment in text
    assert text.startswith("Cannot apply %s on %s" % (TARGET, CLUSTER))
    assert "\n" not in text


def test_forbidden_quotes_the_server_and_says_how_to_fix():
    body = {"message": 'secrets "x" is forbidden: User "alice" cannot get resource "secrets"', "reason": "Forbidden"}
    text = message(403, body)
    assert 'User "alice" cannot get resource "secrets"' in text
    assert "Role or ClusterRole and a binding" in text


def test_not_found_object_versus_unserved_type():
    missing = {"reason": "NotFound", "details": {"name": "x", "kind": "secrets"}, "message": 'secrets "x" not found'}
    unserved = {"reason": "NotFound", "message": "the server could not find the requested resource"}
    assert object_missing(404, missing) and not object_missing(404, unserved)
    assert "does not exist (404)" in message(404, missing)
    assert "does not serve this resource type (404)" in message(404, unserved)
    assert "CustomResourceDefinition" in message(404, unserved)


def test_invalid_lists_the_causes_the_message_lacks():
    body = {"message": "Widget.example.com \"w\" is invalid", "details": {"causes": [
        {"field": "spec.size", "message": "Invalid value: \"string\": spec.size in body must be of type integer"}]}}
    text = message(422, body)
    assert "spec.size: Invalid value" in text


def test_apply_conflict_advises_force():
    body = {"message": "Apply failed with 1 conflict: conflict with \"kubectl\": .data.a", "reason": "Conflict"}
    assert "force the apply" in message(409, body)


@pytest.mark.parametrize("error, fragment", [
    ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer", "not trusted"),
    ("Failed to establish a new connection: [Errno 111] Connection refused", "connection was refused"),
    ("Failed to resolve 'nowhere.invalid' ([Errno -2] Name or service not known)", "does not resolve"),
    ("Read timed out. (read timeout=60)", "did not answer in time"),
    ("something odd", "unreachable"),
])
def test_connection_errors(error, fragment):
    text = connection_error_message(error, "get", TARGET, CLUSTER)
    assert fragment in text and CLUSTER in text


def test_a_name_mismatch_is_not_called_an_untrusted_ca():
    text = connection_error_message(
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: IP address mismatch, certificate is not valid "
        "for '10.0.0.1'", "get", TARGET, CLUSTER)
    assert "does not name this host" in text


@pytest.mark.parametrize("status, kind", [
    (400, BadRequest), (401, Unauthorized), (403, Forbidden), (404, NotFound), (409, Conflict), (410, Gone),
    (422, Invalid), (429, Unavailable), (500, Unavailable), (503, Unavailable),
    (302, ClusterError), (405, ClusterError), (None, ClusterError),
])
def test_each_status_a_caller_acts_on_has_its_class(status, kind):
    error = status_error("Cannot get it.", status, reason="Why", object_missing=status == 404)
    assert error.__class__ is kind and isinstance(error, ClusterError)
    assert str(error) == "Cannot get it." and error.status == status and error.reason == "Why"
    assert error.object_missing is (status == 404)
