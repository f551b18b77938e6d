# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Manifests from YAML text, dicts or files, checked before anything is sent to a cluster."""

import os

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import kind_of

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
        metadata = document.get("metadata")
        if not isinstance(metadata, dict) or not metadata.get("name"):
            missing.append("metadata.name")
        if missing:
            raise ConfigError("%s (kind %s) lacks %s: add it." % (where, document.get("kind", "unknown"), ", ".join(missing)))
        problem = object_problem(document)
        if problem:
            raise ConfigError("%s (%s %s): %s." % (where, document["kind"], metadata["name"], problem))
        objects.append(document)
    return objects


def object_problem(obj):
    """What is wrong with the shape of an object that names apiVersion, kind and name, or None.

    Only what the API server's answer would not explain, or what must be sound before then: the
    values of a Secret are read to keep them out of output.
    """
    metadata = obj["metadata"]
    for field in ("apiVersion", "kind"):
        if not isinstance(obj[field], str):
            return "%s is a %s, not a string: quote nothing, write it as in the API reference" % (field, kind_of(obj[field]))
    for field in ("name", "namespace"):
        if field in metadata and not isinstance(metadata[field], str):
            return "metadata.%s is a %s, not a string" % (field, kind_of(metadata[field]))
    for field in ("labels", "annotations"):
        if field in metadata and metadata[field] is not None and not isinstance(metadata[field], dict):
            return "metadata.%s is a %s, not a mapping of strings" % (field, kind_of(metadata[field]))
    if (obj["apiVersion"], obj["kind"]) == ("v1", "Secret"):
        for field in ("data", "stringData"):
            values = obj.get(field)
            if values is not None and not isinstance(values, dict):
                return "%s is a %s, not a mapping of keys to values: write key: value lines under %s" % (
                    field, kind_of(values), field)
            for key, value in (values or {}).items():
                if not isinstance(value, str):
                    return "%s.%s is a %s, not a string: quote it" % (field, key, kind_of(value))
    return None


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


def secret_values(definition):
    """The values of every Secret in `definition`, however malformed the rest: kept out of all output."""
    try:
        documents = parse_documents(definition, "definition") if isinstance(definition, str) else [definition]
    except ConfigError:
        return set()  # unparsable text is reported without its content
    found, pending = set(), list(documents)
    while pending:
        document = pending.pop()
        if isinstance(document, list):
            pending.extend(document)
        elif isinstance(document, dict):
            pending.extend(item for item in [document.get("items")] if isinstance(item, list))
            if document.get("kind") == "Secret":
                for field in ("data", "stringData"):
                    values = document.get(field)
                    values = values.values() if isinstance(values, dict) else values if isinstance(values, list) else []
                    found.update(str(value) for value in values if value not in (None, ""))
    return found


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
