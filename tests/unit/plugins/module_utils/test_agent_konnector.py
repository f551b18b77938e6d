"""The konnector agent's clients for the control plane, one per kubeconfig while bindings use it, and which
bindings a change wakes."""

import argparse

from ansible_collections.klutch.bind.plugins.module_utils.agent.konnector import WHOLE, Konnector
from ansible_collections.klutch.bind.plugins.module_utils.plan.sync import APP_CLUSTER, CONTROL_PLANE


def kubeconfig(token):
    return {"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "cp", "cluster": {"server": "https://127.0.0.1:6443"}}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "cp", "user": "u", "namespace": "cluster-abcde"}}]}


class NoBindings:
    def list(self, resource, namespace=None, **_options):
        return [], "1"


def test_a_rotated_out_kubeconfigs_client_goes_once_no_binding_uses_it():
    konnector = Konnector()
    old = konnector.connect(kubeconfig("old"))
    assert konnector.connect(kubeconfig("old")) is old, "one client per kubeconfig"
    konnector.connection["b"] = konnector.connection_of(old)
    konnector.keep_watches({}, {"b"})
    assert list(konnector.control_planes.values()) == [old], "its binding uses it: kept"

    new = konnector.connect(kubeconfig("new"))  # the binding's next pass, after a rotation
    konnector.connection["b"] = konnector.connection_of(new)
    konnector.keep_watches({}, {"b"})
    assert list(konnector.control_planes.values()) == [new]

    konnector.sync(NoBindings(), argparse.Namespace(resync=30), lambda: True)  # the bindings are gone
    assert konnector.control_planes == {}


def test_a_changed_object_wakes_its_binding_for_that_object_and_any_other_change_wakes_it_whole():
    konnector = Konnector()
    konnector.watches, konnector.everyone = {"a": {}, "b": {}}, False  # both had a whole pass
    listed = [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]
    instance = {"metadata": {"name": "x", "namespace": "shop"}}
    konnector.wake("a", "instances", APP_CLUSTER)(instance)
    konnector.wake("a", "secrets", CONTROL_PLANE)({"metadata": {"name": "x", "namespace": "cluster-abcde-shop"}})
    assert konnector.due(listed, resync=False) == [
        (listed[0], {("instances", APP_CLUSTER, "shop", "x"), ("secrets", CONTROL_PLANE, "cluster-abcde-shop", "x")})]
    assert konnector.due(listed, resync=False) == [], "nothing changed since"
    konnector.wake("a", "instances", APP_CLUSTER)(instance)
    konnector.wake("a")({"metadata": {"name": "postgresqlinstances.samples.klutch.bind"}})  # its export, say
    konnector.wake("a", "instances", APP_CLUSTER)(instance)
    assert konnector.due(listed, resync=False) == [(listed[0], WHOLE)]
    konnector.wake(None)({"metadata": {"name": "shop"}})  # an app namespace
    assert konnector.due(listed, resync=False) == [(listed[0], WHOLE), (listed[1], WHOLE)]
    assert konnector.due(listed, resync=True) == [(listed[0], WHOLE), (listed[1], WHOLE)]
    konnector.failing = {"b"}
    assert konnector.due(listed, resync=False) == [(listed[1], WHOLE)], "a failing binding is passed over whole"
