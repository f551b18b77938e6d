# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reads a lab cluster's audit log (Metadata level), to count the write requests a test made."""

import datetime
import json
import time
import uuid

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def _timestamp(event):
    return datetime.datetime.fromisoformat(event["requestReceivedTimestamp"].replace("Z", "+00:00"))


class AuditLog:
    def __init__(self, cluster):
        self.cluster = cluster
        self._offset = 0
        self._events = []

    def events(self):
        """Every event so far; reads only what was appended since the last call."""
        try:
            with open(self.cluster.audit_log_path, "rb") as log:
                log.seek(self._offset)
                chunk = log.read()
        except FileNotFoundError:
            return self._events
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits for the next call
        self._offset += len(complete)
        self._events.extend(json.loads(line) for line in complete.splitlines() if line.strip())
        return self._events

    def flush(self, timeout=10.0):
        """Wait until every request answered before this call is in the log.

        The API server writes an event after it answers, so a request that has returned may
        not be logged yet; a marker request sent now is logged after all earlier ones.
        """
        marker = f"/api/v1/namespaces/default/configmaps/klutch-audit-marker-{uuid.uuid4().hex}"
        self.cluster.request("GET", marker)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(event.get("requestURI") == marker for event in self.events()):
                return
            time.sleep(0.05)
        raise TimeoutError(f"the audit log {self.cluster.audit_log_path} did not record {marker} in {timeout} s")

    def writes(self, since, until=None, user=None, include_dry_run=False):
        """Write requests received in [since, until], by `user` if given; dry runs left out by default."""
        self.flush()
        selected = []
        for event in self.events():
            if event.get("stage") != "ResponseComplete" or event.get("verb") not in WRITE_VERBS:
                continue
            received = _timestamp(event)
            if received < since or (until is not None and received > until):
                continue
            if user is not None and event.get("user", {}).get("username") != user:
                continue
            if not include_dry_run and "dryRun=" in event.get("requestURI", ""):
                continue
            selected.append(event)
        return selected

    def count_writes(self, since, until=None, user=None, include_dry_run=False):
        return len(self.writes(since, until=until, user=user, include_dry_run=include_dry_run))
