"""Change detection from a dry run's answer, and redaction of what modules show."""

from ansible_collections.klutch.bind.plugins.module_utils.objects import REDACTED, for_output, has_changed, redact


def configmap(data, version="1", managed_time="2026-01-01T00:00:00Z"):
    return {"kind": "ConfigMap", "metadata": {
        "name": "c", "resourceVersion": version, "uid": "u", "creationTimestamp": "t",
        "managedFields": [{"manager": "klutch.bind", "time": managed_time, "fieldsV1": {"f:data": {}}}]},
        "data": data}


def test_same_content_is_unchanged_even_if_bookkeeping_differs():
    assert not has_changed(configmap({"a": "1"}), configmap({"a": "1"}, version="2", managed_time="later"))


def test_content_change_is_a_change():
    assert has_changed(configmap({"a": "1"}), configmap({"a": "2"}))


def test_taking_over_field_ownership_is_a_change():
    before = configmap({"a": "1"})
    after = configmap({"a": "1"})
    after["metadata"]["managedFields"].append({"manager": "other", "fieldsV1": {}})
    assert has_changed(before, after)


def test_the_servers_before_first_apply_owner_is_bookkeeping():
    before = {"kind": "Namespace", "metadata": {"name": "n", "resourceVersion": "1"}}
    planned = {"kind": "Namespace", "metadata": {"name": "n", "resourceVersion": "1", "managedFields": [
        {"manager": "before-first-apply", "operation": "Update", "fieldsV1": {"f:spec": {}}}]}}
    assert not has_changed(before, planned)


def test_creation_and_absence():
    assert has_changed(None, configmap({}))
    assert not has_changed(None, None)


def test_secret_values_and_last_applied_are_redacted():
    secret = {"kind": "Secret", "metadata": {"name": "s", "annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"token":"abc"}}'}},
        "data": {"token": "YWJj"}, "stringData": {"password": "pw"}}
    shown = redact(secret)
    assert shown["data"] == {"token": REDACTED}
    assert shown["stringData"] == {"password": REDACTED}
    assert "abc" not in str(shown)
    assert secret["data"]["token"] == "YWJj", "the original is left alone"


def test_other_kinds_are_shown_as_they_are_without_managed_fields():
    shown = for_output(configmap({"a": "1"}))
    assert shown["data"] == {"a": "1"}
    assert "managedFields" not in shown["metadata"]
