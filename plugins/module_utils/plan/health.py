# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A consumer's health on the control plane: the ClusterBinding's conditions from the konnector's heartbeat."""

from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import (
    duration_seconds,
    parse_time,
    stable_conditions,
)


# A heartbeat this far ahead of the backend's clock is not believed: a konnector clock a little
# ahead is, but a time in the future would otherwise count as fresh until it is reached. One
# konnector lease term (15 s) is what the agents already assume clocks to agree within.
HEARTBEAT_SKEW_SECONDS = 15


def heartbeat_health(status, moment):
    """The ClusterBinding's Healthy condition from the konnector's heartbeat (Klutch's table).

    The consumer writes the heartbeat, so it is read as untrusted input: a time that is not RFC 3339,
    or one far in the future, is reported instead of believed. Klutch also reports a heartbeat younger
    than 10 s as HeartbeatTimeDrift, an inverted clock-skew check inherited from upstream; that row is
    left out on purpose.
    """
    status = status or {}
    interval = duration_seconds(status.get("heartbeatInterval"))
    if not status.get("lastHeartbeatTime"):
        return {"status": "False", "reason": "FirstHeartbeatPending", "severity": "Info",
                "message": "Waiting for the first heartbeat of the konnector."}
    if not interval:
        return {"status": "False", "reason": "HeartbeatIntervalMissing", "severity": "Info",
                "message": "The konnector reported no heartbeat interval."}
    last = parse_time(status["lastHeartbeatTime"])
    shown = str(status["lastHeartbeatTime"])[:64]
    if last is None:
        return {"status": "False", "reason": "HeartbeatTimeInvalid", "severity": "Error",
                "message": "The konnector's last heartbeat time %s is not an RFC 3339 time." % shown}
    if (last - moment).total_seconds() > HEARTBEAT_SKEW_SECONDS:
        return {"status": "False", "reason": "HeartbeatTimeDrift", "severity": "Error",
                "message": "The konnector's last heartbeat time %s is more than %d s ahead of the control plane's "
                           "clock: check the clocks of both clusters." % (shown, HEARTBEAT_SKEW_SECONDS)}
    if (moment - last).total_seconds() > 2 * interval:
        return {"status": "False", "reason": "HeartbeatTimeout", "severity": "Error",
                "message": "The last heartbeat of the konnector is older than twice its interval (%s)."
                           % status["heartbeatInterval"]}
    return {"status": "True"}


def cluster_binding_conditions(status, moment, now):
    """Healthy and the Ready summary, with transition times kept while they hold."""
    health = heartbeat_health(status, moment)
    wanted = [dict(health, type="Healthy"), dict(health, type="Ready")]
    return stable_conditions(wanted, (status or {}).get("conditions"), now)
