"""Package references read as Crossplane reads them."""

import pytest

from ansible_collections.klutch.bind.plugins.module_utils import oci
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError


@pytest.mark.parametrize("text, registry, repository, version, scheme", [
    ("xpkg.upbound.io/acme/db:v1.0.0", "xpkg.upbound.io", "acme/db", "v1.0.0", "https"),
    ("acme/db:v1", oci.DEFAULT_REGISTRY, "acme/db", "v1", "https"),
    ("localhost:5000/acme/db:v1", "localhost:5000", "acme/db", "v1", "http"),
    ("127.0.0.1:5000/db@sha256:abc", "127.0.0.1:5000", "db", "sha256:abc", "http"),
    ("10.1.2.3/team/db:v2", "10.1.2.3", "team/db", "v2", "https"),  # private is not local: say registry_insecure
    ("registry.example.com:8443/a/b/c:v3", "registry.example.com:8443", "a/b/c", "v3", "https"),
])
def test_references(text, registry, repository, version, scheme):
    reference = oci.Reference(text)
    assert (reference.registry, reference.repository, reference.version, reference.scheme()) == (
        registry, repository, version, scheme)
    assert reference.manifest_url() == f"{scheme}://{registry}/v2/{repository}/manifests/{version}"
    assert reference.scheme(insecure=True) == "http"


@pytest.mark.parametrize("text", ["acme/db", "localhost:5000/acme/db", "Acme/DB:v1", ""])
def test_a_reference_without_a_tag_or_with_a_bad_name_is_refused(text):
    with pytest.raises(ConfigError, match="not a valid OCI reference with a tag or digest"):
        oci.Reference(text)


def test_the_config_digest_identifies_an_image_and_an_index_is_refused():
    reference = oci.Reference("localhost:5000/acme/db:v1")
    assert oci.config_digest({"config": {"digest": "sha256:1"}, "layers": []}, reference) == "sha256:1"
    assert oci.config_digest(None, reference) is None
    with pytest.raises(ConfigError, match="holds an image index"):
        oci.config_digest({"manifests": []}, reference)
