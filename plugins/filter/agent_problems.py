# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checks of an agent's role variables, shared by the konnector and control_plane roles."""

import re

NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def agent_problems(settings, prefix, mode):
    """Each agent variable that would fail only after the first write, with its fix.

    `settings` holds the role's values by their name after `prefix` (resync, agent_name, replicas,
    rollout_wait, rollout_timeout, agent_delivery, python_image, image, image_pull_secrets); `mode`
    is how the agent runs: none, local or deployment.
    """
    if mode == "none":
        return []

    def name(key):
        return prefix + key

    problems = []
    if _number(settings.get("resync")) <= 0:
        problems.append("%s is %s: give the seconds between passes, more than 0." % (name("resync"), settings.get("resync")))
    if mode == "local" and not NAME.match(str(settings.get("agent_name") or "")):
        problems.append('%s is "%s": give a lower-case name (letters, digits, "-").'
                        % (name("agent_name"), settings.get("agent_name") or ""))
    if mode != "deployment":
        return problems
    if _number(settings.get("replicas")) < 1:
        problems.append("%s is %s: give 1 or more; one leads, the others stand by." % (name("replicas"), settings.get("replicas")))
    if settings.get("rollout_wait") and _number(settings.get("rollout_timeout")) < 1:
        problems.append("%s is %s: give the seconds to wait for the rollout, more than 0."
                        % (name("rollout_timeout"), settings.get("rollout_timeout")))
    if settings.get("agent_delivery") == "bundle" and not settings.get("python_image"):
        problems.append("%s is empty: give an official Python image (or a mirror of it) that runs the bundle."
                        % name("python_image"))
    if settings.get("agent_delivery") == "image" and not settings.get("image"):
        problems.append("%s image runs %s, an image built from extensions/agent/Containerfile of this collection: set "
                        "%s, or leave %s at bundle." % (name("agent_delivery"), name("image"), name("image"),
                                                        name("agent_delivery")))
    if any(secret in ("", None) for secret in settings.get("image_pull_secrets") or []):
        problems.append("%s holds an empty name: remove it, or name a Secret in the agent's namespace."
                        % name("image_pull_secrets"))
    return problems


class FilterModule(object):
    def filters(self):
        return {"agent_problems": agent_problems}
