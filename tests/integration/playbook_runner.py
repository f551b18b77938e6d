"""Running ansible-playbook from tests, the way users run it."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ansible_playbook(playbook, *options, env=None, cwd=None):
    """Run ansible-playbook from this venv; K8S_AUTH_* of the caller's environment never leak in."""
    command = [str(Path(sys.executable).with_name("ansible-playbook")), str(playbook), *options]
    environ = {key: value for key, value in os.environ.items() if not key.startswith("K8S_AUTH_")}
    environ.update(env or {}, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
                   ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    return subprocess.run(command, env=environ, capture_output=True, text=True, cwd=cwd or ROOT, check=False)


def mode_options(check, diff):
    return (["--check"] if check else []) + (["--diff"] if diff else [])


def recap(completed):
    """{'ok': n, 'changed': n, 'failed': n, ...} of a one-host play recap."""
    line = next(line for line in completed.stdout.splitlines()[::-1] if "ok=" in line and "changed=" in line)
    return {key: int(value) for key, value in (part.split("=") for part in line.split(":", 1)[1].split())}


def role_play(role, variables):
    """A one-play playbook that runs `role` on localhost with `variables`."""
    return f"""\
        - name: Run {role}
          hosts: localhost
          connection: local
          gather_facts: false
          roles:
            - role: {role}
              vars: {json.dumps(variables)}
        """
