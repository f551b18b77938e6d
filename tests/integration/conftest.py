"""Session fixtures: one lab (control-plane + app) for the whole run, and helpers on it."""

import json
import signal
import sys
import textwrap
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from klutch_lab import DEFAULT_CLUSTERS, AuditLog, Lab
from playbook_runner import ansible_playbook, mode_options, role_play

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items):
    """The Pod scenario first: it runs a lab of its own with Crossplane, and only one Crossplane can run
    per machine, so it must be done before the session's lab starts."""
    items.sort(key=lambda item: item.path.name != "test_agent_pods.py")


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """The lab, brought up once per test run in its own directory and stopped at the end."""
    started = Lab(tmp_path_factory.mktemp("lab") / "state", progress=lambda line: print(line, file=sys.stderr))
    # A CI cancel sends SIGTERM: turn it into an exit, so this fixture's teardown still stops the lab.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    started.up(DEFAULT_CLUSTERS)
    try:
        yield started
    finally:
        started.down()
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def control_plane(lab):
    return lab.cluster("control-plane")


@pytest.fixture(scope="session")
def app(lab):
    return lab.cluster("app")


@pytest.fixture(scope="session")
def audit(lab):
    """audit(cluster) -> the AuditLog reader of that cluster (one reader per cluster, a new one when a
    cluster of the same name was started again)."""
    readers = {}

    def reader(cluster):
        key = (cluster.name, json.dumps(cluster.record, sort_keys=True))
        if key not in readers:
            readers[key] = AuditLog(cluster)
        return readers[key]

    return reader


@pytest.fixture(scope="session")
def client_for():
    """client_for(kubeconfig_path, **options) -> a ClusterClient as a module would build it."""

    def build(kubeconfig=None, dry_run=False, environ=None, **options):
        params = dict(options, kubeconfig=str(kubeconfig) if kubeconfig else None)
        return ClusterClient.from_params(params, dry_run=dry_run, environ=environ or {})

    return build


@pytest.fixture(scope="session")
def token(app, client_for):
    """A real ServiceAccount token of the app cluster (TokenRequest API), for host + api_key tests."""
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import SERVICE_ACCOUNTS

    admin = client_for(app.admin_kubeconfig)
    admin.apply(SERVICE_ACCOUNTS, {"metadata": {"name": "token-holder", "namespace": "default"}})
    review = admin.request("POST", SERVICE_ACCOUNTS.path("default", "token-holder", "token"), "create",
                           "a token", body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                            "spec": {"expirationSeconds": 3600}})
    return review["status"]["token"]


@pytest.fixture
def admin(app, client_for):
    return client_for(app.admin_kubeconfig)


@pytest.fixture
def namespace(admin):
    """A fresh namespace on the app cluster, deleted after the test."""
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import NAMESPACES

    name = "t-" + uuid.uuid4().hex[:8]
    admin.apply(NAMESPACES, {"metadata": {"name": name}})
    yield name
    admin.delete(NAMESPACES, name)


@pytest.fixture(scope="session")
def run_playbook(tmp_path_factory):
    """run_playbook(text, check=False, diff=False) -> the finished ansible-playbook process."""
    workdir = tmp_path_factory.mktemp("playbooks")

    def run(text, check=False, diff=False, env=None):
        playbook = workdir / f"{uuid.uuid4().hex[:8]}.yml"
        playbook.write_text(textwrap.dedent(text))
        return ansible_playbook(playbook, *mode_options(check, diff), env=env, cwd=workdir)

    return run


@pytest.fixture(scope="session")
def run_task(run_playbook, tmp_path_factory):
    """run_task(module, args, env=None, check=False, diff=False) -> (result, output) of one task.

    The module runs through ansible-playbook and AnsiballZ like in any playbook; `output` is
    everything ansible-playbook printed, so tests can check it for tracebacks and secrets.
    """
    results = tmp_path_factory.mktemp("results")

    def run(module, args, env=None, check=False, diff=False):
        result_file = results / f"{uuid.uuid4().hex[:8]}.json"
        completed = run_playbook(f"""\
            - name: Run one task
              hosts: localhost
              connection: local
              gather_facts: false
              tasks:
                - name: Task under test
                  {module}: {json.dumps(args)}
                  register: outcome
                  ignore_errors: true
                - name: Save the outcome
                  ansible.builtin.copy:
                    content: "{{{{ outcome | to_json }}}}"
                    dest: {result_file}
                    mode: "0600"
                  check_mode: false
            """, check=check, diff=diff, env=env)
        output = completed.stdout + completed.stderr
        assert result_file.exists(), output
        return json.loads(result_file.read_text()), output

    return run


KLUTCH_CRDS = ROOT / "roles" / "klutch_apis" / "files" / "klutch-crds.yaml"


@pytest.fixture(scope="session")
def klutch_apis(control_plane):
    """The control plane with the Klutch CRDs installed and Established; returns an admin client."""
    from ansible_collections.klutch.bind.plugins.module_utils.k8s import manifests
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import condition_holds
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import CUSTOM_RESOURCE_DEFINITIONS

    admin = ClusterClient.from_params({"kubeconfig": str(control_plane.admin_kubeconfig)}, environ={})
    for crd in manifests.load(src=str(KLUTCH_CRDS)):
        admin.apply(CUSTOM_RESOURCE_DEFINITIONS, crd)
        admin.wait(CUSTOM_RESOURCE_DEFINITIONS, crd["metadata"]["name"], None, condition_holds("Established"), 30,
                   "Established")
    return admin


@pytest.fixture(scope="session")
def crossplane(control_plane):
    """The lab's Crossplane: its registry (host:port) and the crank CLI that builds packages."""
    from klutch_lab.binaries import crank_path

    return {"registry": control_plane.registry, "crank": str(crank_path())}


@pytest.fixture(scope="session")
def control_plane_play(control_plane, crossplane):
    """control_plane_play(cluster=control_plane, **role_vars) -> a playbook running the control_plane role."""

    def play(cluster=None, **role_vars):
        variables = dict({"control_plane_kubeconfig": str((cluster or control_plane).admin_kubeconfig),
                          "control_plane_crank": crossplane["crank"]}, **role_vars)
        return role_play("klutch.bind.control_plane", variables)

    return play


@pytest.fixture(scope="session")
def bound_world(lab, control_plane, klutch_apis, control_plane_play, run_playbook, run_task, tmp_path_factory):
    """with bound_world(driver, name, agent_names=...) as world: an app cluster `name` bound to the MangoDB
    API (sync_world.make_world); after the block its agents stop and the cluster goes."""
    from sync_world import end_world, make_world

    @contextmanager
    def bound(driver, name, agent_names=("konnector", "backend")):
        world = make_world(driver, name, lab, control_plane, control_plane_play, run_playbook, run_task,
                           tmp_path_factory.mktemp(name))
        try:
            yield world
        finally:
            end_world(world, lab, run_task, agent_names=agent_names)

    return bound


class Publication:
    """The role's runs that published the sample package: check mode, first and second run."""

    def __init__(self, package):
        self.package = package
        self.runs = {}
        self.seconds = {}
        self.writes = {}
        self.listings = {}
        self.in_registry = {}


def crossplane_listing(client):
    """What publishing could have written: Crossplane's packages and APIs, CRDs, namespaces."""
    from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
        CUSTOM_RESOURCE_DEFINITIONS, NAMESPACES, Resource)
    from ansible_collections.klutch.bind.plugins.module_utils.kinds import COMPOSITE_RESOURCE_DEFINITIONS, COMPOSITIONS

    configurations = Resource("pkg.crossplane.io/v1", "Configuration", "configurations", namespaced=False)
    return {resource.kind: sorted(obj["metadata"]["name"] for obj in client.list(resource)[0])
            for resource in (configurations, COMPOSITE_RESOURCE_DEFINITIONS, COMPOSITIONS,
                             CUSTOM_RESOURCE_DEFINITIONS, NAMESPACES)}


@pytest.fixture(scope="session")
def sample_dataservices(control_plane, crossplane, control_plane_play, run_playbook, audit):
    """The shipped sample package, built, pushed and installed by the role: check mode first, then twice."""
    import time

    from ansible_collections.klutch.bind.plugins.module_utils import oci
    from klutch_lab.audit import now
    from klutch_lab.cluster import ADMIN_USER

    client = ClusterClient.from_params({"kubeconfig": str(control_plane.admin_kubeconfig)}, environ={})
    publication = Publication(f"{crossplane['registry']}/klutch-bind/sample-dataservices:v0.1.0")
    play = control_plane_play(control_plane_dataservices=[
        {"name": "sample-dataservices", "src": "dataservices", "package": publication.package}])
    for run, check in (("check", True), ("first", False), ("second", False)):
        publication.listings[run] = crossplane_listing(client)
        start, started = now(), time.monotonic()
        publication.runs[run] = run_playbook(play, check=check)
        publication.seconds[run] = time.monotonic() - started
        publication.writes[run] = audit(control_plane).count_writes(since=start, user=ADMIN_USER)
        publication.in_registry[run] = oci.Registry().manifest(oci.Reference(publication.package)) is not None
    publication.listings["after"] = crossplane_listing(client)
    return publication
