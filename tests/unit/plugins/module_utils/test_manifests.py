"""Manifest loading: every object checked before anything reaches a cluster."""

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s import manifests
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError

CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"


def test_multi_document_text_and_lists_are_flattened():
    text = CONFIGMAP + "---\n---\napiVersion: v1\nkind: List\nitems:\n- " + \
        "{apiVersion: v1, kind: Secret, metadata: {name: b}}\n"
    assert [obj["kind"] for obj in manifests.load(text)] == ["ConfigMap", "Secret"]


def test_dicts_and_lists_of_dicts():
    one = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}}
    assert manifests.load(one) == [one]
    assert manifests.load([one, one]) == [one, one]


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    broken = tmp_path / "xrd.yaml"
    broken.write_text(CONFIGMAP + "data: [unclosed\n")
    with pytest.raises(ConfigError) as error:
        manifests.load(src=str(broken))
    assert str(error.value).startswith(f"{broken} is not valid YAML at line")


def test_missing_fields_are_named():
    with pytest.raises(ConfigError, match=r"definition, document 1 \(kind ConfigMap\) lacks metadata.name: add it."):
        manifests.load("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n")
    with pytest.raises(ConfigError, match="lacks apiVersion"):
        manifests.load({"kind": "ConfigMap", "metadata": {"name": "a"}})


def test_a_directory_is_read_in_name_order(tmp_path):
    (tmp_path / "b.yaml").write_text(CONFIGMAP.replace("name: a", "name: second"))
    (tmp_path / "a.yml").write_text(CONFIGMAP.replace("name: a", "name: first"))
    (tmp_path / "notes.txt").write_text("ignored")
    assert [obj["metadata"]["name"] for obj in manifests.load(src=str(tmp_path))] == ["first", "second"]


def test_empty_or_missing_src(tmp_path):
    with pytest.raises(ConfigError, match="holds no .yaml"):
        manifests.load(src=str(tmp_path))
    with pytest.raises(ConfigError, match="does not exist"):
        manifests.load(src=str(tmp_path / "nope"))


def test_kinds_a_crd_serves():
    crd = {"spec": {"group": "example.com", "names": {"kind": "Gizmo"}, "scope": "Cluster",
                    "versions": [{"name": "v1"}, {"name": "v2", "served": False}]}}
    assert manifests.served_by(crd) == {("example.com/v1", "Gizmo"): False}


def test_kinds_an_xrd_serves_are_its_composite_and_its_claim():
    xrd = {"kind": "CompositeResourceDefinition",
           "spec": {"group": "acme.example", "names": {"kind": "XDatabase"}, "claimNames": {"kind": "Database"},
                    "versions": [{"name": "v1", "served": True}]}}
    assert manifests.served_by(xrd) == {("acme.example/v1", "XDatabase"): False, ("acme.example/v1", "Database"): True}


@pytest.mark.parametrize("change, problem", [
    ({"data": ["x"]}, "data is a list, not a mapping"),
    ({"stringData": {"k": 5}}, "stringData.k is a number, not a string"),
    ({"apiVersion": 1}, "apiVersion is a number"),
    ({"metadata": {"name": "s", "namespace": ["a"]}}, "metadata.namespace is a list"),
    ({"metadata": {"name": "s", "labels": "app=x"}}, "metadata.labels is a string"),
])
def test_malformed_objects_are_refused_before_any_request(change, problem):
    secret = dict({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}, **change)
    with pytest.raises(ConfigError, match=problem):
        manifests.load(secret)


def test_secret_values_are_found_however_malformed_the_secret():
    text = "kind: Secret\ndata: [one, two]\n---\nkind: List\nitems:\n  - kind: Secret\n    stringData: {k: three}\n"
    assert manifests.secret_values(text) == {"one", "two", "three"}
    assert manifests.secret_values("kind: [unclosed") == set()
