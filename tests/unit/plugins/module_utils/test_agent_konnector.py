"""The konnector agent's clients for the control plane: one per kubeconfig while bindings use it."""

import argparse

from ansible_collections.klutch.bind.plugins.module_utils.agent.konnector import Konnector


def kubeconfig(token):
    return {"apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "cp", "cluster": {"server": "https://127.0.0.1:6443"}}],
            "users": [{"name": "u", "user": {"token": token}}],
            "contexts": [{"name": "c", "context": {"cluster": "cp", "user": "u", "namespace": "cluster-abcde"}}]}


class NoBindings:
    def list(self, resource, namespace=None, **_options):
        return [], "1"


def test_a_rotated_out_kubeconfigs_client_goes_after_the_first_pass_that_does_not_use_it():
    konnector = Konnector()
    old = konnector.connect(kubeconfig("old"))
    assert konnector.connect(kubeconfig("old")) is old, "one client per kubeconfig"
    konnector.forget_unused_connections()
    assert list(konnector.control_planes.values()) == [old], "used in the pass: kept"

    new = konnector.connect(kubeconfig("new"))  # the next pass, after a rotation
    konnector.forget_unused_connections()
    assert list(konnector.control_planes.values()) == [new]

    konnector.sync(NoBindings(), argparse.Namespace(), lambda: True)  # the bindings are gone
    assert konnector.control_planes == {}
