"""The local agent's pieces that need no cluster: its fingerprint, its code, what the image needs, and how it
knows its own process."""

import json
import os
import subprocess
import sys

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.agent import local


def test_the_fingerprint_changes_with_arguments_code_and_credentials_only():
    code = {"agent.py": b"one"}
    base = local.fingerprint(["konnector"], code, "token: a")
    assert local.fingerprint(["konnector"], dict(code), "token: a") == base
    assert local.fingerprint(["konnector", "--resync", "5"], code, "token: a") != base
    assert local.fingerprint(["konnector"], {"agent.py": b"two"}, "token: a") != base
    assert local.fingerprint(["konnector"], code, "token: b") != base


def test_the_code_copy_holds_every_module_the_agent_imports():
    code = local.collection_code()
    assert {"agent/__init__.py", "agent/cli.py", "agent/runtime.py", "agent/konnector.py", "lifecycle/sync.py",
            "lifecycle/serve.py", "plan/sync.py", "k8s/__init__.py", "k8s/client.py", "k8s/connection.py"} <= set(code)
    assert "agent/local.py" in code


def test_the_agent_runs_without_ansible_core_as_its_image_does():
    # The image copies module_utils next to kubernetes and PyYAML only; ansible must not be imported.
    probe = ("import sys; import ansible_collections.klutch.bind.plugins.module_utils.agent.cli; "
             "print(sorted(name for name in sys.modules if name == 'ansible' or name.startswith('ansible.')))")
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            env=environ).stdout
    assert output.strip() == "[]"


@pytest.mark.parametrize("module, ours", [
    ("ansible_collections.klutch.bind.plugins.module_utils.agent.cli", True),
    ("ansible_collections.klutch.bind.plugins.module_utils.agent", True),  # an agent of release 0.1.0
    ("some.other.module", False),
])
def test_an_agent_of_its_directory_is_known_by_the_module_it_runs(tmp_path, module, ours):
    process = subprocess.Popen([sys.executable, "-c", "import time; print(flush=True); time.sleep(30)", module],
                               cwd=tmp_path, stdout=subprocess.PIPE)
    try:
        process.stdout.readline()  # it runs: its command line is there to read
        (tmp_path / local.STATE_FILE).write_text(json.dumps({"pid": process.pid}))
        assert local.LocalAgent(str(tmp_path)).running() == (process.pid if ours else None)
    finally:
        process.kill()
        process.wait()
