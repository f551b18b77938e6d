"""The backend's pure decisions: when a failing request fails for good."""

import datetime

from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import serve

MOMENT = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)


def request(created):
    return {"metadata": {"name": "x", "creationTimestamp": created}}


def test_klutch_retries_a_failing_request_for_a_minute():
    assert not serve.failed_for_good(request("2026-01-01T11:59:30Z"), MOMENT)
    assert serve.failed_for_good(request("2026-01-01T11:59:00Z"), MOMENT)
    assert serve.failed_for_good({"metadata": {"name": "x"}}, MOMENT)


def test_a_creation_time_in_any_rfc_3339_form_is_read():
    assert not serve.failed_for_good(request("2026-01-01T11:59:30.5Z"), MOMENT)
    assert serve.failed_for_good(request("2026-01-01T12:59:00+02:00"), MOMENT)
