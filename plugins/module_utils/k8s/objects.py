# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pure helpers on Kubernetes objects as dicts: change detection, redaction, diffs, readiness."""

import copy
import datetime
import re
from collections import namedtuple

REDACTED = "VALUE_REDACTED"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Fields the server sets on every write; they say nothing about what the user asked for.
VOLATILE_METADATA = ("resourceVersion", "generation", "creationTimestamp", "uid")
BEFORE_FIRST_APPLY = "before-first-apply"

Change = namedtuple("Change", ["before", "after", "changed"])


def kind_of(value):
    """A YAML reader's word for the type of `value` (never the value: it may be a secret)."""
    for types, word in ((bool, "boolean"), ((int, float), "number"), (str, "string"), (list, "list"), (dict, "mapping")):
        if isinstance(value, types):
            return word
    return "null" if value is None else type(value).__name__


def _comparable(obj):
    trimmed = copy.deepcopy(obj)
    metadata = trimmed.get("metadata") or {}
    for key in VOLATILE_METADATA:
        metadata.pop(key, None)
    # Field ownership counts (a first apply takes it over), the time of the last change does not.
    # The server invents a "before-first-apply" owner when an apply meets an object without any
    # managed fields (say, a Namespace that names nothing but itself); that is bookkeeping too.
    managed = [entry for entry in metadata.get("managedFields") or [] if entry.get("manager") != BEFORE_FIRST_APPLY]
    for entry in managed:
        entry.pop("time", None)
    if managed:
        metadata["managedFields"] = managed
    else:
        metadata.pop("managedFields", None)
    return trimmed


def has_changed(before, planned):
    """Whether `planned` (a dry run's answer) differs from `before` in anything but bookkeeping."""
    if before is None or planned is None:
        return before is not planned
    return _comparable(before) != _comparable(planned)


def holds(current, desired):
    """Whether `current` (an object as a watch shows it) already has every field `desired` sets, with the same
    value: applying `desired` would change nothing. Lists are compared item by item and must be as long, so a
    removed rule or reference counts as a change; fields only the server sets are not looked at."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(holds(current.get(key), value) for key, value in desired.items())
    if isinstance(desired, list):
        return isinstance(current, list) and len(current) == len(desired) and \
            all(holds(have, want) for have, want in zip(current, desired))
    return current == desired


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
    """Ansible's before/after of a Change, redacted."""
    return {"before": for_output(change.before) or {}, "after": for_output(change.after) or {}}


def condition_holds(condition_type, status="True"):
    """A predicate for wait(): the object has a status condition of this type and status."""
    def check(obj):
        conditions = ((obj or {}).get("status") or {}).get("conditions") or []
        return any(item.get("type") == condition_type and item.get("status") == status for item in conditions)
    return check


def api_group_of(obj):
    """The API group of an object's apiVersion; "" for the core group."""
    api_version = str(obj.get("apiVersion", ""))
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def _all_hold(*predicates):
    return lambda obj: all(predicate(obj) for predicate in predicates)


def _runs_its_package(obj):
    status = (obj or {}).get("status") or {}
    return status.get("currentIdentifier") == ((obj or {}).get("spec") or {}).get("package")


def rolled_out(obj):
    """A Deployment whose spec is rolled out, as `kubectl rollout status` judges it: the controller has seen
    this generation, every replica is updated and available, and no old replica is left."""
    metadata, spec, status = ((obj or {}).get(key) or {} for key in ("metadata", "spec", "status"))
    updated = status.get("updatedReplicas") or 0
    return (bool(obj) and (status.get("observedGeneration") or 0) >= (metadata.get("generation") or 0)
            and updated >= spec.get("replicas", 1) and (status.get("replicas") or 0) <= updated
            and (status.get("availableReplicas") or 0) >= updated)


def readiness(obj):
    """(predicate, description) for kinds with a known meaning of ready, else None.

    A CRD serves its kind once Established; an XRD also needs its claim CRD (Offered) when it
    names claims; a Crossplane package is ready when the revision of the package it names is
    Installed and Healthy (conditions alone may still describe the previous revision); a
    Deployment when it is rolled out.
    """
    api_group = api_group_of(obj)
    kind = obj.get("kind")
    if (api_group, kind) == ("apps", "Deployment"):
        return rolled_out, "rolled out"
    if (api_group, kind) == ("apiextensions.k8s.io", "CustomResourceDefinition"):
        return condition_holds("Established"), "Established"
    if (api_group, kind) == ("apiextensions.crossplane.io", "CompositeResourceDefinition"):
        if (obj.get("spec") or {}).get("claimNames"):
            return _all_hold(condition_holds("Established"), condition_holds("Offered")), "Established and Offered"
        return condition_holds("Established"), "Established"
    if api_group == "pkg.crossplane.io" and kind in ("Configuration", "Provider", "Function"):
        return (_all_hold(condition_holds("Installed"), condition_holds("Healthy"), _runs_its_package),
                "Installed and Healthy on its package")
    return None


def unmet_conditions(obj):
    """Conditions that are not True, as "Type=Status (reason: message)" for timeout messages."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return ["%s=%s (%s: %s)" % (item.get("type"), item.get("status"), item.get("reason") or "-",
                                item.get("message") or "no message")
            for item in conditions if item.get("status") != "True"]


def stable_conditions(wanted, previous, now):
    """`wanted` conditions with lastTransitionTime kept from `previous` while their status holds.

    Writing the same outcome twice then changes nothing, as a controller's status should.
    """
    before = dict((item.get("type"), item) for item in previous or [])
    stable = []
    for condition in wanted:
        old = before.get(condition["type"]) or {}
        since = old.get("lastTransitionTime") if old.get("status") == condition["status"] else None
        stable.append(dict(condition, lastTransitionTime=since or now))
    return stable


def duration_seconds(text):
    """Seconds of a Go duration as Kubernetes prints it ("5m0s", "1h", "2.5s"); None when unreadable (the
    consumer writes it, so any string may come)."""
    match = re.match(r"^(?:(\d{1,9})h)?(?:(\d{1,9})m(?!s))?(?:(\d{1,9}(?:\.\d{1,9})?)s)?$", text) \
        if isinstance(text, str) else None
    if not text or not match:
        return None
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(seconds or 0)


_RFC_3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
                       r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$")


def parse_time(text):
    """An RFC 3339 time, as anyone with write access may put it in a status, as an aware UTC datetime;
    None when it is not one. Every time the backend reads goes through here."""
    match = _RFC_3339.match(text) if isinstance(text, str) else None
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, utc, sign, offset_hours, offset_minutes = match.groups()
    try:
        moment = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                                   int(fraction[:6].ljust(6, "0")) if fraction else 0, tzinfo=datetime.timezone.utc)
    except ValueError:  # the 30th of February, hour 24, ...
        return None
    if not utc:
        offset = datetime.timedelta(hours=int(offset_hours), minutes=int(offset_minutes))
        moment -= offset if sign == "+" else -offset
    return moment
