"""Crossplane in the lab is real: an XRD offers a claim, a claim composes objects and a Secret."""

import base64
from pathlib import Path

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s import manifests
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import condition_holds
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import CONFIG_MAPS, Resource, SECRETS
from ansible_collections.klutch.bind.plugins.module_utils.kinds import COMPOSITE_RESOURCE_DEFINITIONS, COMPOSITIONS
from klutch_lab import Lab, LabError

SERVICE = manifests.load(src=str(Path(__file__).parent / "fixtures" / "widget-service.yaml"))
WIDGETS = Resource("test.example.com/v1", "Widget", "widgets")


@pytest.fixture(scope="module")
def cp(control_plane, client_for):
    client = client_for(control_plane.admin_kubeconfig)
    xrd, composition = SERVICE
    client.apply(COMPOSITE_RESOURCE_DEFINITIONS, xrd)
    client.apply(COMPOSITIONS, composition)
    client.wait(COMPOSITE_RESOURCE_DEFINITIONS, xrd["metadata"]["name"], None,
                lambda obj: condition_holds("Established")(obj) and condition_holds("Offered")(obj), 60,
                "Established and Offered")
    return client


def test_crossplane_runs_on_the_control_plane_only(lab, control_plane, app):
    assert {"crossplane", "provider-kubernetes", "registry"} <= set(control_plane.processes)
    assert "crossplane" not in app.processes
    host = lab.inventory_data()["all"]["children"]["control_plane"]["hosts"]["control-plane"]
    assert host["crossplane_registry"].startswith("localhost:")
    assert control_plane.http_status(int(host["crossplane_registry"].split(":")[1]), "/v2/") == 200


def test_a_claim_becomes_ready_with_its_connection_secret_and_its_objects_go_with_it(cp, namespace_on_cp):
    cp.apply(WIDGETS, {"metadata": {"name": "w1", "namespace": namespace_on_cp},
                       "spec": {"size": 3, "writeConnectionSecretToRef": {"name": "w1-conn"}}})
    cp.wait(WIDGETS, "w1", namespace_on_cp, condition_holds("Ready"), 90, "Ready")
    secret = cp.wait(SECRETS, "w1-conn", namespace_on_cp, lambda obj: obj is not None, 30, "published")
    assert {key: base64.b64decode(value).decode() for key, value in secret["data"].items()} == {
        "host": "widget.example.com", "password": "s3cret"}
    composed = cp.get(CONFIG_MAPS, "widget-w1", "default")
    assert composed["data"] == {"size": "3"}

    cp.delete(WIDGETS, "w1", namespace_on_cp)
    cp.wait(CONFIG_MAPS, "widget-w1", "default", lambda obj: obj is None, 120, "deleted with its claim")


@pytest.fixture
def namespace_on_cp(cp):
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import NAMESPACES

    cp.apply(NAMESPACES, {"metadata": {"name": "claims"}})
    return "claims"


def test_a_second_lab_with_crossplane_is_refused_while_one_runs(lab, tmp_path):
    with pytest.raises(LabError) as error:
        Lab(tmp_path / "second", progress=lambda line: None).up(["control-plane"])
    assert "provider-kubernetes needs ports 8080 and 9443" in str(error.value)
    assert "--crossplane ''" in str(error.value)
    assert list(tmp_path.iterdir()) == [], "refused before anything started"
