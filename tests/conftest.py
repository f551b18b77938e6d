"""Makes the checkout importable as ansible_collections.klutch.bind, for tests and for Ansible."""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLLECTIONS = Path(tempfile.mkdtemp(prefix="klutch-bind-collections-"))
atexit.register(shutil.rmtree, COLLECTIONS, True)  # removes the link, never what it points at
(COLLECTIONS / "ansible_collections" / "klutch").mkdir(parents=True)
(COLLECTIONS / "ansible_collections" / "klutch" / "bind").symlink_to(ROOT)
sys.path.insert(0, str(COLLECTIONS))
os.environ["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
