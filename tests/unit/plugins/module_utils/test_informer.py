"""The agents' cache of one kind: what a list and the watch events leave in it, and what it reports."""

from ansible_collections.klutch.bind.plugins.module_utils.agent.runtime import CachedClient, Informer
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import holds
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import NAMESPACES, SECRETS


def obj(name, version, namespace=None):
    metadata = {"name": name, "resourceVersion": version}
    if namespace:
        metadata["namespace"] = namespace
    return {"metadata": metadata}


def test_a_new_list_reports_only_what_changed_or_went_meanwhile():
    heard = []
    informer = Informer(None, NAMESPACES, on_change=lambda found: heard.append(found["metadata"]["name"]))
    assert not informer.synced.is_set()
    informer.replace([obj("a", "1"), obj("b", "1"), obj("c", "1")])
    assert informer.synced.is_set() and heard == ["a", "b", "c"]
    heard.clear()
    informer.replace([obj("a", "1"), obj("b", "2"), obj("d", "1")])  # after a 410: b changed, c went, d came
    assert heard == ["b", "c", "d"]
    assert [found["metadata"]["name"] for found in informer.items()] == ["a", "b", "d"]


def test_watch_events_keep_the_cache_by_namespace_and_name():
    informer = Informer(None, SECRETS)
    informer.replace([obj("kubeconfig", "1", "cluster-a"), obj("kubeconfig", "1", "cluster-b")])
    informer.update("MODIFIED", obj("kubeconfig", "2", "cluster-a"))
    informer.update("DELETED", obj("kubeconfig", "3", "cluster-b"))
    assert informer.get("kubeconfig", "cluster-a")["metadata"]["resourceVersion"] == "2"
    assert informer.get("kubeconfig", "cluster-b") is None
    assert [found["metadata"]["namespace"] for found in informer.items("cluster-a")] == ["cluster-a"]


def test_an_object_holds_what_it_already_has_and_a_shorter_list_is_a_change():
    current = {"metadata": {"name": "x", "uid": "u", "labels": {"a": "1"}}, "rules": [{"verbs": ["get", "list"]}]}
    assert holds(current, {"metadata": {"name": "x"}, "rules": [{"verbs": ["get", "list"]}]})
    assert not holds(current, {"metadata": {"name": "x", "labels": {"a": "2"}}})
    assert not holds(current, {"rules": [{"verbs": ["get"]}]})
    assert not holds(current, {"rules": []})
    assert not holds(None, {"metadata": {"name": "x"}})


def test_a_write_is_read_back_until_the_watch_brings_something_newer():
    informer = Informer(None, SECRETS)
    informer.replace([obj("a", "5", "ns"), obj("b", "9", "ns")])
    informer.written(obj("a", "7", "ns"))
    informer.written(obj("a", "6", "ns"))  # an answer older than what is held
    assert informer.get("a", "ns")["metadata"]["resourceVersion"] == "7"
    informer.written(obj("b", "8", "ns"), deleted=True)  # deleted before the version now held was written
    assert informer.get("b", "ns") is not None
    informer.written(obj("a", "7", "ns"), deleted=True)
    assert informer.get("a", "ns") is None


class Asked:
    """A client that answers every read with nothing and notes it."""

    dry_run = False

    def __init__(self):
        self.asked = []

    def get(self, resource, name, namespace=None):
        self.asked.append(("get", resource.plural, namespace, name))

    def list(self, resource, namespace=None, label_selector=None, field_selector=None):
        self.asked.append(("list", resource.plural, namespace, field_selector))
        return [], "1"


def test_a_cached_client_reads_what_a_synced_informer_covers_and_asks_the_server_the_rest():
    server = Asked()
    cached = CachedClient(server)
    everywhere, named = cached.informer(SECRETS), cached.informer(SECRETS, "a", "metadata.name=kubeconfig")
    cached.get(SECRETS, "x", "a")
    assert server.asked == [("get", "secrets", "a", "x")], "nothing is synced yet"
    named.replace([obj("kubeconfig", "1", "a")])
    assert cached.get(SECRETS, "kubeconfig", "a")["metadata"]["name"] == "kubeconfig"
    cached.get(SECRETS, "other", "a")
    cached.list(SECRETS, "a")
    assert server.asked[1:] == [("get", "secrets", "a", "other"), ("list", "secrets", "a", None)]
    everywhere.replace([obj("x", "1", "a"), obj("y", "1", "b")])
    assert [found["metadata"]["name"] for found in cached.list(SECRETS, "b")[0]] == ["y"]
    assert cached.get(SECRETS, "other", "a") is None and len(server.asked) == 3


def test_a_remembered_kind_is_read_again_only_after_its_time():
    server = Asked()
    cached = CachedClient(server, {"namespaces": 600})
    cached.get(NAMESPACES, "cluster-a")
    cached.get(NAMESPACES, "cluster-a")
    assert server.asked == [("get", "namespaces", None, "cluster-a")]


def test_a_watch_event_older_than_the_agents_own_later_write_leaves_the_write():
    informer = Informer(None, SECRETS)
    informer.replace([obj("a", "5", "ns")])
    informer.written(obj("a", "9", "ns"))  # this agent's update, answered before the watch brings version 7
    informer.update("MODIFIED", obj("a", "7", "ns"))
    assert informer.get("a", "ns")["metadata"]["resourceVersion"] == "9"
    informer.update("MODIFIED", obj("a", "9", "ns"))
    informer.update("DELETED", obj("a", "10", "ns"))
    assert informer.get("a", "ns") is None
