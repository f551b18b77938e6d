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


def recaps(completed):
    """{host: {'ok': n, 'changed': n, 'failed': n, ...}} from the play recap."""
    found, in_recap = {}, False
    for line in completed.stdout.splitlines():
        in_recap = in_recap or line.startswith("PLAY RECAP")
        if in_recap and "ok=" in line and "changed=" in line:
            host, _sep, counts = line.partition(":")
            found[host.strip()] = {key: int(value) for key, value in (part.split("=") for part in counts.split())}
    return found


def recap(completed):
    """The recap counts of a one-host play."""
    counts = list(recaps(completed).values())
    assert len(counts) == 1, counts
    return counts[0]


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
