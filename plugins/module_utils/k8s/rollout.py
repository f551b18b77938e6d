# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Why a Deployment does not roll out, in the cluster's own words: each Pod's reason, one sentence each.

`diagnosis` is pure (a Deployment, its Pods and log tails in, a message out); `explain` reads them.
"""

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import DEPLOYMENTS, PODS

LOG_LINES = 5
LOG_LINE_WIDTH = 300
PULL_FAILURES = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
STARTING = ("ContainerCreating", "PodInitializing")


def label_selector(selector):
    """A LabelSelector (matchLabels, matchExpressions) as the API's labelSelector query string."""
    terms = ["%s=%s" % item for item in sorted(((selector or {}).get("matchLabels") or {}).items())]
    for expression in (selector or {}).get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator in ("In", "NotIn"):
            terms.append("%s %s (%s)" % (key, operator.lower(), ",".join(values)))
        else:
            terms.append(key if operator == "Exists" else "!" + key)
    return ",".join(terms)


def _statuses(pod):
    status = pod.get("status") or {}
    return (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])


def crashing(pods):
    """(Pod, container) names whose previous run's log says why they crash."""
    return [(pod["metadata"]["name"], item["name"]) for pod in pods for item in _statuses(pod)
            if ((item.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff"]


def _images(pod):
    spec = pod.get("spec") or {}
    return dict((item["name"], item.get("image")) for item in (spec.get("initContainers") or [])
                + (spec.get("containers") or []))


def _log_tail(text):
    if text is None:
        return "its log cannot be read"
    lines = [line.strip()[:LOG_LINE_WIDTH] for line in text.splitlines() if line.strip()][-LOG_LINES:]
    return "its log ends: %s" % " | ".join(lines) if lines else "its log is empty"


def _said(state):
    return ": %s" % state["message"] if state.get("message") else ""


def _container_problem(pod, item, logs):
    """One container's trouble as a phrase, or None when it runs or is being created."""
    name = item["name"]
    waiting = (item.get("state") or {}).get("waiting")
    terminated = (item.get("state") or {}).get("terminated")
    if waiting and waiting.get("reason") in PULL_FAILURES:
        return "container %s cannot pull image %s (%s%s)" % (name, _images(pod).get(name) or item.get("image"),
                                                             waiting["reason"], _said(waiting))
    if waiting and waiting.get("reason") == "CrashLoopBackOff":
        last = (item.get("lastState") or {}).get("terminated") or {}
        exited = ", last exit code %s (%s)" % (last.get("exitCode"), last.get("reason") or "no reason") if last else ""
        return "container %s keeps crashing (CrashLoopBackOff%s, restart count %d); %s" % (
            name, exited, item.get("restartCount") or 0, _log_tail(logs.get((pod["metadata"]["name"], name))))
    if waiting and waiting.get("reason") not in STARTING:
        return "container %s is waiting (%s%s)" % (name, waiting.get("reason") or "no reason", _said(waiting))
    if terminated:
        return "container %s has terminated (%s, exit code %s%s)" % (
            name, terminated.get("reason") or "no reason", terminated.get("exitCode"), _said(terminated))
    return None


def pod_problem(pod, logs):
    """Why one Pod does not serve, as a sentence, or None when nothing is known to be wrong."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return "Pod %s failed (%s: %s)" % (name, status.get("reason") or "no reason", status.get("message") or "-")
    unscheduled = next((item for item in status.get("conditions") or []
                        if item.get("type") == "PodScheduled" and item.get("status") == "False"), None)
    if unscheduled:
        return "Pod %s is not scheduled (%s: %s)" % (
            name, unscheduled.get("reason") or "no reason", unscheduled.get("message") or "no message")
    problems = [problem for problem in (_container_problem(pod, item, logs) for item in _statuses(pod)) if problem]
    return "Pod %s: %s" % (name, "; ".join(problems)) if problems else None


def diagnosis(deployment, pods, logs):
    """Why `deployment` is not rolled out, from its Pods and `logs` ({(pod, container): log tail or None})."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    found = ["%s: %s" % (item.get("reason") or "ReplicaFailure", item.get("message") or "no message")
             for item in status.get("conditions") or []
             if item.get("type") == "ReplicaFailure" and item.get("status") == "True"]
    found.extend(problem for problem in (pod_problem(pod, logs) for pod in sorted(
        pods, key=lambda pod: pod["metadata"]["name"])) if problem)
    if not status and not pods:
        found.append("the Deployment has no status and no Pods, so no deployment controller runs on this cluster "
                     "(a cluster without nodes rolls nothing out: do not wait there)")
    elif not found:
        found.append("its Pods are still starting and none reports a failure" if pods else "it has no Pods")
    return "; ".join(["%d of %d replicas available" % (status.get("availableReplicas") or 0, spec.get("replicas", 1))]
                     + found)


def explain(client, name, namespace, timeout):
    """The message for a Deployment that did not roll out within `timeout` seconds, read from the cluster."""
    deployment = client.get(DEPLOYMENTS, name, namespace) or {}
    pods = client.list(PODS, namespace, label_selector=label_selector((deployment.get("spec") or {}).get(
        "selector")))[0] if deployment else []
    logs = {}
    for pod, container in crashing(pods):
        try:
            logs[(pod, container)] = client.pod_log(pod, namespace, container, tail_lines=LOG_LINES, previous=True)
        except ClusterError:
            logs[(pod, container)] = None
    found = diagnosis(deployment, pods, logs) if deployment else "it does not exist"
    return "Timed out after %ss waiting for %s on %s to roll out: %s." % (
        timeout, DEPLOYMENTS.describe(name, namespace), client.label, found)
