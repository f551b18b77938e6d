"""The cluster-access layer against a real API server: check mode, idempotence, waiting, errors."""

import time

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError, WaitTimeout
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import REDACTED, for_output
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import CONFIG_MAPS, Resource, SECRETS
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER


def test_check_mode_is_a_server_side_dry_run_that_stores_nothing(app, audit, client_for, namespace):
    checking = client_for(app.admin_kubeconfig, dry_run=True)
    start = now()
    change = checking.apply(CONFIG_MAPS, {"metadata": {"name": "planned", "namespace": namespace}, "data": {"a": "1"}})
    assert change.changed and change.before is None
    assert change.after["metadata"]["creationTimestamp"], "the API server answered for the object"
    assert checking.get(CONFIG_MAPS, "planned", namespace) is None
    assert audit(app).count_writes(since=start, user=ADMIN_USER) == 0


def test_second_apply_is_unchanged_and_makes_no_write(admin, app, audit, namespace):
    body = {"metadata": {"name": "stable", "namespace": namespace, "labels": {"x": "y"}}, "data": {"a": "1"}}
    first = admin.apply(CONFIG_MAPS, body)
    start = now()
    second = admin.apply(CONFIG_MAPS, body)
    assert first.changed and not second.changed
    assert second.after["metadata"]["resourceVersion"] == first.after["metadata"]["resourceVersion"]
    assert audit(app).count_writes(since=start, user=ADMIN_USER) == 0


def test_check_mode_delete_keeps_the_object(admin, app, client_for, namespace):
    admin.apply(CONFIG_MAPS, {"metadata": {"name": "kept", "namespace": namespace}})
    change = client_for(app.admin_kubeconfig, dry_run=True).delete(CONFIG_MAPS, "kept", namespace)
    assert change.changed
    assert admin.get(CONFIG_MAPS, "kept", namespace) is not None
    assert not admin.delete(CONFIG_MAPS, "never-there", namespace).changed


def test_list_follows_pages(admin, namespace):
    for index in range(3):
        admin.apply(CONFIG_MAPS, {"metadata": {"name": f"page-{index}", "namespace": namespace,
                                               "labels": {"set": "pages"}}})
    items, version = admin.list(CONFIG_MAPS, namespace, label_selector="set=pages")
    assert sorted(item["metadata"]["name"] for item in items) == ["page-0", "page-1", "page-2"]
    assert version


def test_wait_returns_as_soon_as_the_watch_sees_the_change(admin, namespace):
    import threading

    def later():
        time.sleep(1)
        admin.apply(CONFIG_MAPS, {"metadata": {"name": "awaited", "namespace": namespace}, "data": {"ready": "yes"}})

    writer = threading.Thread(target=later)
    writer.start()
    started = time.monotonic()
    seen = admin.wait(CONFIG_MAPS, "awaited", namespace, lambda obj: (obj or {}).get("data", {}).get("ready") == "yes",
                      30, "ready")
    writer.join()
    assert seen["data"]["ready"] == "yes"
    assert time.monotonic() - started < 10, "woken by the watch, not by the 30 s timeout"


def test_wait_timeout_names_the_object_and_what_was_awaited(admin, namespace):
    with pytest.raises(WaitTimeout) as error:
        admin.wait(CONFIG_MAPS, "never", namespace, lambda obj: obj is not None, 2, "created")
    assert f"waiting for ConfigMap {namespace}/never on cluster app" in str(error.value)
    assert "to be created" in str(error.value)


def test_unserved_resource_type_says_to_install_the_crd(admin, namespace):
    missing = Resource("nothing.example.com/v1", "Gadget", "gadgets")
    with pytest.raises(ClusterError) as error:
        admin.get(missing, "x", namespace)
    assert error.value.status == 404
    assert "does not serve this resource type" in str(error.value)


def test_conflicting_field_manager_is_reported_with_the_fix(admin, app, namespace):
    admin.apply(CONFIG_MAPS, {"metadata": {"name": "owned", "namespace": namespace}, "data": {"a": "1"}})
    admin.request("PATCH", CONFIG_MAPS.path(namespace, "owned"), "apply", "ConfigMap owned",
                  query={"fieldManager": "someone-else", "force": "true"}, content_type="application/apply-patch+yaml",
                  body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owned"}, "data": {"a": "2"}})
    with pytest.raises(ClusterError) as error:
        admin.apply(CONFIG_MAPS, {"metadata": {"name": "owned", "namespace": namespace}, "data": {"a": "3"}})
    assert error.value.status == 409
    assert 'conflict with "someone-else"' in str(error.value) and "force the apply" in str(error.value)
    forced = admin.apply(CONFIG_MAPS, {"metadata": {"name": "owned", "namespace": namespace}, "data": {"a": "3"}},
                         force=True)
    assert forced.after["data"]["a"] == "3"


def test_secrets_are_redacted_for_output(admin, namespace):
    change = admin.apply(SECRETS, {"metadata": {"name": "creds", "namespace": namespace},
                                   "stringData": {"password": "hunter2"}})
    shown = for_output(change.after)
    assert shown["data"] == {"password": REDACTED}
    assert "hunter2" not in str(shown) and "aHVudGVyMg" not in str(shown)
