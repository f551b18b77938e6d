"""The sample data services shipped with the collection, on the lab's real Crossplane.

The role builds them into a package, pushes it to the lab's registry and installs it
(the sample_dataservices fixture); these tests use the APIs it published.
"""

import base64

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import condition_holds
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CONFIG_MAPS,
    NAMESPACES,
    Resource,
    SECRETS,
)

POSTGRESQL = Resource("samples.klutch.bind/v1", "PostgresqlInstance", "postgresqlinstances")
MESSAGING = Resource("samples.klutch.bind/v1", "MessagingInstance", "messaginginstances")
NAMESPACE = "sample-claims"


@pytest.fixture(scope="module")
def cp(control_plane, sample_dataservices):
    assert sample_dataservices.runs["first"].returncode == 0, sample_dataservices.runs["first"].stdout
    client = ClusterClient.from_params({"kubeconfig": str(control_plane.admin_kubeconfig)}, environ={})
    client.apply(NAMESPACES, {"metadata": {"name": NAMESPACE}})
    return client


def secret_data(secret):
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


@pytest.mark.parametrize("kind, name, spec, keys, scheme", [
    (POSTGRESQL, "orders", {"service": "postgresql-17", "plan": "postgresql-single-small"},
     {"host", "port", "username", "password", "database", "uri"}, "postgresql://"),
    (MESSAGING, "events", {"service": "messaging-4.1", "plan": "messaging-cluster-small"},
     {"host", "port", "username", "password", "vhost", "uri"}, "amqp://"),
])
def test_a_claim_is_ready_with_the_promised_secret_and_its_objects_go_with_it(cp, kind, name, spec, keys, scheme):
    cp.apply(kind, {"metadata": {"name": name, "namespace": NAMESPACE},
                    "spec": dict(spec, writeConnectionSecretToRef={"name": f"{name}-creds"})})
    claim = cp.wait(kind, name, NAMESPACE, condition_holds("Ready"), 90, "Ready")
    assert claim["status"]["instance"]["state"] == "running"
    assert claim["status"]["instance"]["plan"] == spec["plan"]
    secret = cp.wait(SECRETS, f"{name}-creds", NAMESPACE, lambda obj: obj is not None, 30, "published")
    data = secret_data(secret)
    assert set(data) == keys
    assert data["uri"].startswith(f"{scheme}{name}:{data['password']}@{data['host']}:{data['port']}/")
    composite = claim["spec"]["resourceRef"]["name"]
    server = f"{kind.plural[:-len('instances')]}-{composite}"
    assert cp.get(CONFIG_MAPS, server, "crossplane-system")["data"]["plan"] == spec["plan"]

    cp.delete(kind, name, NAMESPACE)
    cp.wait(CONFIG_MAPS, server, "crossplane-system", lambda obj: obj is None, 120, "deleted with its claim")


@pytest.mark.parametrize("start, change, message", [
    ("postgresql-single-medium", {"plan": "postgresql-single-small"},
     "Transition from bigger to smaller plan size is not supported."),
    ("postgresql-replica-small", {"plan": "postgresql-single-big"},
     "Migration from replica to single plans is not supported."),
    ("postgresql-single-small", {"service": "postgresql-15"}, "Service is an immutable field"),
])
def test_the_api_server_refuses_what_the_service_cannot_do(cp, start, change, message):
    name = "guarded-" + start.split("-", 1)[1]
    body = {"metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"service": "postgresql-17", "plan": start}}
    cp.apply(POSTGRESQL, body)
    try:
        with pytest.raises(ClusterError) as error:
            cp.apply(POSTGRESQL, dict(body, spec=dict(body["spec"], **change)))
        assert error.value.status == 422
        assert message in str(error.value)
        upgraded = cp.apply(POSTGRESQL, dict(body, spec=dict(body["spec"], plan=start.rsplit("-", 1)[0] + "-big")))
        assert upgraded.changed, "growing the plan is allowed"
    finally:
        cp.delete(POSTGRESQL, name, NAMESPACE)
