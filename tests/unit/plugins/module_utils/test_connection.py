"""Connection options: K8S_AUTH_* fallbacks, kubeconfig forms, context selection, secret hiding."""

import os

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import (
    AUTH_ARG_SPEC,
    kubeconfig_secrets,
    parse_kubeconfig,
    resolve_auth,
    select_context,
)
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "cp", "cluster": {"server": "https://cp:6443"}},
                 {"name": "app", "cluster": {"server": "https://app:6443"}}],
    "users": [{"name": "admin", "user": {"token": "s3cret-token", "client-key-data": "S0VZ"}}],
    "contexts": [{"name": "cp", "context": {"cluster": "cp", "user": "admin"}},
                 {"name": "app", "context": {"cluster": "app", "user": "admin"}}],
    "current-context": "cp",
}


def test_parameters_win_over_environment():
    settings = resolve_auth({"host": "https://param"}, {"K8S_AUTH_HOST": "https://env"})
    assert settings["host"] == "https://param"


@pytest.mark.parametrize("env, option, expected", [
    ({"K8S_AUTH_HOST": "https://env:6443"}, "host", "https://env:6443"),
    ({"K8S_AUTH_API_KEY": "tok"}, "api_key", "tok"),
    ({"K8S_AUTH_CONTEXT": "app"}, "context", "app"),
    ({"K8S_AUTH_VERIFY_SSL": "False"}, "validate_certs", False),
    ({"K8S_AUTH_VALIDATE_CERTS": "yes"}, "validate_certs", True),
    ({"K8S_AUTH_SSL_CA_CERT": "/ca.pem"}, "ca_cert", "/ca.pem"),
    ({"K8S_AUTH_CA_CERT": "/ca.pem"}, "ca_cert", "/ca.pem"),
    ({"K8S_AUTH_CERT_FILE": "/c.pem"}, "client_cert", "/c.pem"),
    ({"K8S_AUTH_KEY_FILE": "/k.pem"}, "client_key", "/k.pem"),
    ({"K8S_AUTH_IMPERSONATE_GROUPS": "a, b"}, "impersonate_groups", ["a", "b"]),
    ({"K8S_AUTH_KUBECONFIG": "/tmp/kc"}, "kubeconfig", "/tmp/kc"),
])
def test_environment_fallbacks_match_kubernetes_core(env, option, expected):
    assert resolve_auth({}, env)[option] == expected


def test_every_option_has_an_environment_variable():
    settings = resolve_auth({}, {})
    assert set(settings) == set(AUTH_ARG_SPEC)
    assert all(value is None for value in settings.values())


def test_inline_yaml_kubeconfig_becomes_a_dict():
    text = "apiVersion: v1\nkind: Config\ncontexts: []\n"
    assert parse_kubeconfig(text) == {"apiVersion": "v1", "kind": "Config", "contexts": []}


def test_inline_json_kubeconfig_becomes_a_dict():
    assert parse_kubeconfig('{"kind": "Config"}') == {"kind": "Config"}


def test_a_single_line_is_a_path():
    assert parse_kubeconfig("~/kc") != "~/kc" and parse_kubeconfig("~/kc").endswith("/kc")


def test_malformed_inline_kubeconfig_names_the_place_not_the_content():
    with pytest.raises(ConfigError) as error:
        parse_kubeconfig("apiVersion: v1\nusers: [token: s3cret\n")
    assert "not valid YAML (line" in str(error.value)
    assert "s3cret" not in str(error.value)


def test_inline_kubeconfig_that_is_not_a_mapping():
    with pytest.raises(ConfigError, match="not a YAML mapping"):
        parse_kubeconfig("- a\n- b\n")


def test_context_defaults_to_current_context():
    assert select_context(KUBECONFIG, None, "x") == ("cp", "https://cp:6443")
    assert select_context(KUBECONFIG, "app", "x") == ("app", "https://app:6443")


def test_unknown_context_lists_the_known_ones():
    with pytest.raises(ConfigError) as error:
        select_context(KUBECONFIG, "nope", "/home/me/kc")
    message = str(error.value)
    assert "'nope' is not in the kubeconfig /home/me/kc" in message
    assert "app, cp" in message


def test_context_pointing_at_a_missing_cluster():
    broken = dict(KUBECONFIG, contexts=[{"name": "x", "context": {"cluster": "gone"}}])
    with pytest.raises(ConfigError, match="names cluster 'gone', which has no server entry"):
        select_context(broken, "x", "kc")


def test_kubeconfig_without_contexts():
    with pytest.raises(ConfigError, match="has no contexts"):
        select_context({"clusters": []}, None, "kc")


def test_kubeconfig_secrets_are_collected_for_no_log():
    assert kubeconfig_secrets(KUBECONFIG) == {"s3cret-token", "S0VZ"}
    assert kubeconfig_secrets("/a/path") == set()


def configuration_for(settings, environ=None):
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import build_configuration

    base = {name: None for name in AUTH_ARG_SPEC}
    base.update(settings)
    return build_configuration(base, environ=environ or {})


def test_api_key_becomes_a_bearer_header():
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import authorization_header

    configuration, label = configuration_for({"host": "https://h:6443", "api_key": "tok"})
    assert authorization_header(configuration) == "Bearer tok"
    assert label == "cluster https://h:6443"


def test_kubeconfig_token_becomes_a_bearer_header():
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import authorization_header

    configuration, label = configuration_for({"kubeconfig": KUBECONFIG, "context": "app"})
    assert authorization_header(configuration) == "Bearer s3cret-token"
    assert label == "cluster app (https://app:6443)"


def test_host_without_scheme_is_https():
    configuration, _label = configuration_for({"host": "h:6443", "api_key": "tok"})
    assert configuration.host == "https://h:6443"


def test_credentials_over_plain_http_are_refused():
    with pytest.raises(ConfigError, match="plain http: its credentials would travel unencrypted"):
        configuration_for({"host": "http://h:8080", "api_key": "tok"})


def _inline(cluster=None, context=None, user=None, **sections):
    document = {"current-context": "a",
                "clusters": [{"name": "c", "cluster": {"server": "https://h:6443"} if cluster is None else cluster}],
                "contexts": [{"name": "a", "context": {"cluster": "c", "user": "u"} if context is None else context}],
                "users": [{"name": "u", "user": {"token": "s3cret"} if user is None else user}]}
    document.update(sections)
    return document


@pytest.mark.parametrize("document, problem", [
    (_inline(users=["x"]), "users[0] is not an entry with a name and a user"),
    (_inline(user="tok"), "users[0].user is a string, not a mapping"),
    (_inline(context="x"), "contexts[0].context is a string, not a mapping"),
    (_inline(cluster={"server": 6443}), "clusters[0].cluster.server is a number, not a string"),
    (_inline(cluster={"server": "https://h", "insecure-skip-tls-verify": "false"}),
     "insecure-skip-tls-verify is 'false', not true or false"),
    (_inline(clusters={"c": {"server": "https://h"}}), "clusters is a mapping, not a list"),
    (_inline(user={"token": 12345}), "users[0].user.token is a number, not a string"),
    (_inline(**{"current-context": ["a"]}), "current-context is not a string"),
])
def test_a_malformed_kubeconfig_is_refused_naming_the_entry(document, problem):
    with pytest.raises(ConfigError) as raised:
        configuration_for({"kubeconfig": document})
    assert problem in str(raised.value) and "Fix or regenerate it" in str(raised.value)
    assert "12345" not in str(raised.value)  # a value is never quoted: it may be a secret


@pytest.mark.parametrize("server, problem", [
    ("h:6443", "does not start with https://"), ("https://", "names no host"), ("https://h:99999", "not a URL"),
    ("https://h:6443/#x", "a fragment"), ("", "it is empty"),
])
def test_a_server_that_is_no_address_is_refused(server, problem):
    with pytest.raises(ConfigError) as raised:
        configuration_for({"kubeconfig": _inline(cluster={"server": server} if server else {"server": server})})
    assert problem in str(raised.value) or "has no server entry" in str(raised.value)


def test_a_kubeconfig_token_is_not_sent_over_plain_http():
    with pytest.raises(ConfigError, match="plain http"):
        configuration_for({"kubeconfig": _inline(cluster={"server": "http://h:8080"})})


def test_plain_http_without_credentials_is_allowed():
    configuration, _label = configuration_for({"kubeconfig": _inline(cluster={"server": "http://h:8080"}, user={})})
    assert configuration.host == "http://h:8080"


def test_environment_proxy_is_not_used():
    import os

    os.environ["HTTPS_PROXY"] = "http://proxy.invalid:3128"
    try:
        configuration, _label = configuration_for({"host": "https://h", "api_key": "t"})
    finally:
        del os.environ["HTTPS_PROXY"]
    assert not configuration.proxy


def test_a_kubeconfig_with_certificate_data_is_read_without_the_kubernetes_package(tmp_path):
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import ClientConfiguration

    kubeconfig = {"clusters": [{"name": "c", "cluster": {"server": "https://c:6443/", "tls-server-name": "api.c",
                                                         "certificate-authority-data": "Q0EtUEVN"}}],
                  "users": [{"name": "u", "user": {"client-certificate-data": "Q0VSVA==", "client-key-data": "S0VZ"}}],
                  "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "current-context": "c"}
    configuration, label = configuration_for({"kubeconfig": kubeconfig})
    assert isinstance(configuration, ClientConfiguration)
    assert (configuration.host, configuration.tls_server_name, configuration.verify_ssl) == ("https://c:6443", "api.c", True)
    # CA, certificate and key data stay in memory: no file is written for them.
    assert (configuration.ssl_ca_cert, configuration.ssl_ca_cert_data) == (None, "CA-PEM")
    assert (configuration.cert_file, configuration.key_file) == (None, None)
    assert (configuration.cert_data, configuration.key_data) == (b"CERT", b"KEY")
    assert label == "cluster c (https://c:6443)"


def test_kubeconfigs_the_direct_reader_does_not_know_go_to_the_kubernetes_package(tmp_path):
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import (
        ClientConfiguration, authorization_header)

    token_file = tmp_path / "token"
    token_file.write_text("file-token")
    kubeconfig = {"clusters": [{"name": "c", "cluster": {"server": "https://c:6443"}}],
                  "users": [{"name": "u", "user": {"tokenFile": str(token_file)}}],
                  "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "current-context": "c"}
    configuration, _label = configuration_for({"kubeconfig": kubeconfig})
    assert not isinstance(configuration, ClientConfiguration)
    assert authorization_header(configuration) == "Bearer file-token"


def test_certificate_data_that_is_not_base64_is_named_not_shown():
    kubeconfig = dict(KUBECONFIG, users=[{"name": "admin", "user": {"client-certificate-data": "not base64!",
                                                                    "client-key-data": "S0VZ"}}])
    with pytest.raises(ConfigError, match="client-certificate-data that is not base64") as raised:
        configuration_for({"kubeconfig": kubeconfig})
    assert "not base64!" not in str(raised.value)


def test_certificate_data_may_wrap_over_lines_and_a_named_file_must_exist(tmp_path):
    wrapped = {"clusters": [{"name": "c", "cluster": {"server": "https://c:6443", "certificate-authority-data": "Q0Et\n UEVN\n"}}],
               "users": [{"name": "u", "user": {"token": "12345"}}],
               "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "current-context": "c"}
    configuration, _label = configuration_for({"kubeconfig": wrapped})
    assert configuration.ssl_ca_cert_data == "CA-PEM"
    assert configuration.api_key == {"authorization": "Bearer 12345"}
    missing = dict(wrapped, clusters=[{"name": "c", "cluster": {"server": "https://c:6443",
                                                                "certificate-authority": str(tmp_path / "gone.pem")}}])
    with pytest.raises(ConfigError, match="names certificate-authority .*gone.pem, which does not exist"):
        configuration_for({"kubeconfig": missing})


def test_the_ca_cert_option_wins_over_the_kubeconfigs_ca_data(tmp_path):
    ca = tmp_path / "ca.crt"
    ca.write_text("OTHER-CA")
    kubeconfig = {"clusters": [{"name": "c", "cluster": {"server": "https://c:6443",
                                                         "certificate-authority-data": "Q0EtUEVN"}}],
                  "users": [{"name": "u", "user": {"token": "t"}}],
                  "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}], "current-context": "c"}
    configuration, _label = configuration_for({"kubeconfig": kubeconfig, "ca_cert": str(ca)})
    assert (configuration.ssl_ca_cert, configuration.ssl_ca_cert_data) == (str(ca), None)


def test_a_client_key_given_as_data_is_on_disk_only_while_tls_loads_it(tmp_path, monkeypatch):
    import ssl
    import tempfile

    from ansible_collections.klutch.bind.plugins.module_utils.k8s import client

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    seen = []

    class Context:
        def load_cert_chain(self, path):
            seen.append((open(path, "rb").read(), os.stat(path).st_mode & 0o777))

    client.load_client_certificate(Context(), b"CERT\n", b"KEY\n")
    assert seen == [(b"CERT\nKEY\n", 0o600)] and not os.listdir(str(tmp_path))

    class Refusing:
        def load_cert_chain(self, path):
            raise ssl.SSLError("bad")

    with pytest.raises(ConfigError, match="do not load"):
        client.load_client_certificate(Refusing(), b"x", b"y")
    assert not os.listdir(str(tmp_path))


IN_CLUSTER = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}


@pytest.fixture
def service_account(tmp_path):
    """A directory as the kubelet mounts a ServiceAccount: token, ca.crt, namespace."""
    (tmp_path / "token").write_text("first-token\n")
    (tmp_path / "ca.crt").write_text("CA-PEM")
    (tmp_path / "namespace").write_text("klutch-bind")
    return tmp_path


def in_cluster(directory, **environ):
    return configuration_for({}, dict(IN_CLUSTER, KLUTCH_BIND_SERVICE_ACCOUNT_DIR=str(directory), **environ))


def test_in_a_pod_the_service_account_is_read_without_the_kubernetes_package(service_account):
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import (
        ClientConfiguration, authorization_header)

    configuration, label = in_cluster(service_account)
    assert isinstance(configuration, ClientConfiguration)
    assert configuration.host == "https://10.96.0.1:443"
    assert configuration.ssl_ca_cert == str(service_account / "ca.crt")
    assert authorization_header(configuration) == "Bearer first-token"
    assert label == "cluster in-cluster (https://10.96.0.1:443)"


def test_the_token_is_read_again_when_the_kubelet_has_rotated_it(service_account):
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import authorization_header

    configuration, _label = in_cluster(service_account)
    assert authorization_header(configuration) == "Bearer first-token"
    # The kubelet writes a new file and swaps it in.
    (service_account / "token.new").write_text("rotated-token")
    os.replace(service_account / "token.new", service_account / "token")
    assert authorization_header(configuration) == "Bearer rotated-token"
    # Caught between the steps of a swap, the token read last is sent.
    os.remove(service_account / "token")
    assert authorization_header(configuration) == "Bearer rotated-token"


def test_the_token_file_is_not_read_again_while_it_is_unchanged(service_account, monkeypatch):
    import builtins

    from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import authorization_header

    configuration, _label = in_cluster(service_account)
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *args, **kwargs: opened.append(path) or real_open(
        path, *args, **kwargs))
    for _request in range(3):
        authorization_header(configuration)
    assert opened == []


def test_an_ipv6_service_host_is_bracketed(service_account):
    configuration, _label = in_cluster(service_account, KUBERNETES_SERVICE_HOST="fd00:10:96::1")
    assert configuration.host == "https://[fd00:10:96::1]:443"


@pytest.mark.parametrize("missing", ["token", "ca.crt"])
def test_a_missing_service_account_file_is_named_with_the_fix(service_account, missing):
    os.remove(service_account / missing)
    with pytest.raises(ConfigError) as raised:
        in_cluster(service_account)
    message = str(raised.value)
    assert str(service_account / missing) in message
    assert "automountServiceAccountToken: true" in message and "give kubeconfig" in message


def test_the_service_account_directory_defaults_to_the_kubelets_mount():
    if os.path.exists("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"):
        pytest.skip("these tests run in a Pod: its own service account is there")
    with pytest.raises(ConfigError, match="/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"):
        configuration_for({}, IN_CLUSTER)


def test_a_service_host_without_port_is_refused(service_account):
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_PORT is not"):
        configuration_for({}, {"KUBERNETES_SERVICE_HOST": "10.96.0.1",
                               "KLUTCH_BIND_SERVICE_ACCOUNT_DIR": str(service_account)})


def test_a_kubeconfig_wins_over_the_pods_service_account(service_account):
    configuration, label = configuration_for({"kubeconfig": KUBECONFIG}, dict(
        IN_CLUSTER, KLUTCH_BIND_SERVICE_ACCOUNT_DIR=str(service_account)))
    assert label == "cluster cp (https://cp:6443)"
