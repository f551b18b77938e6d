"""A new consumer namespace: a name derived from the identity, created so that a race is seen."""

import itertools

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import Conflict
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import export, serve
from ansible_collections.klutch.bind.plugins.module_utils.plan import consumers

IDENTITY = "app-1#X1y2Z3"


def namespace_with(name, identity):
    return {"metadata": {"name": name, "uid": "uid-" + name, "annotations": {consumers.IDENTITY_ANNOTATION: identity}}}


class RacingControlPlane:
    """Namespaces created by others between our listing and our create: {name: identity}."""

    label = "cluster test"

    def __init__(self, created_meanwhile):
        self.created_meanwhile = created_meanwhile
        self.posted = []

    def write(self, method, resource, body):
        name = body["metadata"]["name"]
        self.posted.append(name)
        if name in self.created_meanwhile:
            raise Conflict("namespaces %r already exists" % name, status=409, reason="AlreadyExists")
        return dict(body, metadata=dict(body["metadata"], uid="uid-" + name))

    def get(self, resource, name, namespace=None):
        return namespace_with(name, self.created_meanwhile[name]) if name in self.created_meanwhile else None


def candidates(count):
    names = consumers.consumer_namespace_names(IDENTITY)
    return list(itertools.islice(names, count))


def test_a_name_another_identity_holds_or_takes_meanwhile_gives_the_next_candidate():
    first, second, third = candidates(3)
    client = RacingControlPlane({second: "app-2#X1y2Z3"})
    consumer = serve.Consumer(None, {first: namespace_with(first, "app-3#X1y2Z3")})
    run = export.Run(client, False, None, None)
    assert export.create_namespace(run, consumer, IDENTITY)[0] == third
    assert client.posted == [second, third], "the listed one is skipped, the raced one tried once"
    assert [entry["action"] for entry in run.results] == ["created"]


def test_a_namespace_that_a_run_for_the_same_consumer_created_meanwhile_is_used():
    first = candidates(1)[0]
    client = RacingControlPlane({first: IDENTITY})
    run = export.Run(client, False, None, None)
    name, found = export.create_namespace(run, serve.Consumer(None, {}), IDENTITY)
    assert (name, found["metadata"]["uid"]) == (first, "uid-" + first)
    assert client.posted == [first] and run.results == []
