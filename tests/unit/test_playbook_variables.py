"""The README's table of playbook variables names exactly the variables the playbooks read.

The playbooks' own helper variables start with `klutch_bind_` and are set where they are used; module
names (`klutch.bind.klutch_*`) and registered results are not variables a user sets."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yml")) + sorted((ROOT / "playbooks" / "tasks").glob("*.yml"))
TABLE_ROW = re.compile(r"^\| `([a-z_]+)` \|", re.M)
READ = re.compile(r"(?<!klutch\.bind\.)(?<!\w)(klutch_[a-z_]+|kubeconfig_context|kubeconfig)\b")


def documented():
    readme = (ROOT / "README.md").read_text()
    start = readme.index("The variables the three playbooks read")
    return set(TABLE_ROW.findall(readme[start:readme.index("\n\n", readme.index("| variable |", start))]))


def read_by_playbooks():
    names = set()
    for path in PLAYBOOKS:
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        names.update(name for name in READ.findall(text) if not name.startswith("klutch_bind_"))
    # Results the playbooks register themselves.
    registered = {name for path in PLAYBOOKS for name in re.findall(r"register: (\w+)", path.read_text())}
    return names - registered


def test_the_table_and_the_playbooks_name_the_same_variables():
    assert read_by_playbooks() == documented()
