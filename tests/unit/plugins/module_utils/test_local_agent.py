"""The local agent's pieces that need no process: its fingerprint, its code, and what the image needs."""

import os
import subprocess
import sys

from ansible_collections.klutch.bind.plugins.module_utils import local_agent


def test_the_fingerprint_changes_with_arguments_code_and_credentials_only():
    code = {"agent.py": b"one"}
    base = local_agent.fingerprint(["konnector"], code, "token: a")
    assert local_agent.fingerprint(["konnector"], dict(code), "token: a") == base
    assert local_agent.fingerprint(["konnector", "--resync", "5"], code, "token: a") != base
    assert local_agent.fingerprint(["konnector"], {"agent.py": b"two"}, "token: a") != base
    assert local_agent.fingerprint(["konnector"], code, "token: b") != base


def test_the_code_copy_holds_every_module_the_agent_imports():
    code = local_agent.collection_code()
    assert {"agent/__init__.py", "agent/__main__.py", "agent/cli.py", "agent/runtime.py", "agent/konnector.py", "konnector.py", "backend.py",
            "sync.py", "k8s/__init__.py", "k8s/client.py", "k8s/connection.py"} <= set(code)
    assert "local_agent.py" in code


def test_the_agent_runs_without_ansible_core_as_its_image_does():
    # The image copies module_utils next to kubernetes and PyYAML only; ansible must not be imported.
    probe = ("import sys; import ansible_collections.klutch.bind.plugins.module_utils.agent.cli; "
             "print(sorted(name for name in sys.modules if name == 'ansible' or name.startswith('ansible.')))")
    environ = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                            env=environ).stdout
    assert output.strip() == "[]"
