"""A Deployment's rollout: when it counts as done, and why it is not, in the cluster's words."""

import pytest

from ansible_collections.klutch.bind.plugins.module_utils.k8s import rollout
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import readiness, rolled_out

IMAGE = "docker.io/library/python:3.11-slim-bookworm"


def deployment(replicas=2, generation=2, **status):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "klutch-bind-konnector", "namespace": "klutch-bind", "generation": generation},
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {"app.kubernetes.io/name": "klutch-bind-konnector"}}},
            "status": status}


def pod(name, phase="Running", conditions=(), **container_state):
    return {"metadata": {"name": name},
            "spec": {"containers": [{"name": "konnector", "image": IMAGE}]},
            "status": {"phase": phase, "conditions": list(conditions),
                       "containerStatuses": [dict({"name": "konnector", "image": IMAGE}, **container_state)]
                       if container_state else []}}


@pytest.mark.parametrize("status, done", [
    ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}, True),
    ({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}, False),  # not seen yet
    ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 3}, False),  # an old one
    ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1}, False),
    ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 2}, False),
    ({}, False),  # no controller has looked at it
])
def test_a_deployment_is_rolled_out_as_kubectl_rollout_status_judges(status, done):
    assert rolled_out(deployment(**status)) is done
    predicate, description = readiness(deployment(**status))
    assert predicate(deployment(**status)) is done and description == "rolled out"


def test_nothing_is_rolled_out_when_it_does_not_exist():
    assert rolled_out(None) is False


def test_an_image_that_does_not_pull_is_named():
    waiting = {"waiting": {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "%s"' % IMAGE}}
    message = rollout.diagnosis(deployment(), [pod("a", phase="Pending", state=waiting)], {})
    assert message == ('0 of 2 replicas available; Pod a: container konnector cannot pull image %s '
                       '(ImagePullBackOff: Back-off pulling image "%s")' % (IMAGE, IMAGE))


def test_err_image_pull_is_named_with_the_image_too():
    waiting = {"waiting": {"reason": "ErrImagePull", "message": "not found"}}
    message = rollout.diagnosis(deployment(), [pod("a", phase="Pending", state=waiting)], {})
    assert "container konnector cannot pull image %s (ErrImagePull: not found)" % IMAGE in message


def test_a_crash_loop_shows_the_exit_code_and_the_last_log_lines():
    crashing = pod("a", state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                   lastState={"terminated": {"exitCode": 1, "reason": "Error"}}, restartCount=3)
    log = "".join("line %d\n" % number for number in range(1, 9)) + "\n"
    assert rollout.crashing([crashing, pod("b", state={"running": {}})]) == [("a", "konnector")]
    message = rollout.diagnosis(deployment(availableReplicas=1), [crashing], {("a", "konnector"): log})
    assert message == ("1 of 2 replicas available; Pod a: container konnector keeps crashing (CrashLoopBackOff, "
                       "last exit code 1 (Error), restart count 3); its log ends: "
                       "line 4 | line 5 | line 6 | line 7 | line 8")


def test_a_crash_loop_whose_log_cannot_be_read_says_so():
    crashing = pod("a", state={"waiting": {"reason": "CrashLoopBackOff"}}, restartCount=1)
    assert rollout.diagnosis(deployment(), [crashing], {("a", "konnector"): None}).endswith(
        "keeps crashing (CrashLoopBackOff, restart count 1); its log cannot be read")


def test_a_pending_pod_gives_the_schedulers_message():
    unscheduled = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                   "message": "0/3 nodes are available: 3 Insufficient memory."}
    message = rollout.diagnosis(deployment(), [pod("a", phase="Pending", conditions=[unscheduled])], {})
    assert message == ("0 of 2 replicas available; Pod a is not scheduled (Unschedulable: 0/3 nodes are available: "
                       "3 Insufficient memory.)")


def test_running_pods_are_left_out_and_other_waiting_reasons_are_named():
    config_error = {"waiting": {"reason": "CreateContainerConfigError", "message": 'configmap "x" not found'}}
    pods = [pod("b", state=config_error), pod("a", state={"running": {}}, ready=True),
            pod("c", phase="Pending", state={"waiting": {"reason": "ContainerCreating"}})]
    assert rollout.diagnosis(deployment(availableReplicas=1), pods, {}) == (
        '1 of 2 replicas available; Pod b: container konnector is waiting (CreateContainerConfigError: configmap "x" '
        'not found)')


def test_a_replica_failure_is_named_when_no_pod_could_be_made():
    failure = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
               "message": 'pods "klutch-bind-konnector-1" is forbidden: exceeded quota'}
    message = rollout.diagnosis(deployment(observedGeneration=2, conditions=[failure]), [], {})
    assert message == ('0 of 2 replicas available; FailedCreate: pods "klutch-bind-konnector-1" is forbidden: '
                       'exceeded quota')


def test_a_cluster_without_a_deployment_controller_is_recognised():
    message = rollout.diagnosis(deployment(), [], {})
    assert "no deployment controller runs on this cluster" in message and "do not wait there" in message


def test_starting_pods_are_not_a_failure():
    message = rollout.diagnosis(deployment(observedGeneration=2), [pod("a", phase="Pending", state={
        "waiting": {"reason": "ContainerCreating"}})], {})
    assert message == "0 of 2 replicas available; its Pods are still starting and none reports a failure"


def test_label_selectors_are_written_as_the_api_reads_them():
    assert rollout.label_selector({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [
        {"key": "tier", "operator": "In", "values": ["x", "y"]}, {"key": "gone", "operator": "DoesNotExist"},
        {"key": "here", "operator": "Exists"}]}) == "a=1,b=2,tier in (x,y),!gone,here"


class FakeClient:
    """What explain reads: the Deployment, its Pods by label, the previous log of crashing containers."""

    label = "cluster app (https://app:6443)"

    def __init__(self, found, pods, log=None):
        self.found, self.pods, self.log, self.asked = found, pods, log, []

    def get(self, resource, name, namespace):
        return self.found

    def list(self, resource, namespace, label_selector=None):
        self.asked.append(("list", resource.kind, namespace, label_selector))
        return self.pods, "1"

    def pod_log(self, name, namespace, container, tail_lines, previous):
        self.asked.append(("log", name, container, tail_lines, previous))
        if self.log is None:
            raise ClusterError("no log")
        return self.log


def test_explain_reads_the_pods_and_the_previous_log_of_crashing_containers():
    crashing = pod("a", state={"waiting": {"reason": "CrashLoopBackOff"}}, restartCount=2)
    client = FakeClient(deployment(), [crashing], log="Traceback\nImportError: no module named yaml\n")
    message = rollout.explain(client, "klutch-bind-konnector", "klutch-bind", 300)
    assert client.asked == [("list", "Pod", "klutch-bind", "app.kubernetes.io/name=klutch-bind-konnector"),
                            ("log", "a", "konnector", rollout.LOG_LINES, True)]
    assert message.startswith("Timed out after 300s waiting for Deployment klutch-bind/klutch-bind-konnector on "
                              "cluster app (https://app:6443) to roll out: 0 of 2 replicas available; Pod a:")
    assert message.endswith("its log ends: Traceback | ImportError: no module named yaml.")


def test_explain_survives_an_unreadable_log_and_a_deployment_that_is_gone():
    crashing = pod("a", state={"waiting": {"reason": "CrashLoopBackOff"}}, restartCount=2)
    assert "its log cannot be read" in rollout.explain(FakeClient(deployment(), [crashing]), "k", "ns", 5)
    assert rollout.explain(FakeClient(None, []), "k", "ns", 5).endswith("to roll out: it does not exist.")
