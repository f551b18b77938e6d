"""Faults under a running module: the API server restarts mid-run, an object changes between a read and a
write. The run retries within its budget (60 s from the first failure) and a rerun writes nothing."""

import json
import threading
import time

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.resources import CONFIG_MAPS
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER

OBJECTS = 60


def config_maps(namespace, value):
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"fault-{index:03d}", "namespace": namespace},
             "data": {"value": value}} for index in range(OBJECTS)]


def test_a_playbook_rides_out_an_api_server_restart_and_a_rerun_writes_nothing(lab, app, admin, namespace,
                                                                               run_playbook, tmp_path, audit):
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
    print(f"\nfaults: the second apply waited out {restart['up'] - restart['down']:.1f} s of API server restart")
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
