"""A consumer's credentials on the lab, with both agents running: a rotation that no sync pass notices,
a revocation that locks the consumer out within seconds and keeps its data, and reinstatement on request."""

import base64
import json
import threading
import time

import pytest
import yaml

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import condition_holds
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import NAMESPACES, SECRETS
from ansible_collections.klutch.bind.plugins.module_utils.kinds import API_SERVICE_BINDINGS, API_SERVICE_EXPORTS
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER
from sync_world import MANGODBS, eventually, instance

BINDING = "mangodbs.mangodb.com"
# What a konnector logs when a pass, a binding's pass or one of its watches goes wrong.
GRACE = 15  # s the replaced token keeps working in the rotation test
TROUBLE = ("pass failed; retrying", "binding cannot be synced", "write failed", "watch failed; retrying")


@pytest.fixture(scope="module")
def world(bound_world):
    with bound_world("agents", "app-credentials") as bound:
        yield bound


def app_kubeconfig(world):
    """The kubeconfig the app cluster holds for the binding: what the konnector connects with."""
    binding = world.app.get(API_SERVICE_BINDINGS, BINDING, "klutch-bind")
    ref = binding["spec"]["kubeconfigSecretRef"]
    secret = world.app.get(SECRETS, ref["name"], ref["namespace"])
    return yaml.safe_load(base64.b64decode(secret["data"][ref["key"]]))


def token_of(kubeconfig):
    return kubeconfig["users"][0]["user"]["token"]


def answer(kubeconfig, namespace):
    """The HTTP status the control plane gives a read of the consumer's namespace with these credentials."""
    client = ClusterClient.from_params({"kubeconfig": kubeconfig}, environ={}, retry_budget=0)
    try:
        client.get(NAMESPACES, namespace)
    except ClusterError as error:
        return error.status
    return 200


def credentials(world, run_task):
    """The consumer's credentials as klutch_info reports them on the control plane."""
    report, output = run_task("klutch.bind.klutch_info", {"kubeconfig": str(world.cp_kubeconfig)})
    assert not report.get("failed"), output
    return next(item for item in report["consumers"] if item["namespace"] == world.namespace)


def entries_since(path, offset):
    return [json.loads(line) for line in path.read_text()[offset:].splitlines() if line.startswith("{")]


def upstream(world, name):
    return world.cp.get(MANGODBS, name, world.mapped())


class Churn:
    """Instances created on the app cluster, one every 0.3 s, while something else goes on."""

    def __init__(self, world, prefix):
        self.world, self.prefix, self.names = world, prefix, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            name = "%s-%d" % (self.prefix, len(self.names))
            self.world.app.apply(MANGODBS, instance(name))
            self.names.append(name)
            self.stop.wait(0.3)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_exc):
        self.stop.set()
        self.thread.join()


def test_a_rotation_reaches_the_konnector_without_a_restart_and_no_sync_pass_fails(world, run_task, figure):
    # The namespace in use first: the konnector's first read of claimed kinds there may still meet the
    # API server's RBAC cache without its new RoleBinding (a race of its own, not the rotation's).
    world.app.apply(MANGODBS, instance("warm-up"))
    eventually("the warm-up instance upstream", lambda: upstream(world, "warm-up"))
    time.sleep(3)
    log = world.run_dir / "konnector" / "agent.log"
    offset = len(log.read_text())
    old = app_kubeconfig(world)
    pid = json.loads((world.run_dir / "konnector" / "state.json").read_text())["pid"]
    with Churn(world, "rotating") as churn:
        time.sleep(1)
        started = time.monotonic()
        rotated, output = run_task("klutch.bind.klutch_export_request",
                                   dict(world.export_args, rotate_after="1s", rotation_grace=GRACE))
        assert not rotated.get("failed") and rotated["changed"], output
        returned = time.monotonic()
        new_token = token_of(yaml.safe_load(rotated["kubeconfig"]))
        assert new_token != token_of(old)
        # Only the control plane was told: the konnector copies the new kubeconfig down itself.
        eventually("the app cluster holds the new kubeconfig", lambda: token_of(app_kubeconfig(world)) == new_token)
        copied = time.monotonic() - returned
        assert answer(old, world.namespace) == 200, "the old token works during its grace"
        reported = credentials(world, run_task)["credentials"]
        assert reported["token_secret"].startswith("klutch-binder-") and len(reported["retiring"]) == 1
        eventually("the old token refused once its grace is over", lambda: answer(old, world.namespace) == 401,
                   timeout=GRACE + 30)
        refused = time.monotonic() - returned
        time.sleep(2)
    assert answer(app_kubeconfig(world), world.namespace) == 200
    eventually("every instance of the churn upstream", lambda: all(upstream(world, name) for name in churn.names))

    entries = entries_since(log, offset)
    trouble = [entry for entry in entries if entry.get("msg") in TROUBLE]
    assert not trouble, trouble
    passes = [entry for entry in entries if entry.get("msg") == "synced"]
    assert passes and any(entry.get("msg") == "kubeconfig copied from the control plane" for entry in entries)
    assert json.loads((world.run_dir / "konnector" / "state.json").read_text())["pid"] == pid, "no restart"
    figure(f"credentials: the module's rotation took {returned - started:.1f} s; from its return, the new token on "
           f"the app cluster after {copied:.1f} s, the old one refused after {refused:.1f} s (grace {GRACE} s); "
           f"{len(churn.names)} instances and {len(passes)} sync passes meanwhile, 0 failed")


def test_a_rotation_run_before_the_token_is_old_enough_changes_nothing(world, run_task, audit, control_plane):
    start = now()
    again, output = run_task("klutch.bind.klutch_export_request", dict(world.export_args, rotate_after="1h"))
    assert not again.get("failed") and not again["changed"], output
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0


def test_a_revoked_consumer_is_refused_within_seconds_keeps_its_data_and_comes_back_only_when_reinstated(
        world, run_task, audit, control_plane, figure):
    held = app_kubeconfig(world)
    world.app.apply(MANGODBS, instance("before-revocation"))
    eventually("the instance upstream", lambda: upstream(world, "before-revocation"))
    started = time.monotonic()
    revoked, output = run_task("klutch.bind.klutch_export_request",
                               dict(world.export_args, state="revoked", resources=[]))
    assert not revoked.get("failed") and revoked["changed"] and revoked["revoked_at"], output
    returned = time.monotonic()
    eventually("the revoked token refused", lambda: answer(held, world.namespace) == 401, timeout=10)
    refused = time.monotonic() - returned
    # The control plane keeps the consumer's data; the app cluster says why nothing syncs.
    assert world.cp.get(NAMESPACES, world.namespace) is not None
    assert world.cp.get(API_SERVICE_EXPORTS, BINDING, world.namespace) is not None
    assert upstream(world, "before-revocation") is not None
    assert "its credentials were revoked at %s" % revoked["revoked_at"] in credentials(world, run_task)["problems"]

    def refused_binding():
        found = world.app.get(API_SERVICE_BINDINGS, BINDING, "klutch-bind")
        return found if condition_holds("Connected", "False")(found) else None

    binding = eventually("the binding reported as refused", refused_binding)
    connected = next(item for item in binding["status"]["conditions"] if item["type"] == "Connected")
    assert connected["reason"] == "ProviderUnauthorized" and "revoked" in connected["message"]
    world.app.apply(MANGODBS, instance("while-revoked"))  # waits on the app cluster, lost nowhere

    again, output = run_task("klutch.bind.klutch_export_request", dict(world.export_args, state="revoked", resources=[]))
    assert not again.get("failed") and not again["changed"], output
    start = now()
    refused_run, output = run_task("klutch.bind.klutch_export_request", world.export_args)
    assert refused_run.get("failed") and "was revoked" in refused_run["msg"] and "reinstate: true" in refused_run["msg"]
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0

    reinstated, output = run_task("klutch.bind.klutch_export_request", dict(world.export_args, reinstate=True))
    assert not reinstated.get("failed") and reinstated["changed"], output
    assert reinstated["consumer_namespace"] == world.namespace
    settled, output = run_task("klutch.bind.klutch_export_request", world.export_args)
    assert not settled.get("failed") and not settled["changed"], "reinstated for good, and in step: " + output
    bound, output = run_task("klutch.bind.klutch_binding", dict(
        world.app_args, name=BINDING, provider_kubeconfig=reinstated["kubeconfig"], accept_claims=world.accept_claims))
    assert not bound.get("failed"), output
    eventually("the binding connected again", lambda: condition_holds("Connected")(
        world.app.get(API_SERVICE_BINDINGS, BINDING, "klutch-bind")))
    eventually("the instance made while revoked upstream", lambda: upstream(world, "while-revoked"))
    world.app.apply(MANGODBS, instance("after-reinstatement"))
    eventually("a new instance upstream again", lambda: upstream(world, "after-reinstatement"))
    # Nothing lost and nothing twice: the app cluster's instances are the control plane's, one for one.
    assert sorted(item["metadata"]["name"] for item in world.cp.list(MANGODBS, world.mapped())[0]) == sorted(
        item["metadata"]["name"] for item in world.app.list(MANGODBS, "default")[0])
    figure(f"credentials: the module's revocation took {returned - started:.1f} s; the token was refused "
           f"{refused:.1f} s after it returned")
