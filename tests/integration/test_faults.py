"""Faults under a running module or agent: the API server restarts mid-run, an object changes between a
read and a write, the server asks to slow down (429, 503 with Retry-After), a continue token or a watch's
version expires (410). The wire faults come from a proxy in front of the real API server. A run retries
within its budget (60 s from the first failure) and a rerun writes nothing."""

import json
import threading
import time

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.agent.runtime import Informer, Watches
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import CONFIG_MAPS
from fault_proxy import FaultProxy
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER

OBJECTS = 60


def config_maps(namespace, value):
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"fault-{index:03d}", "namespace": namespace},
             "data": {"value": value}} for index in range(OBJECTS)]


def test_a_playbook_rides_out_an_api_server_restart_and_a_rerun_writes_nothing(lab, app, admin, namespace,
                                                                               run_playbook, tmp_path, audit, figure):
    marker = tmp_path / "first-task-done"
    kubeconfig = str(app.admin_kubeconfig)
    playbook = f"""\
        - name: Apply across a restart
          hosts: localhost
          connection: local
          gather_facts: false
          tasks:
            - name: Apply before the restart
              klutch.bind.klutch_manifest:
                kubeconfig: {kubeconfig}
                definition: {json.dumps(config_maps(namespace, "first"))}
            - name: Tell the test to restart the API server
              ansible.builtin.file:
                path: {marker}
                state: touch
                mode: "0600"
              changed_when: false
            - name: Give the restart a head start
              ansible.builtin.pause:
                seconds: 1
            - name: Apply while the API server is away
              klutch.bind.klutch_manifest:
                kubeconfig: {kubeconfig}
                definition: {json.dumps(config_maps(namespace, "second"))}
        """
    restart = {}

    def restart_when_told():
        deadline = time.monotonic() + 120
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        restart["down"] = time.monotonic()
        lab.restart(app.name, "kube-apiserver", downtime=4)
        restart["up"] = time.monotonic()

    restarter = threading.Thread(target=restart_when_told)
    restarter.start()
    completed = run_playbook(playbook)
    finished = time.monotonic()
    restarter.join()
    assert completed.returncode == 0, completed.stdout[-3000:]
    assert restart["down"] < finished < restart["up"] + 60, "the API server was not away during the run"
    figure(f"faults: the second apply waited out {restart['up'] - restart['down']:.1f} s of API server restart")
    values = {item["metadata"]["name"]: item["data"]["value"] for item in admin.list(CONFIG_MAPS, namespace)[0]
              if item["metadata"]["name"].startswith("fault-")}
    assert values == {f"fault-{index:03d}": "second" for index in range(OBJECTS)}
    since = now()
    rerun = run_playbook(playbook.replace('"first"', '"second"'))
    assert rerun.returncode == 0 and "changed=0" in rerun.stdout, rerun.stdout[-3000:]
    assert audit(app).count_writes(since=since, user=ADMIN_USER) == 0


def test_a_stale_write_fails_at_once_instead_of_being_sent_again(admin, namespace):
    admin.apply(CONFIG_MAPS, {"metadata": {"name": "stale", "namespace": namespace}, "data": {"v": "1"}})
    read = admin.get(CONFIG_MAPS, "stale", namespace)
    admin.apply(CONFIG_MAPS, {"metadata": {"name": "stale", "namespace": namespace}, "data": {"v": "2"}})
    started = time.monotonic()
    with pytest.raises(ClusterError) as raised:
        admin.write("PUT", CONFIG_MAPS, dict(read, data={"v": "3"}))
    assert raised.value.status == 409 and time.monotonic() - started < 1.0


@pytest.fixture
def proxy(app):
    with FaultProxy(app) as started:
        yield started


def through(proxy):
    """A client as a module builds it, reaching the app cluster through the proxy."""
    return ClusterClient.from_params({"kubeconfig": proxy.kubeconfig()}, environ={})


def writes_of(name):
    return lambda request: request.method in ("POST", "PATCH", "PUT") and request.path.endswith("/" + name)


def test_a_module_waits_as_long_as_429_and_503_ask_and_then_applies(proxy, run_task, admin, namespace, figure):
    objects = config_maps(namespace, "slow")[:3]
    target = objects[1]["metadata"]["name"]
    proxy.inject(writes_of(target), 429, "TooManyRequests", "Too many requests, please try again later.",
                 headers={"Retry-After": "2"}, times=2)
    proxy.inject(writes_of(target), 503, "ServiceUnavailable", "The server is shutting down.",
                 headers={"Retry-After": "1"})
    result, output = run_task("klutch.bind.klutch_manifest", {"kubeconfig": proxy.kubeconfig(), "definition": objects})
    assert not result.get("failed") and result["changed"], output
    # The first four attempts at the object's first write (a dry run first, when the module checks the set).
    attempts = proxy.requests(writes_of(target))[:4]
    assert [code for _request, code, _when in attempts] == [429, 429, 503, None]
    waits = [later[2] - earlier[2] for earlier, later in zip(attempts, attempts[1:])]
    assert [round(wait) for wait in waits] >= [2, 2, 1] and all(wait < 8.5 for wait in waits), waits
    figure(f"faults: 429, 429, 503 answered after {', '.join(f'{wait:.1f}' for wait in waits)} s")
    assert {item["metadata"]["name"] for item in admin.list(CONFIG_MAPS, namespace)[0]} >= {
        obj["metadata"]["name"] for obj in objects}
    rerun, output = run_task("klutch.bind.klutch_manifest", {"kubeconfig": proxy.kubeconfig(), "definition": objects})
    assert rerun["changed"] is False, output


def test_a_list_whose_continue_token_expired_starts_over_and_misses_nothing(proxy, admin, namespace):
    names = {f"page-{index:03d}" for index in range(520)}  # more than one page of 500
    for name in sorted(names):
        admin.write("POST", CONFIG_MAPS, {"metadata": {"name": name, "namespace": namespace}})
    proxy.inject(lambda request: "continue" in request.query, 410, "Expired",
                 "The provided continue parameter is too old to display a consistent list result.")
    items, _version = through(proxy).list(CONFIG_MAPS, namespace)
    listed = [item["metadata"]["name"] for item in items if item["metadata"]["name"].startswith("page-")]
    assert sorted(listed) == sorted(names), "nothing missing, nothing twice"
    pages = [(request.query.get("continue") is not None, code) for request, code, _when in proxy.requests()]
    assert pages == [(False, None), (True, 410), (False, None), (True, None)]


@pytest.mark.parametrize("as_watch_event", [True, False], ids=["error-event", "status-410"])
def test_a_watch_whose_version_expired_lists_again_and_keeps_reporting_changes(
        proxy, admin, namespace, as_watch_event):
    expired = proxy.inject(lambda request: request.is_watch, 410, "Expired", "too old resource version: 1 (2)",
                           as_watch_event=as_watch_event)
    changed, stopping = threading.Event(), threading.Event()
    watches = Watches(changed, stopping)
    watches.keep({"config-maps": Informer(through(proxy), CONFIG_MAPS, namespace)})
    try:
        for name in ("after-expiry", "and-after-that"):
            deadline = time.monotonic() + 20
            while expired.times or len(proxy.requests(lambda request: request.is_watch)) < 2:
                assert time.monotonic() < deadline, "the watch never came back after its version expired"
                time.sleep(0.05)
            changed.clear()
            admin.write("POST", CONFIG_MAPS, {"metadata": {"name": name, "namespace": namespace}})
            assert changed.wait(10), f"the create of {name} was not seen"
    finally:
        watches.keep({})
    kinds = [("watch" if request.is_watch else "list", code) for request, code, _when in proxy.requests()]
    assert kinds[:4] == [("list", None), ("watch", 410), ("list", None), ("watch", None)], kinds


def test_a_module_wait_whose_watch_expired_still_sees_the_object_arrive(proxy, admin, namespace):
    proxy.inject(lambda request: request.is_watch, 410, "Expired", "too old resource version: 1 (2)",
                 as_watch_event=True)
    threading.Timer(1.0, admin.write, ("POST", CONFIG_MAPS, {"metadata": {"name": "awaited", "namespace": namespace},
                                                             "data": {"ready": "yes"}})).start()
    found = through(proxy).wait(CONFIG_MAPS, "awaited", namespace, lambda obj: bool(obj and obj.get("data")),
                                timeout=20, description="there")
    assert found["data"] == {"ready": "yes"}
    assert [code for request, code, _when in proxy.requests(lambda request: request.is_watch)][:1] == [410]
