# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers on Kubernetes objects as dicts: change detection, redaction, diffs."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
from collections import namedtuple

REDACTED = "VALUE_REDACTED"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Fields the server sets on every write; they say nothing about what the user asked for.
VOLATILE_METADATA = ("resourceVersion", "generation", "managedFields", "creationTimestamp", "uid")

Change = namedtuple("Change", ["before", "after", "changed"])


def _without_volatile(obj):
    if obj is None:
        return None
    trimmed = copy.deepcopy(obj)
    metadata = trimmed.get("metadata") or {}
    for key in VOLATILE_METADATA:
        metadata.pop(key, None)
    return trimmed


def has_changed(before, after, dry_run):
    """Whether a write changed the object.

    A real write that changes nothing keeps the resourceVersion, which is exact. A dry run never
    persists, so its resourceVersion says nothing: compare the content instead.
    """
    if before is None or after is None:
        return before is not after
    if not dry_run:
        return before["metadata"].get("resourceVersion") != after["metadata"].get("resourceVersion")
    return _without_volatile(before) != _without_volatile(after)


def redact(obj):
    """A copy safe to show: Secret values and last-applied annotations of Secrets replaced."""
    if not isinstance(obj, dict) or obj.get("kind") != "Secret":
        return obj
    safe = copy.deepcopy(obj)
    for field in ("data", "stringData"):
        if isinstance(safe.get(field), dict):
            safe[field] = dict((key, REDACTED) for key in safe[field])
    annotations = (safe.get("metadata") or {}).get("annotations") or {}
    if LAST_APPLIED in annotations:
        annotations[LAST_APPLIED] = REDACTED
    return safe


def for_output(obj):
    """What modules return and diff: redacted, without managedFields noise."""
    if obj is None:
        return None
    shown = redact(obj)
    if "managedFields" in (shown.get("metadata") or {}):
        shown = copy.deepcopy(shown) if shown is obj else shown
        shown["metadata"].pop("managedFields", None)
    return shown


def diff(change):
    """Ansible's before/after diff for a Change, redacted."""
    return {"before": for_output(change.before) or {}, "after": for_output(change.after) or {}}
