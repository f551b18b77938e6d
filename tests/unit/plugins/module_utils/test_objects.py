"""Change detection from a dry run's answer, and redaction of what modules show."""

from ansible_collections.klutch.bind.plugins.module_utils.k8s import objects
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import REDACTED, for_output, has_changed, redact


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


def with_conditions(obj, **conditions):
    return dict(obj, status=dict(obj.get("status", {}), conditions=[
        {"type": name, "status": status} for name, status in conditions.items()]))


def test_readiness_per_kind():
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition"}
    xrd = {"apiVersion": "apiextensions.crossplane.io/v1", "kind": "CompositeResourceDefinition",
           "spec": {"claimNames": {"kind": "Db"}}}
    package = {"apiVersion": "pkg.crossplane.io/v1", "kind": "Configuration", "spec": {"package": "r/p:v2"},
               "status": {"currentIdentifier": "r/p:v1"}}
    assert objects.readiness({"apiVersion": "v1", "kind": "ConfigMap"}) is None
    ready, _description = objects.readiness(crd)
    assert ready(with_conditions(crd, Established="True"))
    ready, description = objects.readiness(xrd)
    assert description == "Established and Offered"
    assert not ready(with_conditions(xrd, Established="True"))
    assert ready(with_conditions(xrd, Established="True", Offered="True"))
    ready, _description = objects.readiness(package)
    healthy = with_conditions(package, Installed="True", Healthy="True")
    assert not ready(healthy), "healthy on the previous package is not ready"
    healthy["status"]["currentIdentifier"] = "r/p:v2"
    assert ready(healthy)


def test_unmet_conditions_say_why():
    obj = {"status": {"conditions": [{"type": "Installed", "status": "True"},
                                     {"type": "Healthy", "status": "False", "reason": "Conflict", "message": "taken"}]}}
    assert objects.unmet_conditions(obj) == ["Healthy=False (Conflict: taken)"]
    assert objects.unmet_conditions(None) == []
