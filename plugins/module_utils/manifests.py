# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manifests from YAML text, dicts or files, checked before anything is sent to a cluster."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

from ansible_collections.klutch.bind.plugins.module_utils.errors import ConfigError

try:
    import yaml
except ImportError:  # reported by the module's import check
    yaml = None

YAML_SUFFIXES = (".yaml", ".yml")


def manifest_files(src):
    """A file, or the YAML files of a directory and its subdirectories, in path order."""
    if os.path.isfile(src):
        return [src]
    if not os.path.isdir(src):
        raise ConfigError("src %s does not exist: give a YAML file or a directory of them." % src)
    found = []
    for directory, _subdirs, names in os.walk(src):
        found.extend(os.path.join(directory, name) for name in names if name.endswith(YAML_SUFFIXES))
    if not found:
        raise ConfigError("src %s holds no .yaml or .yml file." % src)
    return sorted(found)


def parse_documents(text, source):
    if yaml is None:
        raise ConfigError("PyYAML is not installed: install the collection's requirements.txt.")
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = " at line %d, column %d" % (mark.line + 1, mark.column + 1) if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError("%s is not valid YAML%s: %s. Fix the file." % (source, where, problem))


def flatten(documents, source):
    """Objects from documents: `*List` kinds are unpacked; each must name apiVersion, kind, name."""
    objects = []
    for index, document in enumerate(documents):
        where = "%s, document %d" % (source, index + 1)
        if isinstance(document, list):
            objects.extend(flatten(document, source))
            continue
        if not isinstance(document, dict):
            raise ConfigError("%s is not a Kubernetes object (a YAML mapping)." % where)
        if str(document.get("kind", "")).endswith("List") and isinstance(document.get("items"), list):
            objects.extend(flatten(document["items"], source))
            continue
        missing = [field for field in ("apiVersion", "kind") if not document.get(field)]
        if not (document.get("metadata") or {}).get("name"):
            missing.append("metadata.name")
        if missing:
            raise ConfigError("%s (kind %s) lacks %s: add it." % (where, document.get("kind", "unknown"), ", ".join(missing)))
        objects.append(document)
    return objects


def load(definition=None, src=None):
    """Every object of `definition` (dict, list or YAML text) or of the files under `src`."""
    if src is not None:
        objects = []
        for path in manifest_files(src):
            with open(path) as handle:
                objects.extend(flatten(parse_documents(handle.read(), path), path))
        return objects
    if isinstance(definition, str):
        return flatten(parse_documents(definition, "definition"), "definition")
    return flatten(definition if isinstance(definition, list) else [definition], "definition")


DEFINING_KINDS = {
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("apiextensions.crossplane.io/v1", "CompositeResourceDefinition"),
}


def served_by(definition):
    """{(apiVersion, kind): namespaced} for what a CRD or a Crossplane XRD object will serve.

    An XRD serves its cluster-scoped composite kind and, when it names claims, the namespaced
    claim kind, in each served version.
    """
    spec = definition.get("spec") or {}
    versions = ["%s/%s" % (spec.get("group"), version.get("name"))
                for version in spec.get("versions") or [] if version.get("served", True)]
    if definition.get("kind") == "CompositeResourceDefinition":
        kinds = [((spec.get("names") or {}).get("kind"), False)]
        if spec.get("claimNames"):
            kinds.append((spec["claimNames"].get("kind"), True))
    else:
        kinds = [((spec.get("names") or {}).get("kind"), spec.get("scope", "Namespaced") == "Namespaced")]
    return dict(((version, kind), namespaced) for version in versions for kind, namespaced in kinds)


def identity(obj):
    metadata = obj.get("metadata") or {}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": metadata.get("name"),
            "namespace": metadata.get("namespace")}
