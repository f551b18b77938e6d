"""The agent bundle: the same bytes for the same code, and exactly what the agent imports."""

import base64
import io
import json
import os
import subprocess
import sys
import zipfile

import pytest

from ansible_collections.klutch.bind.plugins.lookup import agent_bundle
from ansible_collections.klutch.bind.plugins.lookup.agent_bundle import LookupModule

MODULE_UTILS = "ansible_collections/klutch/bind/plugins/module_utils/"

# Run inside a Python that sees only the standard library and the zip: import the agent, build the
# client it would build in a Pod, and report where every module came from.
PROBE = r"""
import json, os, sys
from ansible_collections.klutch.bind.plugins.module_utils.agent import cli
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
options = cli.parse(["konnector", "--resync=5"])
client = ClusterClient.from_params({})
missing = []
for name in ("kubernetes", "ansible"):
    try:
        __import__(name)
    except ImportError:
        missing.append(name)
zip_path = os.environ["PYTHONPATH"]
print(json.dumps({
    "label": client.label,
    "from_zip": sorted(name for name, module in sys.modules.items()
                       if (getattr(module, "__file__", None) or "").startswith(zip_path + os.sep)),
    "elsewhere": sorted(name.split(".")[0] for name, module in sys.modules.items()
                        if name.split(".")[0] in ("urllib3", "yaml", "ansible_collections")
                        and not (getattr(module, "__file__", None) or zip_path).startswith(zip_path)),
    "missing": missing,
}))
"""


@pytest.fixture(scope="module")
def bundle():
    return LookupModule().run([])[0]


def entries(bundle):
    return zipfile.ZipFile(io.BytesIO(base64.b64decode(bundle["data"]))).infolist()


def test_an_unchanged_collection_gives_the_same_bytes(bundle):
    again = LookupModule().run([])[0]
    assert again == bundle
    infos = entries(bundle)
    assert [info.filename for info in infos] == sorted(info.filename for info in infos) == bundle["files"]
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert {(info.create_system, info.external_attr) for info in infos} == {(3, 0o644 << 16)}
    assert bundle["size"] == len(base64.b64decode(bundle["data"])) < 512 * 1024, "well under a ConfigMap's 1 MiB"


def test_a_changed_file_changes_the_bytes_and_the_hash(bundle):
    files = agent_bundle.bundle_files()
    files[MODULE_UTILS + "agent/konnector.py"] += b"\n# changed\n"
    changed = agent_bundle.describe(agent_bundle.build_zip(files), files)
    assert changed["sha256"] != bundle["sha256"]


def test_it_holds_the_agents_module_utils_and_two_pure_python_packages_only(bundle):
    files = bundle["files"]
    assert {path.split("/")[0] for path in files} == {"ansible_collections", "urllib3", "yaml"}
    assert all(path.endswith(".py") for path in files), "no compiled extension, no bytecode"
    own = {path[len(MODULE_UTILS):] for path in files if path.startswith(MODULE_UTILS)}
    assert {"agent/__init__.py", "agent/cli.py", "agent/runtime.py", "agent/konnector.py", "agent/backend.py",
            "lifecycle/sync.py", "lifecycle/serve.py", "k8s/__init__.py", "k8s/client.py", "k8s/connection.py",
            "k8s/rollout.py"} <= own
    # What the modules need: ansible-core (module.py), a local process (agent/local.py), registries (oci.py,
    # lifecycle/publish.py).
    assert not own & {"module.py", "agent/local.py", "oci.py", "plan/dataservices.py", "lifecycle/publish.py"}
    assert bundle["entry"] == "ansible_collections.klutch.bind.plugins.module_utils.agent.cli"
    assert set(bundle["dependencies"]) == {"urllib3", "PyYAML"}


def test_the_agent_runs_from_the_zip_alone_and_imports_all_of_it(bundle, tmp_path):
    archive = tmp_path / "agent.zip"
    archive.write_bytes(base64.b64decode(bundle["data"]))
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("token")
    (account / "ca.crt").write_text("CA")
    # -S: no site-packages, so neither this venv's urllib3, PyYAML, kubernetes nor ansible-core.
    environ = {"PYTHONPATH": str(archive), "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
               "KLUTCH_BIND_SERVICE_ACCOUNT_DIR": str(account), "PATH": os.environ.get("PATH", "")}
    bare = subprocess.run([sys.executable, "-S", "-s", "-c", "import urllib3"], env=dict(environ, PYTHONPATH=""),
                          capture_output=True, text=True, check=False)
    assert bare.returncode != 0 and "No module named 'urllib3'" in bare.stderr
    probe = subprocess.run([sys.executable, "-S", "-s", "-c", PROBE], env=environ, capture_output=True, text=True,
                           check=False, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert found["label"] == "cluster in-cluster (https://10.96.0.1:443)"
    assert found["missing"] == ["kubernetes", "ansible"] and found["elsewhere"] == []
    package = MODULE_UTILS.replace("/", ".")
    loaded = {name[len(package):] for name in found["from_zip"] if name.startswith(package)}
    bundled = {path[len(MODULE_UTILS):-len(".py")].replace("/", ".") for path in bundle["files"]
               if path.startswith(MODULE_UTILS) and path != MODULE_UTILS + "__init__.py"}
    bundled = {name[:-len(".__init__")] if name.endswith(".__init__") else name for name in bundled}
    assert loaded == bundled, "the bundle holds exactly the module_utils the agent imports"
    assert {name.split(".")[0] for name in found["from_zip"]} == {"ansible_collections", "urllib3", "yaml"}


def test_terms_are_refused():
    from ansible.errors import AnsibleLookupError

    with pytest.raises(AnsibleLookupError, match="takes no terms"):
        LookupModule().run(["agent"])
