"""Control-plane safety on the lab: what one consumer writes stops no other consumer, objects that Klutch's
backend wrote are taken over, a consumer bound again under a new cluster id keeps its namespace, and of
two backend replicas only the leader writes, also after it was paused mid-pass."""

import base64
import json
import os
import signal
import socket
import threading
import time

import pytest
import yaml

from ansible_collections.klutch.bind.plugins.module_utils import arguments
from ansible_collections.klutch.bind.plugins.module_utils.k8s.apply import now as kubernetes_now
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import condition_holds
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CLUSTER_ROLES,
    CLUSTER_ROLE_BINDINGS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    ROLE_BINDINGS,
    Resource,
    SECRETS,
    SERVICE_ACCOUNTS,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import (
    API_SERVICE_EXPORTS,
    API_SERVICE_NAMESPACES,
    CLUSTER_BINDINGS,
)
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle.export import export_request
from ansible_collections.klutch.bind.plugins.module_utils.plan import consumers
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER
from sync_world import eventually

GROUP, RESOURCE = "safety.klutch.bind", "widgets"
API = f"{RESOURCE}.{GROUP}"
WIDGETS = Resource(f"{GROUP}/v1", "Widget", RESOURCE)
TEMPLATE = {"name": RESOURCE, "group": GROUP, "resource": RESOURCE,
            "permission_claims": [{"resource": "secrets", "owner": "Provider"}]}
CLUSTER_ID = "Sa1fe7y"
LEASES = Resource("coordination.k8s.io/v1", "Lease", "leases")
LEADER, STANDBY = "safety-backend", "safety-standby"
LEADER_USER = "system:serviceaccount:klutch-bind-system:klutch-bind-backend"  # the role's account
STANDBY_ACCOUNT = "klutch-bind-backend-standby"
REPLICA_CONSUMERS = 20  # enough that the leader's pass over them can be paused halfway


def widget_crd(*fields):
    """The Widget CRD, its spec holding `size` and `fields`."""
    properties = dict((field, {"type": "string"}) for field in ("size",) + fields)
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": API},
            "spec": {"group": GROUP, "scope": "Namespaced",
                     "names": {"kind": "Widget", "listKind": "WidgetList", "plural": RESOURCE, "singular": "widget"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object",
                         "properties": {"spec": {"type": "object", "properties": properties}}}}}]}}


def export_params(consumer, cluster_id=CLUSTER_ID, **extra):
    """klutch_export_request's parameters with its defaults, for the planner called in this process."""
    defaults = dict((name, spec.get("default")) for name, spec in arguments.EXPORT.items())
    return dict(defaults, consumer=consumer, cluster_id=cluster_id, resources=[{"group": GROUP, "resource": RESOURCE}],
                state="present", delete_namespace=False, wait_timeout=30, **extra)


def admin_client(control_plane):
    return ClusterClient.from_params({"kubeconfig": str(control_plane.admin_kubeconfig)}, environ={})


@pytest.fixture(scope="module")
def widgets(control_plane, klutch_apis, control_plane_play, run_playbook):
    """The Widget API with its template on the control plane; an admin client. The consumer namespaces of
    this module and their mapped namespaces are removed afterwards, so later agents do not reconcile them."""
    admin = admin_client(control_plane)
    admin.apply(CUSTOM_RESOURCE_DEFINITIONS, widget_crd(), force=True)
    admin.wait(CUSTOM_RESOURCE_DEFINITIONS, API, None, condition_holds("Established"), 30, "Established")
    completed = run_playbook(control_plane_play(control_plane_templates=[TEMPLATE]))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    yield admin
    ours = [name for name, identity in identities(admin).items()
            if identity.partition("#")[2] in (CLUSTER_ID, "Old1", "New1", "Tw1n5")]
    for namespace in admin.list(NAMESPACES)[0]:
        source = (namespace["metadata"].get("annotations") or {}).get(consumers.API_SERVICE_NAMESPACE_ANNOTATION, "")
        if namespace["metadata"]["name"] in ours or source.partition("/")[0] in ours:
            admin.delete(NAMESPACES, namespace["metadata"]["name"])  # its ClusterRoles go with it


def identities(client, consumer=None):
    """{namespace: identity} of the consumer namespaces (of `consumer` only, if given), as the cluster holds them."""
    found = {}
    for namespace in client.list(NAMESPACES)[0]:
        identity = (namespace["metadata"].get("annotations") or {}).get(consumers.IDENTITY_ANNOTATION)
        if identity and (consumer is None or identity.startswith(consumer + "#")) \
                and not namespace["metadata"].get("deletionTimestamp"):
            found[namespace["metadata"]["name"]] = identity
    return found


@pytest.fixture(scope="module")
def export(widgets, control_plane, run_task):
    """export(consumer, **options) -> (result, output) of klutch_export_request for the Widget API."""

    def run(consumer, **options):
        args = dict({"kubeconfig": str(control_plane.admin_kubeconfig), "consumer": consumer,
                     "cluster_id": CLUSTER_ID, "resources": [{"group": GROUP, "resource": RESOURCE}]}, **options)
        return run_task("klutch.bind.klutch_export_request", args)

    return run


def as_consumer(result):
    """A client with the consumer's own kubeconfig, as its konnector has it."""
    return ClusterClient.from_params({"kubeconfig": yaml.safe_load(result["kubeconfig"])}, environ={})


def mapped_to(client, namespace, name):
    found = client.get(API_SERVICE_NAMESPACES, name, namespace)
    return ((found or {}).get("status") or {}).get("namespace")


def test_a_long_namespace_gets_a_short_name_and_a_bad_one_stops_nothing_else(export, widgets):
    first, output = export("long-names")
    assert not first.get("failed"), output
    namespace = first["consumer_namespace"]
    consumer = as_consumer(first)
    long_name = "team-" + "x" * 55  # <P>-<N> has 74 characters
    for name in ("shop", long_name, "team.dotted"):  # a dot is no namespace name: that one cannot be mapped
        consumer.apply(API_SERVICE_NAMESPACES, {"metadata": {"name": name, "namespace": namespace}})

    mapped, output = export("long-names")
    assert mapped.get("failed") and "team.dotted" in mapped["msg"], output
    short = mapped_to(widgets, namespace, long_name)
    assert short and len(short) <= 63 and short.startswith(f"{namespace}-team-xxx")
    assert short == consumers.mapped_namespace(namespace, {"metadata": {"name": long_name}}), "stable across runs"
    assert widgets.get(NAMESPACES, short)["metadata"]["annotations"][consumers.API_SERVICE_NAMESPACE_ANNOTATION] == \
        f"{namespace}/{long_name}"
    assert mapped_to(widgets, namespace, "shop") == f"{namespace}-shop"
    assert mapped_to(widgets, namespace, "team.dotted") is None
    for target in (f"{namespace}-shop", short):  # the RBAC after the failed one was written
        assert widgets.get(ROLE_BINDINGS, consumers.BINDER, target)["roleRef"]["name"] == consumers.dynamic_role(namespace)
    assert consumer.apply(WIDGETS, {"metadata": {"name": "w", "namespace": short}, "spec": {"size": "s"}}).changed
    consumer.delete(WIDGETS, "w", short)
    consumer.delete(API_SERVICE_NAMESPACES, "team.dotted", namespace)
    again, output = export("long-names")
    assert not again.get("failed") and again["changed"] is False, output


def test_rbac_and_objects_that_klutchs_backend_wrote_are_taken_over(export, widgets, audit, control_plane):
    first, output = export("taken-over")
    assert not first.get("failed"), output
    namespace = first["consumer_namespace"]
    as_consumer(first).apply(API_SERVICE_NAMESPACES, {"metadata": {"name": "shop", "namespace": namespace}})
    mapped, output = export("taken-over")
    assert not mapped.get("failed"), output
    shop = f"{namespace}-shop"

    # Klutch's backend, with its own field manager, wrote other values into the fields we manage.
    everything = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]
    more = consumers.binder_subject(namespace) + [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}]
    stale_kubeconfig = base64.b64encode(b"stale").decode("ascii")
    for resource, obj in (
            (CLUSTER_ROLES, {"metadata": {"name": consumers.dynamic_role(namespace)}, "rules": everything}),
            (ROLE_BINDINGS, consumers.role_binding(consumers.BINDER, namespace, "ClusterRole", consumers.BINDER, namespace)),
            (ROLE_BINDINGS, consumers.role_binding(consumers.BINDER, shop, "ClusterRole", consumers.dynamic_role(namespace),
                                                   namespace)),
            (CLUSTER_BINDINGS, {"metadata": {"name": "cluster", "namespace": namespace},
                                "spec": {"kubeconfigSecretRef": {"name": "kubeconfig", "key": "kubeconfig"},
                                         "providerPrettyName": "Klutch"}}),
            (SECRETS, {"metadata": {"name": consumers.KUBECONFIG_SECRET, "namespace": namespace},
                       "data": {"kubeconfig": stale_kubeconfig}}),
            (API_SERVICE_EXPORTS, {"metadata": {"name": API, "namespace": namespace},
                                   "spec": {"permissionClaims": []}})):
        if resource is ROLE_BINDINGS:
            obj = dict(obj, subjects=more)
        widgets.apply(resource, dict(obj, apiVersion=resource.api_version, kind=resource.kind), force=True,
                      field_manager="klutch-backend")

    start = now()
    taken, output = export("taken-over")
    assert not taken.get("failed"), output
    export_obj = widgets.get(API_SERVICE_EXPORTS, API, namespace)
    assert export_obj["spec"]["permissionClaims"][0]["resource"] == "secrets"
    role = widgets.get(CLUSTER_ROLES, consumers.dynamic_role(namespace))
    assert role["rules"] == consumers.consumer_rules([export_obj]), "least privilege, Klutch's rules gone"
    assert [entry["manager"] for entry in role["metadata"]["managedFields"]
            if "f:rules" in json.dumps(entry.get("fieldsV1"))] == ["klutch.bind"]
    for target in (namespace, shop):
        assert widgets.get(ROLE_BINDINGS, consumers.BINDER, target)["subjects"] == consumers.binder_subject(namespace)
    assert widgets.get(CLUSTER_BINDINGS, "cluster", namespace)["spec"]["providerPrettyName"] == "klutch.bind"
    stored = widgets.get(SECRETS, consumers.KUBECONFIG_SECRET, namespace)["data"]["kubeconfig"]
    assert yaml.safe_load(base64.b64decode(stored))["contexts"][0]["context"]["namespace"] == namespace
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 6, "one write per object taken over"

    start = now()
    again, output = export("taken-over")
    assert again["changed"] is False, output
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0


def test_a_consumer_bound_again_under_a_new_cluster_id_is_refused_until_it_names_the_old_one(
        export, widgets, audit, control_plane):
    first, output = export("rebound", cluster_id="Old1")
    assert not first.get("failed"), output
    namespace = first["consumer_namespace"]
    export_uid = widgets.get(API_SERVICE_EXPORTS, API, namespace)["metadata"]["uid"]

    start = now()
    refused, output = export("rebound", cluster_id="New1")
    assert refused.get("failed"), output
    for part in (namespace, "rebound#Old1", "New1", "previous_cluster_id: Old1"):
        assert part in refused["msg"]
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0
    assert identities(widgets, "rebound") == {namespace: "rebound#Old1"}

    adopted, output = export("rebound", cluster_id="New1", previous_cluster_id="Old1")
    assert not adopted.get("failed"), output
    assert adopted["consumer_namespace"] == namespace
    assert identities(widgets, "rebound") == {namespace: "rebound#New1"}
    assert widgets.get(API_SERVICE_EXPORTS, API, namespace)["metadata"]["uid"] == export_uid, "instances stay"
    start = now()
    again, output = export("rebound", cluster_id="New1", previous_cluster_id="Old1")
    assert again["changed"] is False, output
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0


def test_first_binds_of_one_consumer_at_the_same_time_make_one_namespace(widgets, control_plane):
    runs = 4
    barrier, outcomes = threading.Barrier(runs), [None] * runs

    def bind(index):
        client = admin_client(control_plane)
        barrier.wait()
        try:
            outcomes[index] = export_request(client, False, export_params("twins", "Tw1n5"))[0]["consumer_namespace"]
        except Exception as error:  # pylint: disable=broad-exception-caught
            outcomes[index] = repr(error)

    threads = [threading.Thread(target=bind, args=(index,)) for index in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    found = identities(widgets, "twins")
    assert list(found.values()) == ["twins#Tw1n5"], found
    assert outcomes == list(found) * runs


@pytest.fixture(scope="module")
def backend(widgets, control_plane_play, run_playbook, run_task, tmp_path_factory):
    """The backend agent as the role runs it (resync 2 s); its run directory. Stops it and any standby after."""
    run_dir = tmp_path_factory.mktemp("safety-agents")
    completed = run_playbook(control_plane_play(
        control_plane_templates=[TEMPLATE], control_plane_backend="local", control_plane_backend_resync=2,
        control_plane_backend_run_dir=str(run_dir), control_plane_backend_agent_name=LEADER))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    yield run_dir
    for name in (LEADER, STANDBY):
        result, output = run_task("klutch.bind.klutch_agent", {"role": "backend", "name": name,
                                                               "run_dir": str(run_dir), "state": "absent"})
        assert not result.get("failed"), output


def healthy(client, namespace):
    """(status, reason) of the ClusterBinding's Healthy condition, or None."""
    binding = client.get(CLUSTER_BINDINGS, "cluster", namespace)
    found = [item for item in (binding.get("status") or {}).get("conditions") or [] if item["type"] == "Healthy"]
    return (found[0]["status"], found[0].get("reason")) if found else None


def heartbeat(client, namespace, moment):
    client.apply(CLUSTER_BINDINGS, {"metadata": {"name": "cluster", "namespace": namespace},
                                    "status": {"lastHeartbeatTime": moment, "heartbeatInterval": "5m0s"}},
                 subresource="status", field_manager="konnector")


def test_an_odd_heartbeat_stops_neither_the_backend_agent_nor_other_consumers(backend, export, widgets):
    log = backend / LEADER / "agent.log"
    seen = log.stat().st_size
    # The odd consumer's namespace sorts before every other, so the agent meets it first.
    widgets.apply(NAMESPACES, {"metadata": {"name": "cluster-00000", "annotations": {
        consumers.IDENTITY_ANNOTATION: consumers.consumer_identity("odd-heartbeat", CLUSTER_ID)}}})
    odd, output = export("odd-heartbeat")
    assert not odd.get("failed") and odd["consumer_namespace"] == "cluster-00000", output
    other, output = export("beating")
    assert not other.get("failed"), output
    namespace = other["consumer_namespace"]

    # Valid date-times to the API server, which the consumer's binder role may write.
    heartbeat(as_consumer(odd), "cluster-00000", "2030-01-01T00:00:00.5Z")
    as_consumer(other).apply(API_SERVICE_NAMESPACES, {"metadata": {"name": "shop", "namespace": namespace}})
    eventually("the other consumer's namespace mapped by the agent",
               lambda: mapped_to(widgets, namespace, "shop") == f"{namespace}-shop")
    assert widgets.get(ROLE_BINDINGS, consumers.BINDER, f"{namespace}-shop") is not None
    eventually("the odd heartbeat reported", lambda: healthy(widgets, "cluster-00000") == ("False",
                                                                                           "HeartbeatTimeDrift"))
    heartbeat(as_consumer(odd), "cluster-00000", "2026-01-01T00:00:00,5Z")  # a comma: not RFC 3339
    eventually("the unreadable heartbeat reported",
               lambda: healthy(widgets, "cluster-00000") == ("False", "HeartbeatTimeInvalid"))
    heartbeat(as_consumer(other), namespace, kubernetes_now())
    eventually("the other consumer healthy", lambda: healthy(widgets, namespace) == ("True", None))
    with open(log, encoding="utf-8") as lines:
        lines.seek(seen)
        failures = [line for line in lines if '"level": "error"' in line]
    assert failures == []


def standby_account(client):
    """A second ServiceAccount with the backend's rights, so that the audit log tells the replicas apart."""
    subject = [{"kind": "ServiceAccount", "name": STANDBY_ACCOUNT, "namespace": "klutch-bind-system"}]
    client.apply(SERVICE_ACCOUNTS, {"metadata": {"name": STANDBY_ACCOUNT, "namespace": "klutch-bind-system"}})
    client.apply(SECRETS, {"type": "kubernetes.io/service-account-token", "metadata": {
        "name": STANDBY_ACCOUNT + "-token", "namespace": "klutch-bind-system",
        "annotations": {"kubernetes.io/service-account.name": STANDBY_ACCOUNT}}})
    client.apply(CLUSTER_ROLE_BINDINGS, {"metadata": {"name": STANDBY_ACCOUNT}, "subjects": subject, "roleRef": {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "klutch-bind-backend"}})
    client.apply(ROLE_BINDINGS, {"metadata": {"name": STANDBY_ACCOUNT + "-lease", "namespace": "klutch-bind-system"},
                                 "subjects": subject, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                                  "kind": "Role", "name": "klutch-bind-backend-lease"}})


def lease_holder(client):
    return client.get(LEASES, "klutch-bind-backend", "klutch-bind-system")["spec"].get("holderIdentity")


def spec_fields(client, namespaces):
    """{namespace: the spec fields of its Widget export}."""
    found = {}
    for namespace in namespaces:
        versions = client.get(API_SERVICE_EXPORTS, API, namespace)["spec"]["versions"]
        found[namespace] = set(versions[0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])
    return found


def change_crd(client, *fields):
    client.apply(CUSTOM_RESOURCE_DEFINITIONS, widget_crd(*fields), force=True)


def writes(audit, cluster, since, user):
    """The user's writes since `since`, leaving out Lease renewals."""
    return [event["requestURI"] for event in audit(cluster).writes(since=since, user=user)
            if (event.get("objectRef") or {}).get("resource") != "leases"]


def test_of_two_backend_replicas_only_the_leader_writes_also_after_a_pause(
        backend, widgets, run_task, audit, control_plane):
    namespaces = [export_request(widgets, False, export_params("replica-%02d" % index))[0]["consumer_namespace"]
                  for index in range(REPLICA_CONSUMERS)]
    standby_account(widgets)
    started, output = run_task("klutch.bind.klutch_agent", {
        "role": "backend", "name": STANDBY, "run_dir": str(backend), "kubeconfig": str(control_plane.admin_kubeconfig),
        "service_account": "klutch-bind-system/" + STANDBY_ACCOUNT, "resync": 2})
    assert started["action"] == "started", output
    host = socket.gethostname()
    assert lease_holder(widgets) == f"{host}-{LEADER}"
    eventually("every consumer's health reported by the leader", lambda: all(
        healthy(widgets, namespace) for namespace in namespaces))

    # Both replicas run: a change of the CRD is written by the leader alone.
    start = now()
    change_crd(widgets, "color")
    eventually("the change in every export", lambda: all(
        "color" in fields for fields in spec_fields(widgets, namespaces).values()))
    time.sleep(2)  # a pass of the standby, if it made one, would show by now
    assert len(writes(audit, control_plane, start, LEADER_USER)) >= REPLICA_CONSUMERS
    assert writes(audit, control_plane, start, f"system:serviceaccount:klutch-bind-system:{STANDBY_ACCOUNT}") == []

    # The leader pauses in the middle of a pass (as in a long GC pause or a partition); the standby takes over
    # and writes a newer change; the old leader, resumed, must not write what its pass had planned.
    log = backend / LEADER / "agent.log"
    seen = log.stat().st_size
    pid = json.loads((backend / LEADER / "state.json").read_text())["pid"]
    change_crd(widgets, "color", "shape")
    deadline = time.monotonic() + 30
    while '"msg": "reconciled"' not in log.read_text()[seen:]:
        assert time.monotonic() < deadline, "the leader made no pass after the CRD changed"
        time.sleep(0.005)
    os.kill(pid, signal.SIGSTOP)
    try:
        behind = [namespace for namespace, fields in spec_fields(widgets, namespaces).items() if "shape" not in fields]
        assert len(behind) >= 2, "the leader was not paused in the middle of its pass"
        change_crd(widgets, "color", "weight")
        eventually("the standby leading", lambda: lease_holder(widgets) == f"{host}-{STANDBY}", timeout=40)
        eventually("the newer change in every export by the standby", lambda: all(
            fields == {"size", "color", "weight"} for fields in spec_fields(widgets, namespaces).values()))
        resumed = now()
    finally:
        os.kill(pid, signal.SIGCONT)
    time.sleep(5)
    late = writes(audit, control_plane, resumed, LEADER_USER)
    # At most the one write whose dry run was already on its way when the leader paused.
    assert len(late) <= 1, late
    assert all(fields == {"size", "color", "weight"} for fields in spec_fields(widgets, namespaces).values())
    assert lease_holder(widgets) == f"{host}-{STANDBY}"
