"""Bad input, as platform engineers type it: each case gets a clear error that names the option, and
not one of them writes anything to either cluster (the audit log; dry runs are the server's judgement).

All cases run as tasks of one playbook against the lab, through AnsiballZ like any task; the count
of cases tried and held is printed for the reliability figures.
"""

import base64
import json
import socket
import sys

import pytest

from klutch_lab.audit import now
from klutch_lab.cluster import ADMIN_USER
from playbook_runner import ROOT, ansible_playbook

SECRET_VALUE = "do-not-show-me-0a1b2c"
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad-input", "namespace": "default"},
             "data": {"a": "b"}}


def kubeconfig(cluster=None, context=None, user=None, **sections):
    """An inline kubeconfig with one entry of each kind, replaced where a case breaks it."""
    document = {"apiVersion": "v1", "kind": "Config", "current-context": "a",
                "clusters": [{"name": "c", "cluster": cluster or {"server": "https://127.0.0.1:6443"}}],
                "contexts": [{"name": "a", "context": context or {"cluster": "c", "user": "u"}}],
                "users": [{"name": "u", "user": {"token": SECRET_VALUE} if user is None else user}]}
    document.update(sections)
    return document


def manifest_cases(app):
    on_app = {"kubeconfig": str(app)}
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}}
    five = [dict(CONFIGMAP, metadata={"name": "bad-input-%d" % index, "namespace": "default"}) for index in range(5)]
    five[2] = dict(five[2], data={"a": {"nested": "not a string"}})
    return [
        ("klutch_manifest", dict(on_app, definition=dict(secret, data=[SECRET_VALUE])), "data is a list"),
        ("klutch_manifest", dict(on_app, definition=dict(secret, stringData={"k": 5})), "stringData.k is a number"),
        ("klutch_manifest", dict(on_app, definition=dict(CONFIGMAP, apiVersion=1)), "apiVersion is a number"),
        ("klutch_manifest", dict(on_app, definition={"apiVersion": "v1", "kind": "ConfigMap", "metadata": ["x"]}),
         "lacks metadata.name"),
        ("klutch_manifest", dict(on_app, definition=dict(CONFIGMAP, metadata={"namespace": "default"})), "metadata.name"),
        ("klutch_manifest", dict(on_app, definition=dict(CONFIGMAP, metadata={"name": "x", "labels": ["a"]})),
         "metadata.labels is a list"),
        ("klutch_manifest", dict(on_app, definition=CONFIGMAP, namespace=""), "namespace"),
        ("klutch_manifest", dict(on_app, definition=CONFIGMAP, namespace="Bad_Namespace"), "namespace"),
        ("klutch_manifest", dict(on_app, definition=CONFIGMAP, wait=True, wait_timeout=0), "wait_timeout"),
        ("klutch_manifest", dict(on_app, definition=CONFIGMAP, wait_timeout=-5), "wait_timeout"),
        ("klutch_manifest", dict(on_app, definition=five), "1 of the 5 objects would be refused, so none was applied"),
        ("klutch_manifest", dict(on_app, definition="kind: [unclosed"), "not valid YAML"),
        ("klutch_manifest", dict(on_app, src="/nonexistent/manifests"), "src /nonexistent/manifests does not exist"),
        ("klutch_manifest", dict(on_app, definition=dict(CONFIGMAP, apiVersion="example.com/v1", kind="Nothing")),
         "does not serve kind Nothing"),
        ("klutch_manifest", dict(on_app, definition=dict(CONFIGMAP, metadata={"name": "x", "namespace": "default",
                                                                              "labels": {"app": "a b"}})),
         "metadata.labels"),
        ("klutch_manifest", dict(on_app, definition=CONFIGMAP, wait_condition={"type": "Ready", "status": "Maybe"}),
         "wait_condition"),
        ("klutch_manifest", dict(on_app, definition=CONFIGMAP, state="gone"), "state"),
    ]


def connection_cases(app):
    bad_ca = kubeconfig(cluster={"server": "https://127.0.0.1:6443", "certificate-authority-data": "not base64!"})

    def with_connection(**connection):
        return ("klutch_manifest", dict(connection, definition=CONFIGMAP))

    cases = [
        (with_connection(kubeconfig=kubeconfig(users=["x"])), "users[0] is not an entry"),
        (with_connection(kubeconfig=kubeconfig(user="tok")), "users[0].user is a string"),
        (with_connection(kubeconfig=kubeconfig(context="x")), "contexts[0].context is a string"),
        (with_connection(kubeconfig=kubeconfig(cluster={"server": 6443})), "server is a number"),
        (with_connection(kubeconfig=kubeconfig(cluster={"server": "https://127.0.0.1:6443",
                                                        "insecure-skip-tls-verify": "false"})),
         "insecure-skip-tls-verify is 'false'"),
        (with_connection(kubeconfig=kubeconfig(cluster={"server": "http://127.0.0.1:6443"})), "plain http"),
        (with_connection(kubeconfig=kubeconfig(cluster={"server": "127.0.0.1:6443"})), "not a server address"),
        (with_connection(kubeconfig=kubeconfig(clusters={"c": {"server": "https://x"}})), "clusters is a mapping"),
        (with_connection(kubeconfig=kubeconfig(user={"token": 123456})), "token is a number"),
        (with_connection(kubeconfig=kubeconfig(**{"current-context": "missing"})), "context 'missing' is not in"),
        (with_connection(kubeconfig=bad_ca), "certificate-authority-data that is not base64"),
        (with_connection(kubeconfig="- a\n- b\n"), "not a YAML mapping"),
        (with_connection(kubeconfig=""), "kubeconfig is empty"),
        (with_connection(kubeconfig="/nonexistent/kubeconfig"), "does not exist"),
        (with_connection(kubeconfig=str(app), context="nope"), "context 'nope' is not in"),
        (with_connection(host="http://127.0.0.1:1", api_key=SECRET_VALUE), "plain http"),
        (with_connection(host="https://", api_key=SECRET_VALUE), "host is not a server address"),
        (with_connection(host="https://h:99999", api_key=SECRET_VALUE), "host is not a server address"),
        (with_connection(kubeconfig=str(app), ca_cert="/nonexistent/ca.crt"), "ca_cert /nonexistent/ca.crt does not exist"),
        (with_connection(kubeconfig=str(app), client_cert=str(app)), "client_cert is set without client_key"),
        (with_connection(kubeconfig=str(app), validate_certs="maybe"), "validate_certs"),
        (with_connection(kubeconfig=str(app), proxy="socks5://127.0.0.1:1080"), "proxy"),
    ]
    return [(module, args, expected) for (module, args), expected in cases]


def template_cases(control_plane):
    on_cp = {"kubeconfig": str(control_plane), "group": "example.org", "resource": "widgets", "name": "widgets"}

    def claims(*items):
        return dict(on_cp, permission_claims=list(items))

    return [
        ("klutch_template", dict(on_cp, name=""), "name"),
        ("klutch_template", dict(on_cp, name="#", state="absent"), "name"),
        ("klutch_template", dict(on_cp, namespace="../kube-system"), "namespace"),
        ("klutch_template", dict(on_cp, group=""), "group"),
        ("klutch_template", dict(on_cp, resource="Widgets"), "resource"),
        ("klutch_template", claims({"resource": ""}), "permission_claims[0].resource"),
        ("klutch_template", claims({"resource": "secrets", "label_selectors": [{"app": {"x": 1}}]}),
         "permission_claims[0].label_selectors[0]"),
        ("klutch_template", claims({"resource": "secrets", "label_selectors": [{"bad key!": "x"}]}), "is not a label key"),
        ("klutch_template", claims({"resource": "secrets", "label_selectors": [{"app": "a b"}]}), "is not a label value"),
        ("klutch_template", claims({"resource": "secrets", "label_selectors": [{}]}), "it is empty"),
        ("klutch_template", claims({"resource": "secrets", "owner": "Provider"}, {"resource": "secrets", "owner": "Consumer"}),
         "permission_claims[1] claims secrets owned by the consumer"),
        ("klutch_template", claims({"resource": "secrets", "names": ["../x"]}), "permission_claims[0].names[0]"),
        ("klutch_template", claims({"resource": "secrets", "namespaces": ["Bad"]}), "permission_claims[0].namespaces[0]"),
        ("klutch_template", claims({"resource": "secrets", "owner": "Tenant"}), "owner"),
        ("klutch_template", dict(on_cp, version="v9"), "widgets.example.org"),
    ]


def export_cases(control_plane):
    base = {"kubeconfig": str(control_plane), "consumer": "bad-input", "cluster_id": "abc123",
            "resources": [{"group": "example.org", "resource": "widgets"}]}
    not_pem = base64.b64encode(b"hello").decode()
    return [("klutch_export_request", dict(base, **change), expected) for change, expected in [
        ({"provider_pretty_name": ""}, "provider_pretty_name is empty"),
        ({"wait_timeout": 0}, "wait_timeout is 0"),
        ({"external_ca_data": "not base64!"}, "external_ca_data is not base64-encoded PEM"),
        ({"external_ca_data": not_pem}, "external_ca_data is not base64-encoded PEM"),
        ({"external_address": ""}, "external_address is not a server address"),
        ({"external_address": "ftp://control-plane:6443"}, "external_address is not a server address"),
        ({"external_address": "control-plane:6443"}, "external_address is not a server address"),
        ({"external_server_name": "bad name!"}, "external_server_name"),
        ({"state": "absent", "delete_namespace": True}, "delete_namespace removes consumer bad-input"),
        ({"resources": []}, "resources is empty"),
        ({"resources": [{"group": "", "resource": "widgets"}]}, "resources[0].group"),
        ({"resources": [{"group": "example.org", "resource": "Widgets"}]}, "resources[0].resource"),
        ({"resources": [{"group": "example.org"}]}, "resource"),
        ({"consumer": ""}, "consumer"),
        ({"consumer": "a#b"}, "consumer"),
        ({"cluster_id": ""}, "cluster_id"),
        ({"cluster_id": "abc-def!"}, "cluster_id"),
        ({"previous_cluster_id": "x y"}, "previous_cluster_id"),
        ({"consumer_scope": "cluster"}, "consumer_scope"),
        ({"rotate_after": "monthly"}, "rotate_after is 'monthly'"),
        ({"rotate_after": "0s"}, "rotate_after is '0s'"),
        ({"rotate_after": ""}, "rotate_after is ''"),
        ({"rotation_grace": -1}, "rotation_grace is -1"),
        ({"state": "revoked"}, "has no namespace"),
    ]]


def app_side_cases(app, control_plane):
    on_app = {"kubeconfig": str(app)}
    bind = dict(on_app, consumer="bad-input", control_plane_kubeconfig=str(control_plane),
                services=[{"group": "example.org", "resource": "widgets"}])
    service = {"group": "example.org", "resource": "widgets"}
    binding = dict(on_app, name="widgets.example.org", provider_kubeconfig=kubeconfig())
    return [
        ("klutch_bind", dict(bind, services=[{"group": "", "resource": "widgets"}]), "services[0].group"),
        ("klutch_bind", dict(bind, services=[dict(service, accept_claims=[{"resource": "secrets"}])]),
         "services[0].accept_claims[0]"),
        ("klutch_bind", dict(bind, services=[dict(service, accept_claims=["Secrets!"])]), "services[0].accept_claims[0]"),
        ("klutch_bind", dict(bind, external_address=""), "external_address"),
        ("klutch_bind", dict(bind, wait_timeout=0), "wait_timeout"),
        ("klutch_bind", dict(bind, control_plane_kubeconfig=kubeconfig(users=["x"])), "users[0] is not an entry"),
        ("klutch_bind", dict(bind, consumer=""), "consumer"),
        ("klutch_bind", dict(bind, services=[]), "services"),
        ("klutch_binding", dict(binding, name=""), "name"),
        ("klutch_binding", dict(binding, accept_claims=[{"resource": "secrets"}]), "accept_claims[0]"),
        ("klutch_binding", dict(binding, provider_kubeconfig="a: [unclosed\nb: c\n"), "provider_kubeconfig"),
        ("klutch_binding", dict(binding, provider_kubeconfig={}), "provider_kubeconfig"),
        ("klutch_binding", dict(binding, wait_timeout=0), "wait_timeout"),
        ("klutch_binding", dict(on_app, name="widgets.example.org"), "provider_kubeconfig"),
        ("klutch_claim_sync", dict(on_app, bindings=[""]), "bindings[0]"),
        ("klutch_claim_sync", dict(on_app, bindings=["../secrets"]), "bindings[0]"),
        ("klutch_claim_sync", dict(on_app, concurrency=0), "concurrency"),
        ("klutch_cluster_info", {"kubeconfig": kubeconfig(user="tok")}, "users[0].user is a string"),
        ("klutch_cluster_info", {"kubeconfig": ""}, "kubeconfig is empty"),
    ]


def control_plane_cases(control_plane, busy_port, run_dir):
    on_cp = {"kubeconfig": str(control_plane)}
    agent = dict(on_cp, role="konnector", name="bad-input", run_dir=str(run_dir))
    return [
        ("klutch_dataservice", dict(on_cp, name="", package="registry.example.com/x:v1"), "name"),
        ("klutch_dataservice", dict(on_cp, name="x", package="registry.example.com/x:v1", wait_timeout=0), "wait_timeout"),
        ("klutch_dataservice", dict(on_cp, name="x", src="/nonexistent/package"), "/nonexistent/package"),
        ("klutch_dataservice", dict(on_cp, name="x"), "package"),
        ("klutch_agent", dict(agent, resync=0), "resync is 0.0"),
        ("klutch_agent", dict(agent, concurrency=0), "concurrency is 0"),
        ("klutch_agent", dict(agent, health_port=70000), "health_port is 70000"),
        ("klutch_agent", dict(agent, health_port=busy_port), "health_port %d is in use" % busy_port),
        ("klutch_agent", dict(agent, python="/nonexistent/python3"), "python /nonexistent/python3 cannot be run"),
        ("klutch_agent", dict(agent, name="Bad_Name"), "name"),
        ("klutch_agent", dict(agent, service_account="noslash"), "service_account"),
        ("klutch_agent", dict(agent, role="both"), "role"),
    ]


@pytest.fixture(scope="module")
def busy_port():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    yield listener.getsockname()[1]
    listener.close()


def test_every_bad_input_is_refused_by_name_and_writes_nothing(app, control_plane, klutch_apis, audit,
                                                               run_playbook, busy_port, tmp_path, figure):
    cases = (manifest_cases(app.admin_kubeconfig) + connection_cases(app.admin_kubeconfig)
             + template_cases(control_plane.admin_kubeconfig) + export_cases(control_plane.admin_kubeconfig)
             + app_side_cases(app.admin_kubeconfig, control_plane.admin_kubeconfig)
             + control_plane_cases(control_plane.admin_kubeconfig, busy_port, tmp_path / "agents"))
    assert len(cases) >= 80
    outcomes = tmp_path / "outcomes.json"
    tasks = []
    for index, (module, args, _expected) in enumerate(cases):
        tasks.append({"name": f"Case {index}", f"klutch.bind.{module}": args, "register": "outcome",
                      "ignore_errors": True})
        tasks.append({"name": f"Keep case {index}", "ansible.builtin.set_fact": {"outcomes": "{{ outcomes + [outcome] }}"}})
    tasks.append({"name": "Save the outcomes", "ansible.builtin.copy": {
        "content": "{{ outcomes | to_json }}", "dest": str(outcomes), "mode": "0600"}})
    start = now()
    # At -vvv, where Ansible shows each task's arguments and result: secret values must stay hidden there too.
    completed = run_playbook(json.dumps([{"name": "Bad input", "hosts": "localhost", "connection": "local",
                                          "gather_facts": False, "vars": {"outcomes": []}, "tasks": tasks}]),
                             env={"ANSIBLE_VERBOSITY": "3"})
    output = completed.stdout + completed.stderr
    assert outcomes.exists(), output[-3000:]
    results = json.loads(outcomes.read_text())
    wrong = []
    for (module, args, expected), result in zip(cases, results):
        message = result.get("msg", "")
        if not result.get("failed") or expected not in message or "Traceback" in json.dumps(result):
            wrong.append(f"{module} {json.dumps(args)[:160]}: expected {expected!r}, got {message!r}"[:600])
    assert not wrong, "\n".join(wrong)
    assert SECRET_VALUE not in output and "123456" not in output
    # Only the server can judge some input (a label value, a field's type): it is asked by dry run.
    writes = {cluster.name: [(event["verb"], event["requestURI"]) for event in
                             audit(cluster).writes(since=start, user=ADMIN_USER)] for cluster in (app, control_plane)}
    assert writes == {app.name: [], control_plane.name: []}
    dry_runs = sum(audit(cluster).count_writes(since=start, user=ADMIN_USER, include_dry_run=True)
                   for cluster in (app, control_plane))
    figure(f"bad input: {len(cases)} cases across {len(set(module for module, _a, _e in cases))} modules, "
           f"all refused by name; 0 writes on both clusters ({dry_runs} dry runs asked the server)")


def role_cases(app, control_plane):
    """Variables of the roles as a tired operator sets them: empty (an undefined variable), zero, typos."""
    konnector = ("klutch.bind.konnector", {"konnector_kubeconfig": str(app)})
    apis = ("klutch.bind.klutch_apis", {"klutch_apis_kubeconfig": str(app)})
    cp = ("klutch.bind.control_plane", {"control_plane_kubeconfig": str(control_plane)})
    deployment, local = {"control_plane_backend": "deployment"}, {"control_plane_backend": "local"}
    cases = [
        (konnector, {"konnector_mode": ""}, "konnector_mode"),
        (konnector, {"konnector_mode": "Deployment"}, "konnector_mode"),
        (konnector, {"konnector_state": "gone"}, "konnector_state"),
        (konnector, {"konnector_resync": 0}, "konnector_resync is 0"),
        (konnector, {"konnector_resync": ""}, "konnector_resync"),
        (konnector, {"konnector_replicas": 0}, "konnector_replicas is 0"),
        (konnector, {"konnector_replicas": "two"}, "konnector_replicas"),
        (konnector, {"konnector_rollout_timeout": 0}, "konnector_rollout_timeout is 0"),
        (konnector, {"konnector_python_image": ""}, "konnector_python_image is empty"),
        (konnector, {"konnector_agent_delivery": "image"}, "set konnector_image"),
        (konnector, {"konnector_agent_delivery": ""}, "konnector_agent_delivery"),
        (konnector, {"konnector_image_pull_secrets": [""]}, "konnector_image_pull_secrets holds an empty name"),
        (konnector, {"konnector_mode": "local", "konnector_agent_name": "Konnector_1"}, "konnector_agent_name"),
        (konnector, {"konnector_mode": "local", "konnector_agent_name": ""}, "konnector_agent_name"),
        (cp, {"control_plane_backend": ""}, "control_plane_backend"),
        (cp, {"control_plane_backend_consumer_scope": "Everything"}, "control_plane_backend_consumer_scope"),
        (cp, dict(deployment, control_plane_backend_replicas=0), "control_plane_backend_replicas is 0"),
        (cp, dict(deployment, control_plane_backend_rollout_timeout=-1), "control_plane_backend_rollout_timeout is -1"),
        (cp, dict(deployment, control_plane_backend_python_image=""), "control_plane_backend_python_image is empty"),
        (cp, dict(deployment, control_plane_backend_agent_delivery="image"), "set control_plane_backend_image"),
        (cp, dict(deployment, control_plane_backend_image_pull_secrets=[""]), "control_plane_backend_image_pull_secrets"),
        (cp, dict(local, control_plane_backend_resync=0), "control_plane_backend_resync is 0"),
        (cp, dict(local, control_plane_backend_agent_name=""), "control_plane_backend_agent_name"),
        (cp, {"control_plane_template_namespace": ""}, "control_plane_template_namespace"),
        (cp, {"control_plane_templates": [{"name": "", "group": "bar.io", "resource": "foos"}]},
         'control_plane_templates holds a template named ""'),
        (cp, {"control_plane_templates": [{"name": "Foos", "group": "bar.io", "resource": "foos"}]},
         'control_plane_templates holds a template named "Foos"'),
        (cp, {"control_plane_templates": [{"group": "bar.io", "resource": "foos"}]}, "name"),
        (cp, {"control_plane_templates": [{"name": "foos", "resource": "foos"}]}, 'template "foos" has no group'),
        (cp, {"control_plane_templates": [{"name": "foos", "group": "bar.io", "resource": ""}]},
         'template "foos" has no resource'),
        (cp, {"control_plane_templates": "foos"}, "control_plane_templates"),
        (cp, {"control_plane_dataservices": [{"name": ""}]}, "control_plane_dataservices holds an item without a name"),
        (cp, {"control_plane_dataservices": [{"name": "x", "state": "gone"}]}, "state"),
        (apis, {"klutch_apis_kinds": ["APIServiceBindings"]}, 'klutch_apis_kinds names "APIServiceBindings", which '
                                                              "is not Klutch's: choose from"),
        (apis, {"klutch_apis_kinds": [""]}, 'klutch_apis_kinds names "", which is not Klutch\'s'),
    ]
    return [(role, dict(common, **variables), expected) for (role, common), variables, expected in cases]


def test_every_bad_role_variable_is_refused_by_name_and_writes_nothing(
        app, control_plane, klutch_apis, audit, run_playbook, tmp_path, figure):
    cases = role_cases(app.admin_kubeconfig, control_plane.admin_kubeconfig)
    outcomes = tmp_path / "outcomes.json"
    tasks = [{"name": f"Case {index}", "block": [
        {"name": "Run the role", "ansible.builtin.include_role": {"name": role}, "vars": variables},
        {"name": "Keep a success", "ansible.builtin.set_fact": {"outcomes": "{{ outcomes + [{'failed': false}] }}"}}],
        "rescue": [{"name": "Keep the failure",
                    "ansible.builtin.set_fact": {"outcomes": "{{ outcomes + [ansible_failed_result] }}"}}]}
        for index, (role, variables, _expected) in enumerate(cases)]
    tasks.append({"name": "Save the outcomes", "ansible.builtin.copy": {
        "content": "{{ outcomes | to_json }}", "dest": str(outcomes), "mode": "0600"}})
    start = now()
    completed = run_playbook(json.dumps([{"name": "Bad role variables", "hosts": "localhost", "connection": "local",
                                          "gather_facts": False, "vars": {"outcomes": []}, "tasks": tasks}]))
    output = completed.stdout + completed.stderr
    assert outcomes.exists(), output[-3000:]
    wrong = []
    for (role, variables, expected), result in zip(cases, json.loads(outcomes.read_text())):
        message = result.get("msg", "")
        if not result.get("failed") or expected not in message or "Traceback" in json.dumps(result):
            wrong.append(f"{role} {json.dumps(variables)[-160:]}: expected {expected!r}, got {message!r}"[:600])
    assert not wrong, "\n".join(wrong)
    writes = {cluster.name: [(event["verb"], event["requestURI"]) for event in
                             audit(cluster).writes(since=start, user=ADMIN_USER)] for cluster in (app, control_plane)}
    assert writes == {app.name: [], control_plane.name: []}
    figure(f"bad input: {len(cases)} role variables across 3 roles, all refused by name; 0 writes on both clusters")


def playbook_cases():
    """(playbook, extra variables, what the inventory lacks, expected): the playbooks' own variables."""
    service = {"group": "samples.klutch.bind", "resource": "postgresqlinstances"}
    return [
        ("bind_app_cluster.yml", {}, "control_plane", "hosts in group control_plane"),
        ("bind_app_cluster.yml", {"klutch_services": ""}, None, "klutch_services of app is not a list"),
        ("bind_app_cluster.yml", {"klutch_services": service}, None, "klutch_services of app is not a list"),
        ("bind_app_cluster.yml", {"klutch_services": ["postgresqlinstances"]}, None, "without a group or resource"),
        ("bind_app_cluster.yml", {"klutch_services": [{"group": "samples.klutch.bind"}]}, None,
         "without a group or resource"),
        ("bind_app_cluster.yml", {"klutch_services": [dict(service, resource="")]}, None, "without a group or resource"),
        ("bind_app_cluster.yml", {"klutch_services": [dict(service, accept_claims="secrets")]}, None,
         "accept_claims that is not a list"),
        ("bind_app_cluster.yml", {"klutch_consumer_scope": "namespaced"}, None, "klutch_consumer_scope of app"),
        ("bind_app_cluster.yml", {"klutch_external_address": "control-plane.example.com:6443"}, None,
         "klutch_external_address of control-plane"),
        ("bind_app_cluster.yml", {"klutch_external_address": ""}, None, "klutch_external_address of control-plane"),
        ("bind_app_cluster.yml", {"klutch_rotate_after": "monthly"}, None, "klutch_rotate_after of app"),
        ("bind_app_cluster.yml", {"klutch_rotate_after": "0d"}, None, "klutch_rotate_after of app"),
        ("bind_app_cluster.yml", {"klutch_rotation_grace": "5m"}, None, "klutch_rotation_grace of app"),
        ("bind_app_cluster.yml", {"klutch_reinstate": "maybe"}, None, "klutch_reinstate of app"),
        ("unbind_app_cluster.yml", {"klutch_unbind_control_plane": "all"}, None, "klutch_unbind_control_plane is \"all\""),
        ("unbind_app_cluster.yml", {"klutch_services": ""}, None, "klutch_services of app is not a list"),
        ("unbind_app_cluster.yml", {}, "control_plane", "hosts in group control_plane"),
        ("publish_service.yml", {"control_plane_templates": [{"name": "pg", "group": "samples.klutch.bind"}]}, None,
         'template "pg" has no resource'),
        ("publish_service.yml", {"control_plane_backend": "Deployment"}, None, "control_plane_backend"),
    ]


def test_every_bad_playbook_variable_is_refused_by_name_and_writes_nothing(
        app, control_plane, klutch_apis, audit, tmp_path, figure):
    cases = playbook_cases()
    wrong, start = [], now()
    for index, (playbook, variables, left_out, expected) in enumerate(cases):
        hosts = {"control_plane": {"control-plane": {"kubeconfig": str(control_plane.admin_kubeconfig)}},
                 "app_clusters": {"app": {"kubeconfig": str(app.admin_kubeconfig)}}}
        groups = {group: {"hosts": members} for group, members in hosts.items() if group != left_out}
        if left_out == "control_plane":  # the app clusters' tasks need a control plane's connection from somewhere
            variables = dict(variables, klutch_control_plane_kubeconfig=str(control_plane.admin_kubeconfig))
        inventory = tmp_path / f"inventory-{index}.json"
        inventory.write_text(json.dumps({"all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                     "konnector_mode": "none", "control_plane_backend": "none",
                     "klutch_services": [{"group": "samples.klutch.bind", "resource": "postgresqlinstances"}]},
            "children": groups}}))
        extra = tmp_path / f"extra-{index}.json"
        extra.write_text(json.dumps(variables))
        completed = ansible_playbook(ROOT / "playbooks" / playbook, "-i", str(inventory), "-e", f"@{extra}")
        output = completed.stdout + completed.stderr
        if completed.returncode == 0 or expected not in output or "Traceback" in output:
            wrong.append(f"{playbook} {json.dumps(variables)[:160]}: expected {expected!r}, got "
                         f"{output[-600:]!r}")
    assert not wrong, "\n".join(wrong)
    writes = {cluster.name: [(event["verb"], event["requestURI"]) for event in
                             audit(cluster).writes(since=start, user=ADMIN_USER)] for cluster in (app, control_plane)}
    assert writes == {app.name: [], control_plane.name: []}
    figure(f"bad input: {len(cases)} playbook variables across 3 playbooks, all refused by name; 0 writes")
