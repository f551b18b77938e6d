"""One cluster, every way of reaching it; and each misconfiguration as one clear line.

Each case runs klutch.bind.klutch_cluster_info through ansible-playbook (AnsiballZ), as users do.
"""

import base64
import time
from pathlib import Path

import pytest
import yaml


MODULE = "klutch.bind.klutch_cluster_info"


def reached(result, app):
    assert not result.get("failed"), result.get("msg")
    assert result["host"] == app.server
    assert result["kubernetes_version"] == "v1.34.2"
    return True


def test_kubeconfig_path(run_task, app):
    result = run_task(MODULE, {"kubeconfig": str(app.admin_kubeconfig)})[0]
    assert reached(result, app)
    assert result["cluster"] == f"cluster app ({app.server})"


def test_inline_kubeconfig_dict_keeps_its_key_out_of_the_output(run_task, app):
    inline = yaml.safe_load(app.admin_kubeconfig.read_text())
    result, output = run_task(MODULE, {"kubeconfig": inline})
    assert reached(result, app)
    key_data = inline["users"][0]["user"]["client-key-data"]
    assert key_data not in output and key_data not in str(result)


def test_inline_kubeconfig_yaml_text(run_task, app):
    result = run_task(MODULE, {"kubeconfig": app.admin_kubeconfig.read_text()})[0]
    assert reached(result, app)


def test_context_of_a_kubeconfig_with_several_clusters(run_task, lab, app, control_plane):
    result = run_task(MODULE, {"kubeconfig": str(lab.kubeconfig), "context": "app"})[0]
    assert reached(result, app)
    other = run_task(MODULE, {"kubeconfig": str(lab.kubeconfig), "context": "control-plane"})[0]
    assert other["host"] == control_plane.server


def test_host_and_token(run_task, app, token):
    result, output = run_task(MODULE, {"host": app.server, "api_key": token, "ca_cert": str(app.ca_cert)})
    assert reached(result, app)
    assert token not in output


def test_awx_style_environment_variables(run_task, app, token):
    env = {"K8S_AUTH_HOST": app.server, "K8S_AUTH_API_KEY": token, "K8S_AUTH_VERIFY_SSL": "True",
           "K8S_AUTH_SSL_CA_CERT": str(app.ca_cert)}
    result, output = run_task(MODULE, {}, env=env)
    assert reached(result, app)
    assert token not in output


def test_kubeconfig_and_context_environment_variables(run_task, lab, app):
    result = run_task(MODULE, {}, env={"K8S_AUTH_KUBECONFIG": str(lab.kubeconfig), "K8S_AUTH_CONTEXT": "app"})[0]
    assert reached(result, app)


def test_impersonation_acts_as_the_given_user(app, client_for):
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import SECRETS

    as_bob = client_for(app.admin_kubeconfig, impersonate_user="bob", impersonate_groups=["team-a", "team-b"])
    with pytest.raises(ClusterError) as error:
        as_bob.list(SECRETS, "default")
    assert 'User "bob" cannot list resource "secrets"' in str(error.value)


def failed_cleanly(result, output, *secrets):
    """A failure is one line, without a traceback, and shows no secret."""
    assert result.get("failed") is True
    message = result["msg"]
    assert "\n" not in message.strip()
    assert "Traceback" not in output and "Traceback" not in str(result)
    for secret in secrets:
        assert secret not in output and secret not in str(result)
    return message


def test_wrong_context(run_task, lab):
    result, output = run_task(MODULE, {"kubeconfig": str(lab.kubeconfig), "context": "staging"})
    message = failed_cleanly(result, output)
    assert message == (f"The context 'staging' is not in the kubeconfig {lab.kubeconfig}. Its contexts are: app, "
                       "control-plane. Set context to one of them.")


def test_malformed_kubeconfig_file(run_task, app, tmp_path):
    broken = tmp_path / "broken.kubeconfig"
    text = app.admin_kubeconfig.read_text()
    key_data = yaml.safe_load(text)["users"][0]["user"]["client-key-data"]
    broken.write_text(text.replace("contexts:", "contexts: [", 1))
    result, output = run_task(MODULE, {"kubeconfig": str(broken)})
    message = failed_cleanly(result, output, key_data)
    assert message.startswith(f"The kubeconfig file {broken} is not valid YAML at line")


def test_malformed_inline_kubeconfig(run_task, app):
    text = app.admin_kubeconfig.read_text()
    key_data = yaml.safe_load(text)["users"][0]["user"]["client-key-data"]
    result, output = run_task(MODULE, {"kubeconfig": text.replace("contexts:", "contexts: [", 1)})
    message = failed_cleanly(result, output, key_data)
    assert message.startswith("The inline kubeconfig is not valid YAML (line")


def test_unreachable_host(run_task, token, app):
    # A refused connection is retried for the budget, 60 s unless KLUTCH_BIND_RETRY_BUDGET says less.
    start = time.monotonic()
    result, output = run_task(MODULE, {"host": "https://127.0.0.1:1", "api_key": token, "ca_cert": str(app.ca_cert)},
                              env={"KLUTCH_BIND_RETRY_BUDGET": "3"})
    assert 3 <= time.monotonic() - start < 30
    message = failed_cleanly(result, output, token)
    assert message == ("Cannot read the server version on cluster https://127.0.0.1:1: the connection was refused. "
                       "Check that the API server runs and the host and port are right.")


def test_a_bad_retry_budget_is_refused_by_name(run_task, token, app):
    result, output = run_task(MODULE, {"host": app.server, "api_key": token, "ca_cert": str(app.ca_cert)},
                              env={"KLUTCH_BIND_RETRY_BUDGET": "a minute"})
    message = failed_cleanly(result, output, token)
    assert message.startswith("KLUTCH_BIND_RETRY_BUDGET='a minute' is not a number of seconds from 0 to 3600")


def test_bad_ca(run_task, app, control_plane, token):
    result, output = run_task(MODULE, {"host": app.server, "api_key": token, "ca_cert": str(control_plane.ca_cert)})
    message = failed_cleanly(result, output, token)
    assert message == (f"Cannot read the server version on cluster {app.server}: the server's TLS certificate is not "
                       "trusted by the configured CA. Set ca_cert (or the kubeconfig's certificate-authority-data) "
                       "to the cluster's CA.")


def test_rejected_token(run_task, app):
    bogus = "not-a-valid-token-" + base64.b64encode(b"x" * 12).decode()
    result, output = run_task(MODULE, {"host": app.server, "api_key": bogus, "ca_cert": str(app.ca_cert)})
    message = failed_cleanly(result, output, bogus)
    assert "credentials were rejected (401 Unauthorized)" in message


def test_missing_kubeconfig_file(run_task, tmp_path):
    result, output = run_task(MODULE, {"kubeconfig": str(tmp_path / "nope")})
    message = failed_cleanly(result, output)
    assert message == (f"The kubeconfig file {tmp_path / 'nope'} does not exist: check the kubeconfig option or "
                       "K8S_AUTH_KUBECONFIG.")


def test_nothing_configured(run_task, tmp_path):
    result, output = run_task(MODULE, {}, env={"HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")})
    message = failed_cleanly(result, output)
    assert message.startswith("No cluster to connect to: set kubeconfig")
    assert Path(tmp_path / "none").exists() is False


def test_inline_kubeconfig_token_stays_hidden_when_arguments_are_rejected(run_task, app, token):
    inline = {"apiVersion": "v1", "kind": "Config", "current-context": "app",
              "clusters": [{"name": "app", "cluster": {"server": app.server,
                                                       "certificate-authority": str(app.ca_cert)}}],
              "users": [{"name": "robot", "user": {"token": token}}],
              "contexts": [{"name": "app", "context": {"cluster": "app", "user": "robot"}}]}
    result, output = run_task(MODULE, {"kubeconfig": inline, "no_such_option": 1})
    assert result["failed"] and "no_such_option" in result["msg"]
    assert token not in output and token not in str(result)
    assert reached(run_task(MODULE, {"kubeconfig": inline})[0], app)


def test_host_without_scheme_means_https(run_task, app, token):
    host = app.server.replace("https://", "")
    assert reached(run_task(MODULE, {"host": host, "api_key": token, "ca_cert": str(app.ca_cert)})[0], app)
