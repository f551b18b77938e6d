"""Makes the checkout importable as ansible_collections.klutch.bind, for tests and for Ansible, and
gathers the figures tests measure into one section at the end of the run."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = Path(tempfile.mkdtemp(prefix="klutch-bind-collections-"))
atexit.register(shutil.rmtree, COLLECTIONS, True)  # removes the link, never what it points at
(COLLECTIONS / "ansible_collections" / "klutch").mkdir(parents=True)
(COLLECTIONS / "ansible_collections" / "klutch" / "bind").symlink_to(ROOT)
sys.path.insert(0, str(COLLECTIONS))
os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)


FIGURES = pytest.StashKey()


def pytest_configure(config):
    config.stash[FIGURES] = []


@pytest.fixture(scope="session")
def figure(pytestconfig):
    """Records one measured figure ("bad input: 104 cases ..., 0 writes") for the run's summary."""
    return pytestconfig.stash[FIGURES].append


def pytest_terminal_summary(terminalreporter, config):
    """The measured figures of every test that recorded some, together at the end of the run, so a CI log
    shows them without -s."""
    figures = config.stash.get(FIGURES, [])
    if figures:
        terminalreporter.section("figures")
        for text in figures:
            terminalreporter.write_line(text)
