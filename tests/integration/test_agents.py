"""The agents on the lab, with no playbook between: leader handover, a provider CRD change reaching
the app cluster, a second app cluster bound later, and faults (the konnector killed mid-sync, the
control plane's kube-apiserver restarted, or away for a minute while instances come and go: after both
come back nothing is lost or duplicated)."""

import base64
import datetime
import json
import os
import signal
import socket
import threading
import time

import pytest
import yaml

from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    Resource,
    SECRETS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_BINDINGS, API_SERVICE_EXPORTS
from ansible_collections.klutch.bind.plugins.module_utils.plan.sync import SYNCER_FINALIZER
from sync_world import MANGODBS, World, end_world, eventually, instance, konnector_play, make_world

NAMESPACE_COUNT, PER_NAMESPACE = 3, 100
LEASES = Resource("coordination.k8s.io/v1", "Lease", "leases")


@pytest.fixture(scope="module")
def agents(lab, control_plane, klutch_apis, control_plane_play, run_playbook, run_task, tmp_path_factory):
    world = make_world("agents", "app-agents", lab, control_plane, control_plane_play, run_playbook, run_task,
                       tmp_path_factory.mktemp("agents"))
    yield world
    end_world(world, lab, run_task, agent_names=("konnector", "standby", "backend"))


def local_agent(world, name, state="present"):
    result, output = world.run_task("klutch.bind.klutch_agent", {
        "role": "konnector", "name": name, "run_dir": str(world.run_dir), "state": state,
        "kubeconfig": str(world.cluster.admin_kubeconfig), "service_account": "klutch-bind/klutch-bind-konnector",
        "resync": 2})
    assert not result.get("failed"), output
    return result


def health(result):
    from urllib.request import urlopen
    try:
        with urlopen(result["health_url"], timeout=2) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return {}


def test_a_standby_takes_over_at_once_when_the_leader_stops(agents, figure):
    leader = local_agent(agents, "konnector")
    assert leader["action"] == "unchanged", "the role started it with the same arguments"
    standby = local_agent(agents, "standby")
    assert standby["action"] == "started"  # a name of its own: a second process
    eventually("one leader", lambda: health(leader).get("leading"))
    assert health(standby)["leading"] is False and health(standby)["healthy"] is True

    def holder():
        return agents.app.get(LEASES, "klutch-bind", "klutch-bind")["spec"].get("holderIdentity")

    assert holder() == f"{socket.gethostname()}-konnector"

    stopped = time.monotonic()
    local_agent(agents, "konnector", state="absent")
    # Released on SIGTERM: the standby takes over on its next renewal instead of after a whole term.
    eventually("the standby leading", lambda: health(standby).get("leading"), timeout=10)
    figure(f"agents: standby leading {time.monotonic() - stopped:.1f} s after the leader stopped")
    agents.app.apply(MANGODBS, instance("handed-over"))
    eventually("the standby syncs", lambda: agents.cp.get(MANGODBS, "handed-over", agents.mapped()))
    agents.app.delete(MANGODBS, "handed-over", "default")
    eventually("deleted on both sides", lambda: agents.app.get(MANGODBS, "handed-over", "default") is None)
    local_agent(agents, "konnector")
    local_agent(agents, "standby", state="absent")
    eventually("the konnector leading again", lambda: holder() == f"{socket.gethostname()}-konnector", timeout=15)


def test_a_provider_crd_change_reaches_the_app_crd(agents):
    crd = agents.cp.get(CUSTOM_RESOURCE_DEFINITIONS, "mangodbs.mangodb.com")
    properties = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    properties["backupSchedule"] = {"type": "string"}
    agents.cp.write("PUT", CUSTOM_RESOURCE_DEFINITIONS, crd)

    def app_schema():
        found = agents.app.get(CUSTOM_RESOURCE_DEFINITIONS, "mangodbs.mangodb.com")
        return found["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]

    eventually("the new field in the app cluster's CRD", lambda: "backupSchedule" in app_schema())


def test_the_konnector_keeps_the_binding_conditions_true_and_says_when_the_export_is_gone(agents):
    app, cp = agents.app, agents.cp

    def conditions():
        binding = app.get(API_SERVICE_BINDINGS, "mangodbs.mangodb.com", "klutch-bind")
        return dict((item["type"], (item["status"], item.get("reason"))) for item in binding["status"]["conditions"])

    assert conditions()["Ready"] == ("True", None)
    cp.delete(API_SERVICE_EXPORTS, "mangodbs.mangodb.com", agents.namespace)
    lost = eventually("Connected False", lambda: conditions()["Connected"][0] == "False" and conditions())
    assert lost["Connected"] == ("False", "APIServiceExportNotFound") and lost["Ready"][0] == "False"
    agents.bind()  # exported again, as a playbook would
    eventually("Ready again", lambda: conditions()["Ready"] == ("True", None))


def test_a_second_app_cluster_bound_later_works_the_same(agents, lab, control_plane_play, run_playbook, run_task,
                                                         control_plane):
    lab.up(list(lab.state["clusters"]) + ["app-later"])
    cluster = lab.cluster("app-later")
    later = World("agents", cluster, agents.cp, run_task, run_playbook,
                  {"konnector": konnector_play(cluster, "local", agents.run_dir, agent_name="konnector-later")})
    later.cp_kubeconfig, later.run_dir = control_plane.admin_kubeconfig, agents.run_dir
    try:
        completed = run_playbook(later.plays["konnector"])
        assert completed.returncode == 0, completed.stdout
        later.bind()
        later.app.apply(NAMESPACES, {"metadata": {"name": "team"}})
        later.app.apply(MANGODBS, instance("reports", namespace="team"))
        eventually("mapped and upstream", lambda: agents.cp.get(MANGODBS, "reports", later.mapped("team")))
        agents.cp.apply(SECRETS, {"metadata": {"name": "reports-creds", "namespace": later.mapped("team")},
                                  "stringData": {"password": "later"}})
        eventually("its Secret on the later app cluster", lambda: later.app.get(SECRETS, "reports-creds", "team"))
        assert later.namespace != agents.namespace
        later.app.delete(MANGODBS, "reports", "team")
        eventually("deleted on both sides", lambda: agents.cp.get(MANGODBS, "reports", later.mapped("team")) is None)
    finally:
        end_world(later, lab, run_task, agent_names=("konnector-later",))


def konnector_pid(world):
    return json.loads((world.run_dir / "konnector" / "state.json").read_text())["pid"]


def contents(client, namespaces):
    """{(namespace, name): tier} of the instances and {(namespace, name): data} of the Secrets."""
    instances, secrets = {}, {}
    for namespace in namespaces:
        for obj in client.list(MANGODBS, namespace)[0]:
            key = (namespace, obj["metadata"]["name"])
            assert key not in instances, f"duplicate {key}"
            instances[key] = obj["spec"]["tier"]
        for obj in client.list(SECRETS, namespace)[0]:
            if obj.get("type") == "Opaque":
                secrets[(namespace, obj["metadata"]["name"])] = obj.get("data")
    return instances, secrets


def test_killed_mid_sync_and_a_restarted_api_server_lose_and_duplicate_nothing(lab, agents, control_plane, figure):
    world, app, cp = agents, agents.app, agents.cp
    local_agent(world, "konnector", state="absent")
    namespaces = [f"load-{index}" for index in range(NAMESPACE_COUNT)]
    total = NAMESPACE_COUNT * PER_NAMESPACE
    # The konnector starts on a backlog: every instance exists before it runs.
    for namespace in namespaces:
        app.apply(NAMESPACES, {"metadata": {"name": namespace}})
        for index in range(PER_NAMESPACE):
            app.write("POST", MANGODBS, instance(f"db-{index:03d}", namespace=namespace, tier="Shared"))
    completed = world.run_playbook(world.plays["konnector"])
    assert completed.returncode == 0, completed.stdout

    def upstream_count():
        return sum(len(cp.list(MANGODBS, world.mapped(namespace))[0]) for namespace in namespaces)

    deadline = time.monotonic() + 60
    while upstream_count() < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(konnector_pid(world), signal.SIGKILL)
    at_kill = upstream_count()
    figure(f"faults: konnector killed with {at_kill} of {total} instances upstream")
    assert 0 < at_kill < total, "the kill was not mid-sync"

    # While the konnector is dead: the control plane's API server goes away and comes back, and both
    # sides keep changing.
    lab.restart(control_plane.name, "kube-apiserver", downtime=2)
    for index in range(10):
        app.write("PATCH", MANGODBS, {"metadata": {"name": f"db-{index:03d}", "namespace": namespaces[0]},
                                      "spec": {"tier": "Dedicated"}})
        app.delete(MANGODBS, f"db-{index:03d}", namespaces[1])
        app.write("POST", MANGODBS, instance(f"late-{index:03d}", namespace=namespaces[2]))
    for index in range(5):
        cp.apply(SECRETS, {"metadata": {"name": f"creds-{index}", "namespace": world.mapped(namespaces[0])},
                           "stringData": {"password": f"secret-{index}"}})

    # The role brings the konnector back; the backend agent rode out the restart on its own.
    completed = world.run_playbook(world.plays["konnector"])
    assert completed.returncode == 0, completed.stdout
    assert "konnector started" in completed.stdout

    mapped = dict((world.mapped(namespace), namespace) for namespace in namespaces)

    def converged():
        down = contents(app, namespaces)
        up = contents(cp, mapped)
        up_as_down = ({(mapped[ns], name): tier for (ns, name), tier in up[0].items()},
                      {(mapped[ns], name): data for (ns, name), data in up[1].items()})
        return down == up_as_down and all(
            SYNCER_FINALIZER in obj["metadata"].get("finalizers", []) for namespace in namespaces
            for obj in app.list(MANGODBS, namespace)[0])

    started = time.monotonic()
    deadline = started + 120
    while not converged():
        assert time.monotonic() < deadline, "the clusters did not converge within 120 s"
        time.sleep(0.5)
    figure(f"faults: converged {time.monotonic() - started:.1f} s after the konnector came back")
    instances, secrets = contents(app, namespaces)
    assert len(instances) == total, "10 deleted, 10 added"
    assert sum(1 for tier in instances.values() if tier == "Dedicated") == 10 + 10  # patched + the late ones
    assert len(secrets) == 5
    assert all(obj["metadata"].get("deletionTimestamp") is None for namespace in namespaces
               for obj in app.list(MANGODBS, namespace)[0]), "no delete is stuck on a finalizer"


def readiness(world, agent_name):
    """The HTTP status of a local agent's /readyz, or None while it does not answer."""
    from urllib.error import HTTPError, URLError
    from urllib.request import urlopen
    port = json.loads((world.run_dir / agent_name / "state.json").read_text())["health_port"]
    try:
        with urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status
    except HTTPError as error:
        return error.code
    except URLError:
        return None


def test_the_control_plane_away_for_a_minute_while_instances_come_and_go(lab, agents, control_plane, figure):
    world, app, cp = agents, agents.app, agents.cp
    namespace = "away"
    app.apply(NAMESPACES, {"metadata": {"name": namespace}})
    for index in range(10):
        app.write("POST", MANGODBS, instance(f"kept-{index}", namespace=namespace, tier="Shared"))
    eventually("the first ten instances upstream",
               lambda: len(cp.list(MANGODBS, world.mapped(namespace))[0]) == 10, timeout=60)

    away = threading.Thread(target=lab.restart, args=(control_plane.name, "kube-apiserver"), kwargs={"downtime": 60})
    away.start()
    # While the control plane is away: five deleted, five changed, ten new on the app cluster.
    for index in range(5):
        app.delete(MANGODBS, f"kept-{index}", namespace)
        app.write("PATCH", MANGODBS, {"metadata": {"name": f"kept-{index + 5}", "namespace": namespace},
                                      "spec": {"tier": "Dedicated"}})
    for index in range(10):
        app.write("POST", MANGODBS, instance(f"new-{index}", namespace=namespace))
    eventually("the konnector not ready while the control plane is away",
               lambda: readiness(world, "konnector") == 503, timeout=45)
    away.join()
    returned = time.monotonic()

    expected = dict({f"kept-{index}": "Dedicated" for index in range(5, 10)},
                    **{f"new-{index}": "Dedicated" for index in range(10)})

    def tiers(client, ns):
        return {obj["metadata"]["name"]: obj["spec"]["tier"] for obj in client.list(MANGODBS, ns)[0]}

    eventually("both sides hold the same fifteen instances",
               lambda: tiers(app, namespace) == expected and tiers(cp, world.mapped(namespace)) == expected,
               timeout=120)
    figure(f"faults: converged {time.monotonic() - returned:.1f} s after a 60 s absence of the control plane")
    assert all(obj["metadata"].get("deletionTimestamp") is None for obj in app.list(MANGODBS, namespace)[0])
    assert all(SYNCER_FINALIZER in obj["metadata"]["finalizers"] for obj in app.list(MANGODBS, namespace)[0])
    eventually("the konnector ready again", lambda: readiness(world, "konnector") == 200, timeout=30)


def agent_requests(events, users, since, until):
    """[(verb, resource/subresource)] of what `users` asked in [since, until], besides watches and Leases."""
    asked = []
    for event in events:
        received = datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))
        resource = event.get("objectRef") or {}
        if event.get("stage") == "ResponseComplete" and event.get("user", {}).get("username") in users \
                and since <= received <= until and event.get("verb") != "watch" and resource.get("resource") != "leases":
            asked.append((event["verb"], "/".join(filter(None, (resource.get("resource"), resource.get("subresource")))),
                          resource.get("name"), event.get("userAgent", "")[:40], "dryRun" in event.get("requestURI", "")))
    return asked


def lease_holders(events, lease):
    return set(event["user"]["username"] for event in events if (event.get("objectRef") or {}).get("resource") == "leases"
               and event["objectRef"].get("name") == lease and event.get("verb") in ("update", "create"))


def test_idle_agents_send_nothing_but_their_watches_leases_and_heartbeat(agents, control_plane, audit, figure):
    """Both agents pass over everything every 2 s here (their resync); from their caches, a quiet stretch costs
    no read and no write, only the watches' renewals, the Leases, the konnector's heartbeat and its one read
    per resync of the consumer's namespace, which tells it that the control plane still takes its token."""
    consumer = agents.namespace
    windows = []
    for _window in range(6):  # a window may still see the end of what an earlier test started
        since = datetime.datetime.now(datetime.timezone.utc)
        time.sleep(10)
        until = datetime.datetime.now(datetime.timezone.utc)
        app_log, cp_log = audit(agents.cluster), audit(control_plane)
        app_log.flush()
        cp_log.flush()
        konnector = lease_holders(app_log.events(), "klutch-bind")
        backend = lease_holders(cp_log.events(), "klutch-bind-backend")
        assert konnector and backend, "both agents hold their Lease"
        asked = {"konnector on the app cluster": agent_requests(app_log.events(), konnector, since, until),
                 "konnector on the control plane": [request for request in agent_requests(
                     cp_log.events(), {f"system:serviceaccount:{consumer}:klutch-binder"}, since, until)
                     if request[:2] not in (("patch", "clusterbindings/status"), ("get", "namespaces"))],
                 "backend": agent_requests(cp_log.events(), backend, since, until)}
        checks = [request for request in agent_requests(cp_log.events(), {f"system:serviceaccount:{consumer}:klutch-binder"},
                                                        since, until) if request[:3] == ("get", "namespaces", consumer)]
        windows.append(asked)
        if not any(asked.values()):
            break
    assert len(checks) <= 10 / 2 + 1, "one credential check per resync"
    figure(f"idle agents: {sum(len(found) for found in windows[-1].values())} requests besides watches, Leases and "
           f"heartbeat in 10 s, after {len(windows)} window(s)")
    assert windows[-1] == {"konnector on the app cluster": [], "konnector on the control plane": [], "backend": []}


def test_the_agents_logs_hold_no_secret_value_or_token(agents):
    world, app = agents, agents.app
    values = [f"secret-{index}" for index in range(5)]  # the Secrets synced down by the tests above
    values += [base64.b64encode(value.encode()).decode() for value in values]
    for stored in app.list(SECRETS, "klutch-bind")[0]:
        if "kubeconfig" in (stored.get("data") or {}):
            config = yaml.safe_load(base64.b64decode(stored["data"]["kubeconfig"]))
            values += [user["user"]["token"] for user in config["users"] if user["user"].get("token")]
    assert len(values) > 10, "the consumer's token was found"
    logs = {path.parent.name: path.read_text(errors="replace") for path in world.run_dir.glob("*/agent.log")}
    assert {"konnector", "backend"} <= set(logs) and all(logs.values())
    assert [(name, value[:8]) for name, log in logs.items() for value in values if value in log] == []
