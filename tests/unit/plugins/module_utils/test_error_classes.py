"""Callers tell the client's errors apart by class: each acts on the classes it did on the statuses, and
lets every other error through."""

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.agent import runtime
from ansible_collections.klutch.bind.plugins.module_utils.agent.konnector import Konnector
from ansible_collections.klutch.bind.plugins.module_utils.k8s import apply, client
from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import ClientConfiguration
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import (
    ConfigError,
    Forbidden,
    Gone,
    NotFound,
    Unauthorized,
    Unavailable,
    status_error,
)
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import CONFIG_MAPS, SECRETS
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import sync
from ansible_collections.klutch.bind.plugins.module_utils.plan.sync import CONTROL_PLANE, Operation
from ansible_collections.klutch.bind.plugins.modules import klutch_cluster_info


def error(status):
    return status_error("Cannot do it (%s)." % status, status)


class Scripted(client.ClusterClient):
    """A client whose requests get the scripted answers, in order: a dict, or an error raised."""

    def __init__(self, *answers, dry_run=False):
        configuration = ClientConfiguration()
        configuration.host = "https://c:6443"
        super().__init__(configuration, "cluster c", dry_run=dry_run)
        self.answers = list(answers)
        self.sent = []

    def request(self, method, path, action, target, query=None, **_options):
        self.sent.append((method, path, dict(query or {})))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_an_unserved_group_version_has_no_resources_but_a_refusal_is_raised():
    assert Scripted(error(404)).api_resources("example.org/v1") == {}
    with pytest.raises(Forbidden):
        Scripted(error(403)).api_resources("example.org/v1")


def test_an_expired_continue_token_starts_the_list_over_but_an_expired_first_page_is_raised():
    page = {"items": [{"metadata": {"name": "a"}}], "metadata": {"continue": "t", "resourceVersion": "1"}}
    last = {"items": [{"metadata": {"name": "b"}}], "metadata": {"resourceVersion": "2"}}
    cluster = Scripted(page, error(410), page, last)
    items, version = cluster.list(SECRETS, "ns")
    assert [item["metadata"]["name"] for item in items] == ["a", "b"] and version == "2"
    assert ["continue" in query for _method, _path, query in cluster.sent] == [False, True, False, True]
    with pytest.raises(Gone):
        Scripted(error(410)).list(SECRETS, "ns")


def test_check_mode_plans_an_object_in_a_namespace_still_to_be_created_only():
    body = {"metadata": {"name": "s", "namespace": "new"}}
    absent = status_error("Cannot get Namespace new: it does not exist (404).", 404, object_missing=True)
    change = Scripted(error(404), absent, dry_run=True).apply(SECRETS, body, before=None)
    assert change == (None, body, True)
    with pytest.raises(NotFound):
        Scripted(error(404), {"metadata": {"name": "new"}}, dry_run=True).apply(SECRETS, body, before=None)
    with pytest.raises(NotFound):
        Scripted(error(404)).apply(SECRETS, body, before=None)


def test_a_watch_from_an_expired_version_is_an_error_event_and_a_refusal_is_raised():
    events = list(Scripted(error(410)).watch(SECRETS, "ns", "1", 5))
    assert [(kind, event["code"]) for kind, event in events] == [("ERROR", 410)]
    with pytest.raises(Forbidden):
        list(Scripted(error(403)).watch(SECRETS, "ns", "1", 5))


@pytest.mark.parametrize("refused", [400, 404, 409, 422])
def test_a_set_the_server_would_refuse_in_part_is_refused_whole(refused):
    planned = [apply.Planned({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}, CONFIG_MAPS, "ns")
               for name in ("a", "b")]
    with pytest.raises(ConfigError, match="1 of the 2 objects would be refused"):
        apply.preflight(Scripted({}, error(refused)), planned, False)


@pytest.mark.parametrize("status", [401, 403, 503])
def test_a_refusal_that_is_not_the_inputs_is_raised_as_it_is(status):
    planned = [apply.Planned({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}, CONFIG_MAPS, "ns")]
    with pytest.raises(type(error(status))):
        apply.preflight(Scripted(error(status)), planned, False)


class Writes:
    """A client whose writes all fail with `failure`."""

    def __init__(self, failure):
        self.failure = failure

    def write(self, *_args, **_options):
        raise self.failure


@pytest.mark.parametrize("action", ["map_namespace", "create"])
def test_a_sync_write_that_someone_made_first_is_nothing_to_do(action):
    operation = Operation(CONTROL_PLANE, action, "instances", "ns", "x", {"metadata": {"name": "x"}})
    resources = {"instances": SECRETS}
    assert sync.execute(operation, {CONTROL_PLANE: Writes(error(409))}, resources, "cluster-ns") is False
    with pytest.raises(Forbidden):
        sync.execute(operation, {CONTROL_PLANE: Writes(error(403))}, resources, "cluster-ns")


@pytest.mark.parametrize("status, taken", [(409, True), (422, True), (403, False), (503, False)])
def test_a_lease_write_loses_to_a_change_made_first_only(status, taken):
    lease = runtime.Lease(Writes(error(status)), "ns", "lease", "me")
    if taken:
        assert lease._write("PUT", {}) is False  # pylint: disable=protected-access
    else:
        with pytest.raises(type(error(status))):
            lease._write("PUT", {})  # pylint: disable=protected-access


@pytest.mark.parametrize("failure, reason, fragment", [
    (error(401), "ProviderUnauthorized", "refuses this consumer's credentials"),
    (error(403), "ProviderUnauthorized", "Cannot do it (403)."),
    (Unavailable("Cannot reach it."), "ProviderUnreachable", "Cannot reach it."),
    (error(500), "ProviderUnreachable", "Cannot do it (500)."),
])
def test_a_binding_whose_control_plane_refuses_or_cannot_be_reached_says_which(monkeypatch, failure, reason, fragment):
    def unreachable(*_args):
        raise failure

    monkeypatch.setattr(sync, "BoundApi", unreachable)
    seen = []
    monkeypatch.setattr(Konnector, "unserved", lambda self, app, binding, problem: seen.append(problem) or 0)
    binding = {"metadata": {"name": "b"}}
    assert Konnector().sync_binding(None, binding, None, None) == (0, False)
    assert seen[0][:2] == ("Connected", reason) and fragment in seen[0][2]


def test_cluster_info_reads_a_missing_api_as_unserved_and_a_forbidden_namespace_as_unknown():
    assert klutch_cluster_info.served(Scripted(error(404)), "klutch.anynines.com/v1alpha1") is False
    with pytest.raises(Unauthorized):
        klutch_cluster_info.served(Scripted(error(401)), "klutch.anynines.com/v1alpha1")
    assert klutch_cluster_info.readable_namespace(Scripted(error(403)), "klutch-bind") is None
    with pytest.raises(Unauthorized):
        klutch_cluster_info.readable_namespace(Scripted(error(401)), "klutch-bind")
