import base64

import pytest

from ansible_collections.klutch.bind.plugins.module_utils import validate
from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import url_problem
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError

PEM = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()


@pytest.mark.parametrize("value", ["https://h:6443", "http://10.0.0.1", "https://[::1]:443", "https://h:6443/prefix"])
def test_server_addresses(value):
    assert url_problem(value) is None


@pytest.mark.parametrize("value, problem", [
    ("", "empty"), ("h:6443", "https://"), ("ftp://h", "https://"), ("https://", "no host"),
    ("https://h:0", "out of range"), ("https://h:70000", "not a URL"), ("https://h?x=1", "query"), ("https://h x", "white"),
    (6443, "empty"),
])
def test_what_is_no_server_address(value, problem):
    assert problem in url_problem(value)


def test_checks_name_the_option_and_the_fix():
    with pytest.raises(ConfigError, match=r"wait_timeout is 0: it must be at least 1 seconds"):
        validate.positive()("wait_timeout", 0)
    with pytest.raises(ConfigError, match=r"provider_pretty_name is empty"):
        validate.text("provider_pretty_name", "  ")
    with pytest.raises(ConfigError, match=r"health_port is 0, not a TCP port"):
        validate.port("health_port", 0)
    with pytest.raises(ConfigError, match=r"external_server_name 'a b'"):
        validate.server_name("external_server_name", "a b")
    validate.server_name("external_server_name", "API.example.com")


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"hello").decode(), ""])
def test_certificate_data_must_be_base64_pem(value):
    with pytest.raises(ConfigError, match="external_ca_data is not base64-encoded PEM"):
        validate.certificate_data("external_ca_data", value)


def test_certificate_data_may_wrap():
    validate.certificate_data("external_ca_data", PEM[:10] + "\n " + PEM[10:])


def test_each_names_the_item():
    with pytest.raises(ConfigError, match=r"bindings\[1\]"):
        validate.each(validate.kubernetes_name("a binding"))("bindings", ["ok.example.org", "../x"])


@pytest.mark.parametrize("name", ["{'resource': 'secrets'}", "Secrets!", ""])
def test_accept_claims_are_claim_names(name):
    with pytest.raises(ConfigError, match=r"accept_claims\[1\] .* is not a claim name"):
        validate.claim_names("accept_claims", ["*", name])


@pytest.mark.parametrize("key, value, problem", [
    ("app", "web", None), ("example.com/tier", "", None), ("app", True, None), ("app", 3, None),
    ("bad key", "x", "not a label key"), ("a/b/c", "x", "not a label key"), ("app", "a b", "not a label value"),
    ("app", {"x": 1}, "is a mapping"), ("app", None, "is a null"), ("x" * 64, "v", "not a label key"),
])
def test_label_selectors(key, value, problem):
    found = validate.label_problem(key, value)
    assert (found is None) if problem is None else (problem in found)


def test_one_owner_per_claimed_kind():
    same = [{"resource": "secrets", "owner": "Provider"}, {"resource": "secrets", "owner": "Provider"}]
    validate.permission_claims("permission_claims", same)
    validate.permission_claims("permission_claims", [{"resource": "secrets"}, {"resource": "secrets", "owner": "Consumer"}])
    with pytest.raises(ConfigError, match=r"permission_claims\[1\] claims secrets owned by the consumer, and "
                                          r"permission_claims\[0\] claims it owned by the provider"):
        validate.permission_claims("permission_claims", [same[0], dict(same[0], owner="Consumer")])


def test_run_checks_skips_options_left_out():
    seen = []
    validate.run_checks({"a": None, "b": 2}, {"a": lambda o, v: seen.append(o), "b": lambda o, v: seen.append(o)})
    assert seen == ["b"]


@pytest.mark.parametrize("text, seconds", [("30d", 2592000), ("12h", 43200), ("1h30m", 5400), ("45s", 45),
                                           ("1d2h3m4s", 93784)])
def test_an_age_reads_in_days_hours_minutes_and_seconds(text, seconds):
    assert validate.age_seconds(text) == seconds
    validate.age("rotate_after", text)


@pytest.mark.parametrize("text", ["", "0s", "30", "1w", "h", "1.5h", "30 d", "-1d"])
def test_an_unreadable_or_zero_age_is_refused_naming_the_option(text):
    with pytest.raises(ConfigError, match="rotate_after is .* for example 30d"):
        validate.age("rotate_after", text)
