# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: agent_bundle
short_description: The klutch.bind agents and their pure-Python dependencies as one reproducible zip
version_added: 0.1.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - Builds, on the controller, a zip that a Python runs the konnector and backend agents from with
    C(PYTHONPATH=agent.zip python -m ansible_collections.klutch.bind.plugins.module_utils.agent.cli <role>), so
    an official Python image needs no image of this collection. The Python must be one that the bundled
    C(urllib3) supports (3.10 or later for urllib3 2.x).
  - It holds the collection's C(module_utils) files that the agent imports (found from its import
    statements), under C(ansible_collections/klutch/bind/plugins/module_utils), and the C(.py) files of
    the two packages they need, C(urllib3) and PyYAML's pure-Python C(yaml), taken from the controller's
    Python. Nothing else, so neither ansible-core nor the C(kubernetes) package.
  - Reproducible, entries sorted and dated 1980-01-01, so an unchanged collection and unchanged
    dependencies give the same bytes and the same C(sha256) on the same controller.
  - The roles C(klutch.bind.konnector) and C(klutch.bind.control_plane) ship it in a ConfigMap.
options: {}
notes:
  - The controller's Python needs C(urllib3) and PyYAML (ansible-core needs PyYAML already).
  - Takes no terms.
seealso:
  - module: klutch.bind.klutch_manifest
"""

EXAMPLES = r"""
- name: Ship the agent in a ConfigMap
  vars:
    bundle: "{{ lookup('klutch.bind.agent_bundle') }}"
  klutch.bind.klutch_manifest:
    definition:
      apiVersion: v1
      kind: ConfigMap
      metadata:
        name: klutch-bind-konnector-bundle
        namespace: klutch-bind
        annotations:
          klutch.bind/bundle-sha256: "{{ bundle.sha256 }}"
      binaryData:
        agent.zip: "{{ bundle.data }}"

- name: Show its size and what it holds
  ansible.builtin.debug:
    msg: "{{ lookup('klutch.bind.agent_bundle') | ansible.builtin.dict2items | rejectattr('key', 'eq', 'data') }}"
"""

RETURN = r"""
_raw:
  description: One dict that describes the zip.
  type: list
  elements: dict
  contains:
    data:
      description: The zip, base64-encoded (as a ConfigMap's C(binaryData) takes it).
      type: str
    sha256:
      description: The SHA-256 of the zip, in hex.
      type: str
      sample: 3f5a0c4e9b1d2a7c8e6f4b3a2d1c0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d
    size:
      description: The zip's size in bytes.
      type: int
      sample: 231456
    entry:
      description: The module to run with C(python -m), followed by the agent's role and options.
      type: str
      sample: ansible_collections.klutch.bind.plugins.module_utils.agent.cli
    files:
      description: The paths inside the zip, in their order.
      type: list
      elements: str
    dependencies:
      description: The version of each bundled distribution, from the controller's Python.
      type: dict
      sample: {"PyYAML": "6.0.2", "urllib3": "2.2.3"}
"""

import ast
import base64
import hashlib
import io
import os
import zipfile
from importlib.metadata import PackageNotFoundError, version

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

PACKAGE = "ansible_collections.klutch.bind.plugins.module_utils"
ENTRY = PACKAGE + ".agent.cli"
MODULE_UTILS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "module_utils")
# (import name, distribution): what the agent's modules import beyond the standard library. The
# kubernetes package is imported only for kubeconfigs an agent in a Pod never gets.
DEPENDENCIES = (("urllib3", "urllib3"), ("yaml", "PyYAML"))
# Zip entries carry a date; a fixed one keeps the bytes equal between runs (zip cannot go before 1980).
FIXED_DATE = (1980, 1, 1, 0, 0, 0)


def module_path(name, directory=MODULE_UTILS):
    """The file of a module_utils module or package, named relative to the package ("agent", "k8s.client")."""
    base = os.path.join(directory, *name.split("."))
    return os.path.join(base, "__init__.py") if os.path.isdir(base) else base + ".py"


def imported_module_utils(name, directory=MODULE_UTILS):
    """The module_utils modules `name` needs, itself and the packages above them included, from their import
    statements; each named relative to the package, as "agent" or "k8s.client"."""
    needed, pending = set(), [name]
    while pending:
        current = pending.pop()
        if current in needed:
            continue
        needed.add(current)
        # Importing k8s.client runs k8s/__init__.py first.
        pending.extend(current.rsplit(".", depth)[0] for depth in range(1, current.count(".") + 1))
        with open(module_path(current, directory), "rb") as handle:
            tree = ast.parse(handle.read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module == PACKAGE or (node.module or "").startswith(PACKAGE + ".")):
                parent = node.module[len(PACKAGE) + 1:]
                pending.extend(_imported(parent, alias.name, directory) for alias in node.names)
            elif isinstance(node, ast.Import):
                pending.extend(alias.name[len(PACKAGE) + 1:] for alias in node.names
                               if alias.name.startswith(PACKAGE + "."))
    return needed


def _imported(parent, name, directory):
    """What `from <parent> import <name>` loads: the submodule <parent>.<name> if there is one, else <parent>."""
    candidate = "%s.%s" % (parent, name) if parent else name
    if not parent or os.path.exists(module_path(candidate, directory)):
        return candidate
    return parent


def package_sources(import_name):
    """{path in the zip: bytes} of every .py file of an importable package of the controller's Python."""
    try:
        package = __import__(import_name)
    except ImportError:
        raise AnsibleLookupError("The agent bundle needs the Python package %s on the controller: install it in the "
                                 "Python that runs ansible-playbook (pip install %s)." % (import_name, dict(
                                     DEPENDENCIES)[import_name]))
    root = os.path.dirname(os.path.abspath(package.__file__))
    found = {}
    for directory, subdirectories, names in os.walk(root):
        subdirectories[:] = [sub for sub in subdirectories if sub != "__pycache__"]
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                with open(path, "rb") as handle:
                    found[os.path.relpath(path, os.path.dirname(root)).replace(os.sep, "/")] = handle.read()
    return found


def bundle_files(directory=MODULE_UTILS):
    """{path in the zip: bytes}: the agent's module_utils, empty package markers above them, its dependencies."""
    prefix = PACKAGE.replace(".", "/")
    files = {}
    for name in imported_module_utils(ENTRY[len(PACKAGE) + 1:], directory):
        path = module_path(name, directory)
        with open(path, "rb") as handle:
            files["%s/%s" % (prefix, os.path.relpath(path, directory).replace(os.sep, "/"))] = handle.read()
    parts = prefix.split("/")
    for depth in range(1, len(parts) + 1):  # regular packages: zipimport of old Pythons knows no namespace ones
        files["/".join(parts[:depth] + ["__init__.py"])] = b""
    for import_name, _distribution in DEPENDENCIES:
        files.update(package_sources(import_name))
    return files


def build_zip(files):
    """The zip of `files`, the same bytes for the same files."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(files):
            info = zipfile.ZipInfo(path, date_time=FIXED_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whichever system builds it
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[path])
    return buffer.getvalue()


def distribution_version(distribution):
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def describe(data, files):
    return {"data": base64.b64encode(data).decode("ascii"), "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data), "entry": ENTRY, "files": sorted(files),
            "dependencies": dict((distribution, distribution_version(distribution))
                                 for _import_name, distribution in DEPENDENCIES)}


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if terms:
            raise AnsibleLookupError("klutch.bind.agent_bundle takes no terms.")
        files = bundle_files()
        return [describe(build_zip(files), files)]
