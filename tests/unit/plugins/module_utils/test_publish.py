"""Publishing a data service: what crank is given to push with, and what refuses before a build."""

import base64
import json
import os
import stat

import pytest

from ansible_collections.klutch.bind.plugins.module_utils import oci
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import publish

REFERENCE = oci.Reference("registry.example.com/team/db:v1")


def options(**given):
    params = {"registry_username": None, "registry_password": None, "registry_config": None, "registry_ca_path": None}
    params.update(given)
    return params


def test_credentials_in_variables_become_a_private_docker_config_for_the_push(tmp_path):
    environment = publish.crank_environment(options(registry_username="ops", registry_password="s3cret"), REFERENCE,
                                            str(tmp_path))
    config = os.path.join(environment["DOCKER_CONFIG"], "config.json")
    assert environment == {"DOCKER_CONFIG": str(tmp_path / "docker")}
    assert stat.S_IMODE(os.stat(environment["DOCKER_CONFIG"]).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600
    with open(config) as handle:
        auth = json.load(handle)["auths"]["registry.example.com"]["auth"]
    assert base64.b64decode(auth) == b"ops:s3cret"


def test_a_docker_config_file_is_linked_and_a_ca_is_handed_on(tmp_path):
    given = tmp_path / "given.json"
    given.write_text("{}")
    environment = publish.crank_environment(options(registry_config=str(given), registry_ca_path="/ca.pem"), REFERENCE,
                                            str(tmp_path))
    assert environment == {"DOCKER_CONFIG": str(tmp_path / "docker"), "SSL_CERT_FILE": "/ca.pem"}
    assert os.readlink(tmp_path / "docker" / "config.json") == str(given)


def test_without_credentials_crank_uses_its_own_docker_config(tmp_path):
    assert publish.crank_environment(options(), REFERENCE, str(tmp_path)) == {}
    assert not os.listdir(tmp_path)


class Host:
    """The module's host with nothing on its PATH."""

    @staticmethod
    def get_bin_path(_name):
        return None


def test_a_build_without_crank_names_the_option(tmp_path):
    with pytest.raises(ConfigError, match="none is on the PATH. Install it on the host that runs the module, or give "
                                          "its path in the crank option"):
        publish.crank_path(Host(), None, str(tmp_path))
    with pytest.raises(ConfigError, match="/nonexistent/crank is not executable"):
        publish.crank_path(Host(), "/nonexistent/crank", str(tmp_path))
