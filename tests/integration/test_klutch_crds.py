"""Our Klutch v1alpha1 CRDs accept what Klutch writes and enforce Klutch's validation rules."""

import copy
from pathlib import Path

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s import manifests
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import NAMESPACES

EXAMPLES = manifests.load(src=str(Path(__file__).parent / "fixtures" / "klutch-examples.yaml"))


@pytest.fixture(scope="module")
def cp(klutch_apis):
    for name in ("crossplane-system", "cluster-abcde", "klutch-bind"):
        klutch_apis.apply(NAMESPACES, {"metadata": {"name": name}})
    return klutch_apis


def resource(cp, obj):
    return cp.resource_for(obj["apiVersion"], obj["kind"])


def example(kind, name=None):
    """A copy of the first example of `kind` (named `name`, if given)."""
    return copy.deepcopy(next(obj for obj in EXAMPLES
                              if obj["kind"] == kind and name in (None, obj["metadata"]["name"])))


@pytest.mark.parametrize("manifest", EXAMPLES, ids=lambda obj: f"{obj['kind']}-{obj['metadata']['name']}")
def test_every_example_applies(cp, manifest):
    stored = cp.apply(resource(cp, manifest), manifest).after
    assert set(manifest["spec"]) <= set(stored["spec"]), "no field of the example was pruned"


def test_server_fills_klutchs_defaults(cp):
    template = example("APIServiceExportTemplate", "servicebindings")
    claim = cp.apply(resource(cp, template), template).after["spec"]["permissionClaims"][0]
    assert claim["selector"] == {"names": ["*"], "namespaces": ["*"], "owner": "Provider"}
    assert claim["onConflict"] == {"recreateWhenConsumerSideDeleted": True}
    assert claim["read"] == {}
    request = example("APIServiceExportRequest")
    assert cp.apply(resource(cp, request), request).after["status"] == {"phase": "Pending"}


def test_statuses_klutch_writes_are_accepted(cp):
    binding = example("ClusterBinding")
    kind = resource(cp, binding)
    cp.apply(kind, binding)
    status = {"lastHeartbeatTime": "2026-11-25T10:00:00Z", "heartbeatInterval": "5m0s", "konnectorVersion": "v1.4.0",
              "conditions": [{"type": "Healthy", "status": "True", "severity": "", "lastTransitionTime":
                              "2026-11-25T10:00:00Z", "reason": "", "message": ""}]}
    stored = cp.request("PATCH", kind.path("cluster-abcde", "cluster", "status"), "patch", "ClusterBinding status",
                        body={"status": status}, content_type="application/merge-patch+json")
    assert stored["status"]["heartbeatInterval"] == "5m0s"
    assert stored["status"]["conditions"][0]["type"] == "Healthy"


INVALID = [
    ("export-name", "APIServiceExport", lambda o: o["metadata"].update(name="other.anynines.com"),
     "informerScope is immutable"),
    ("cluster-scope-without-isolation", "APIServiceExport",
     lambda o: o["spec"].update(scope="Cluster", informerScope="Cluster"),
     "clusterScopedIsolation must be defined for cluster-scoped resources"),
    ("cluster-scope-namespaced-informer", "APIServiceExport",
     lambda o: o["spec"].update(scope="Cluster", clusterScopedIsolation="Prefixed"),
     "informerScope must be Cluster for cluster-scoped resources"),
    ("clusterbinding-name", "ClusterBinding", lambda o: o["metadata"].update(name="other"),
     "cluster binding name should be cluster"),
    ("adopt-and-donate", "APIServiceExportTemplate",
     lambda o: o["spec"]["permissionClaims"][0].update(autoAdopt=True, autoDonate=True),
     "donate and adopt are mutually exclusive"),
    ("owner-enum", "APIServiceExportTemplate",
     lambda o: o["spec"]["permissionClaims"][0].update(selector={"owner": "Nobody"}),
     'Unsupported value: "Nobody"'),
    ("resource-pattern", "APIServiceExportTemplate",
     lambda o: o["spec"]["APIServiceSelector"].update(resource="Service_Bindings"),
     "spec.APIServiceSelector.resource in body should match"),
    ("empty-request", "APIServiceExportRequest", lambda o: o["spec"].update(resources=[]),
     "spec.resources: Invalid value: 0: spec.resources in body should have at least 1 items"),
    ("binding-key", "APIServiceBinding", lambda o: o["spec"]["kubeconfigSecretRef"].update(key="config"),
     'Unsupported value: "config"'),
]


@pytest.mark.parametrize("case, kind, change, message", INVALID, ids=[case[0] for case in INVALID])
def test_klutch_validation_rules_are_enforced(cp, case, kind, change, message):
    obj = example(kind, "servicebindings" if kind == "APIServiceExportTemplate" else None)
    change(obj)
    with pytest.raises(ClusterError) as error:
        cp.apply(resource(cp, obj), obj)
    assert message in str(error.value), case


@pytest.mark.parametrize("kind, field, change, message", [
    ("APIServiceBinding", "kubeconfigSecretRef", lambda o: o["spec"]["kubeconfigSecretRef"].update(name="other"),
     "kubeconfigSecretRef is immutable"),
    ("ClusterBinding", "kubeconfigSecretRef", lambda o: o["spec"]["kubeconfigSecretRef"].update(name="other"),
     "kubeconfigSecretRef is immutable"),
    ("APIServiceExportRequest", "resources", lambda o: o["spec"]["resources"][0].update(versions=["v2"]),
     "resources are immutable"),
    ("APIServiceExport", "informerScope", lambda o: o["spec"].update(informerScope="Cluster"),
     "informerScope is immutable"),
])
def test_immutable_fields(cp, kind, field, change, message):
    base = example(kind)
    cp.apply(resource(cp, base), base)
    changed = example(kind)
    change(changed)
    with pytest.raises(ClusterError) as error:
        cp.apply(resource(cp, changed), changed)
    assert message in str(error.value), field
