"""Publishing a data service package to a private registry: TLS under a CA of its own, token auth, and the
credentials from variables or from a Docker configuration file, for the read and for crank's push alike."""

import base64
import json

import pytest

from ansible_collections.klutch.bind.plugins.module_utils import oci
from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER
from registry_proxy import PrivateRegistry

from test_klutch_dataservice import SAMPLE_XRDS, SOURCE

USERNAME, PASSWORD = "publisher", "pw-0f3a9c1e"
PRIVATE_GROUP = "private.samples.example"


@pytest.fixture(scope="module")
def private(control_plane, crossplane, run_task, tmp_path_factory):
    with PrivateRegistry(tmp_path_factory.mktemp("private-registry"), control_plane.record["ports"]["registry"],
                         USERNAME, PASSWORD) as registry:
        registry.crank = crossplane["crank"]
        yield registry
    # Crossplane cannot pull from it (it does not trust the lab's CA): the Configuration goes again.
    gone, output = run_task("klutch.bind.klutch_dataservice", {
        "name": "private-samples", "package": f"{registry.address}/klutch-bind/private-samples:v1",
        "kubeconfig": str(control_plane.admin_kubeconfig), "state": "absent"})
    assert not gone.get("failed"), output


def publish(control_plane, private, tag, **options):
    return dict({"name": "private-samples", "src": str(SOURCE), "kubeconfig": str(control_plane.admin_kubeconfig),
                 "crank": private.crank,
                 "package": f"{private.address}/klutch-bind/private-samples:{tag}", "wait": False,
                 "registry_ca_path": private.ca_path,
                 "apis": [{"name": xrd, "group": PRIVATE_GROUP} for xrd in SAMPLE_XRDS]}, **options)


def in_lab_registry(crossplane, tag):
    """Whether the registry behind the private one holds the package (read there directly)."""
    return oci.Registry().manifest(oci.Reference(f"{crossplane['registry']}/klutch-bind/private-samples:{tag}"))


def test_credentials_in_variables_push_and_read_the_package_and_never_show(control_plane, crossplane, private, run_task):
    credentials = {"registry_username": USERNAME, "registry_password": PASSWORD}
    first, output = run_task("klutch.bind.klutch_dataservice", publish(control_plane, private, "v1", **credentials))
    assert not first.get("failed") and first["package"]["pushed"] and first["changed"], output
    assert in_lab_registry(crossplane, "v1") is not None
    again, output = run_task("klutch.bind.klutch_dataservice", publish(control_plane, private, "v1", **credentials))
    assert not again.get("failed") and not again["package"]["pushed"] and not again["changed"], output
    assert again["package"]["config_digest"] == first["package"]["config_digest"]
    assert PASSWORD not in output and base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode() not in output


def test_credentials_in_a_docker_config_file_push_and_read_the_package(control_plane, crossplane, private, run_task,
                                                                       tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {private.address: {
        "auth": base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()}}}))
    config.chmod(0o600)
    known, output = run_task("klutch.bind.klutch_dataservice",
                             publish(control_plane, private, "v1", registry_config=str(config)))
    assert not known.get("failed") and not known["package"]["pushed"], output
    pushed, output = run_task("klutch.bind.klutch_dataservice",
                              publish(control_plane, private, "v2", registry_config=str(config)))
    assert not pushed.get("failed") and pushed["package"]["pushed"], output
    assert in_lab_registry(crossplane, "v2") is not None


def test_without_verify_package_the_registry_is_not_read_and_the_package_is_pushed_each_run(
        control_plane, private, run_task):
    refused_before = private.refused
    for _run in range(2):
        pushed, output = run_task("klutch.bind.klutch_dataservice", publish(
            control_plane, private, "v1", verify_package=False, registry_username=USERNAME, registry_password=PASSWORD))
        assert not pushed.get("failed") and pushed["package"]["pushed"] and pushed["changed"], output
    assert private.refused > refused_before, "crank's push met the challenge and answered it"


@pytest.mark.parametrize("options, expected", [
    ({}, "refuses to let package {package} be read (401) with no credentials"),
    ({"registry_username": USERNAME, "registry_password": "wrong"},
     "refuses to let package {package} be read (401) with the credentials given"),
    ({"registry_username": USERNAME, "registry_password": PASSWORD, "registry_ca_path": None}, "registry_ca_path"),
])
def test_a_registry_that_refuses_is_named_with_the_fix_and_nothing_is_written(
        control_plane, private, run_task, audit, options, expected):
    args = publish(control_plane, private, "v3")
    args.update(options)
    args = {key: value for key, value in args.items() if value is not None}
    start = now()
    refused, output = run_task("klutch.bind.klutch_dataservice", args)
    assert refused.get("failed"), output
    assert expected.format(package=args["package"]) in refused["msg"] and "Traceback" not in output
    assert audit(control_plane).count_writes(since=start, user=ADMIN_USER) == 0
