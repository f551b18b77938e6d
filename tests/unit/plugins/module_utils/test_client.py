"""Pure parts of the client: request paths and the retry policy."""

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s import client
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import (
    ClusterError,
    ConfigError,
    Conflict,
    Gone,
    Invalid,
    NotFound,
    Unavailable,
)
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    Resource,
    SECRETS,
)


def test_paths_without_discovery():
    assert SECRETS.path("ns", "s") == "/api/v1/namespaces/ns/secrets/s"
    assert SECRETS.collection_path() == "/api/v1/secrets"
    assert NAMESPACES.path("ignored", "n") == "/api/v1/namespaces/n"
    assert CUSTOM_RESOURCE_DEFINITIONS.path(None, "a.b") == "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/a.b"
    bindings = Resource("klutch.anynines.com/v1alpha1", "APIServiceBinding", "apiservicebindings")
    assert bindings.path("klutch-bind", "x", "status") == \
        "/apis/klutch.anynines.com/v1alpha1/namespaces/klutch-bind/apiservicebindings/x/status"


@pytest.mark.parametrize("name", ["", "  ", None, ".", "..", "../kube-system/configmaps/x", "a/b", "%2e%2e"])
def test_an_object_path_never_addresses_a_collection_or_another_path(name):
    with pytest.raises(ConfigError, match="Refusing to address"):
        SECRETS.path("ns", name)
    with pytest.raises(ConfigError, match="Refusing to address"):
        SECRETS.path(name, "s")


def test_a_namespaced_object_path_needs_its_namespace():
    with pytest.raises(ConfigError, match="without a namespace"):
        SECRETS.path(None, "s")
    with pytest.raises(ConfigError, match="empty namespace"):
        SECRETS.collection_path("")


def test_names_are_escaped_so_that_nothing_ends_the_path():
    assert SECRETS.path("ns", "a#b?c d") == "/api/v1/namespaces/ns/secrets/a%23b%3Fc%20d"


def test_descriptions():
    assert SECRETS.describe("s", "ns") == "Secret ns/s"
    assert NAMESPACES.describe("n") == "Namespace n"
    assert SECRETS.describe(namespace="ns") == "secrets in namespace ns"


@pytest.mark.parametrize("status, body", [(429, {}), (500, {}), (503, {}),
                                          (409, {"message": "object is being deleted: namespaces \"x\""})])
def test_transient_failures_are_retried_with_growing_backoff(status, body):
    delays = [client.retry_delay(attempt, status, body) for attempt in range(6)]
    assert all(delay is not None for delay in delays)
    assert delays == sorted(delays) and delays[0] < delays[-1] == client.BACKOFF_CAP


@pytest.mark.parametrize("status, body", [(400, {}), (401, {}), (403, {}), (404, {}), (422, {}),
                                          (409, {"message": "the object has been modified; please apply"}),
                                          (409, {"message": "Apply failed with 1 conflict"}),
                                          (409, {"message": "configmaps \"x\" already exists"})])
def test_permanent_failures_are_not_retried(status, body):
    assert client.retry_delay(0, status, body) is None


def test_retry_after_is_honoured_within_the_cap():
    assert client.retry_delay(0, 429, {}, retry_after="3") == 3.0
    assert client.retry_delay(0, 429, {}, retry_after="3600") == client.BACKOFF_CAP


def test_a_wrongly_typed_apply_is_not_retried():
    body = {"message": "failed to create typed patch object (/v1, Kind=X): .spec.size: expected numeric"}
    assert client.retry_delay(0, 500, body) is None


@pytest.mark.parametrize("host, no_proxy, bypass", [
    ("https://127.0.0.1:6443", "127.0.0.0/8", True),
    ("https://10.1.2.3", "10.0.0.0/8,example.com", True),
    ("https://api.example.com:6443", ".example.com", True),
    ("https://api.example.com", "example.com", True),
    ("https://api.other.org", "example.com,10.0.0.0/8", False),
    ("https://[::1]:6443", "::1", True),
    ("https://anything", "*", True),
    ("https://anything", "", False),
])
def test_no_proxy_matches_names_domains_and_networks(host, no_proxy, bypass):
    assert client._bypasses_proxy(host, no_proxy) is bypass  # pylint: disable=protected-access


def test_ca_data_reaches_tls_in_memory_and_garbage_is_named():
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import ClientConfiguration
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
    from klutch_lab import pki

    configuration = ClientConfiguration()
    configuration.host = "https://c:6443"
    configuration.ssl_ca_cert_data = pki.cert_pem(pki.CertificateAuthority.create("test-ca").cert).decode()
    pool = client.ClusterClient(configuration, "cluster c")._pool  # pylint: disable=protected-access
    context = pool.connection_pool_kw["ssl_context"]
    assert [item["subject"] for item in context.get_ca_certs()] == [((("commonName", "test-ca"),),)]
    configuration.ssl_ca_cert_data = "not a certificate"
    with pytest.raises(ConfigError, match="The CA data for cluster c holds no PEM certificate"):
        client.ClusterClient(configuration, "cluster c")


class Answer:
    """What urllib3 returns for a request, with only the fields the client reads."""

    def __init__(self, status, body=b"", headers=None):
        self.status, self.data, self.headers = status, body, headers or {}


class Pool:
    """A pool whose every request gets `outcome`: an Answer, or an exception raised."""

    def __init__(self, outcome):
        self.outcome = outcome

    def request(self, *args, **kwargs):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def failing_client(outcome):
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import ClientConfiguration

    configuration = ClientConfiguration()
    configuration.host = "https://c:6443"
    cluster = client.ClusterClient(configuration, "cluster c", retry_budget=0)
    cluster._pool = Pool(outcome)  # pylint: disable=protected-access
    return cluster


@pytest.mark.parametrize("status, body, kind", [
    (404, b'{"reason": "NotFound", "details": {"name": "s"}}', NotFound),
    (409, b'{"reason": "AlreadyExists", "message": "secrets \\"s\\" already exists"}', Conflict),
    (410, b'{"reason": "Expired"}', Gone),
    (422, b'{"reason": "Invalid"}', Invalid),
    (500, b'{"message": "failed to create typed patch object (/v1, Kind=Secret): .data: expected map"}', Invalid),
    (503, b"", Unavailable),
    (302, b"", ClusterError),
])
def test_an_answer_raises_the_class_of_its_status(status, body, kind):
    with pytest.raises(ClusterError) as raised:
        failing_client(Answer(status, body)).request("GET", "/api/v1/namespaces/n/secrets/s", "get", "Secret n/s")
    assert raised.value.__class__ is kind
    assert raised.value.status == (422 if kind is Invalid else status)
    assert raised.value.object_missing is (status == 404)
    assert str(raised.value).startswith("Cannot get Secret n/s on cluster c")


@pytest.mark.parametrize("failure, kind", [
    (client.urllib3.exceptions.NewConnectionError(None, "Connection refused"), Unavailable),
    (client.urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out."), Unavailable),
    (client.urllib3.exceptions.SSLError("certificate verify failed"), ClusterError),
])
def test_no_answer_is_unavailable_but_a_tls_failure_is_not(failure, kind):
    with pytest.raises(ClusterError) as raised:
        failing_client(failure).request("GET", "/version", "read", "the server version")
    assert raised.value.__class__ is kind and raised.value.status is None


@pytest.mark.parametrize("value, budget", [(None, 60.0), ("", 60.0), (" ", 60.0), ("0", 0.0), ("2.5", 2.5),
                                           ("3600", 3600.0)])
def test_the_retry_budget_comes_from_the_environment_or_defaults_to_a_minute(value, budget):
    environ = {} if value is None else {"KLUTCH_BIND_RETRY_BUDGET": value}
    assert client.retry_budget_from(environ) == budget


@pytest.mark.parametrize("value", ["-1", "soon", "nan", "inf", "3601"])
def test_a_retry_budget_that_is_no_number_of_seconds_is_refused_by_name(value):
    with pytest.raises(ConfigError) as refused:
        client.retry_budget_from({"KLUTCH_BIND_RETRY_BUDGET": value})
    assert str(refused.value).startswith(f"KLUTCH_BIND_RETRY_BUDGET={value!r} is not a number of seconds")
