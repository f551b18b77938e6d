"""The agent variable checks both roles run before their first write."""

from ansible_collections.klutch.bind.plugins.filter.agent_problems import agent_problems

GOOD = {"resync": 30, "agent_name": "konnector", "replicas": 2, "rollout_wait": True, "rollout_timeout": 300,
        "agent_delivery": "bundle", "python_image": "docker.io/library/python:3.11-slim-bookworm", "image": None,
        "image_pull_secrets": []}


def test_good_settings_and_an_agent_that_does_not_run_have_no_problems():
    assert agent_problems(GOOD, "konnector_", "deployment") == []
    assert agent_problems(dict(GOOD, resync=0, replicas=0), "konnector_", "none") == []


def test_each_problem_names_the_roles_variable_and_the_fix():
    bad = dict(GOOD, resync="", replicas=0, rollout_timeout=0, python_image="", image_pull_secrets=["", "ok"])
    assert agent_problems(bad, "control_plane_backend_", "deployment") == [
        "control_plane_backend_resync is : give the seconds between passes, more than 0.",
        "control_plane_backend_replicas is 0: give 1 or more; one leads, the others stand by.",
        "control_plane_backend_rollout_timeout is 0: give the seconds to wait for the rollout, more than 0.",
        "control_plane_backend_python_image is empty: give an official Python image (or a mirror of it) that runs the "
        "bundle.",
        "control_plane_backend_image_pull_secrets holds an empty name: remove it, or name a Secret in the agent's "
        "namespace."]
    assert agent_problems(dict(GOOD, agent_delivery="image"), "konnector_", "deployment") == [
        "konnector_agent_delivery image runs konnector_image, an image built from extensions/agent/Containerfile of "
        "this collection: set konnector_image, or leave konnector_agent_delivery at bundle."]


def test_a_local_agent_needs_a_name_and_no_deployment_settings():
    local = dict(GOOD, agent_name="Konnector_1", replicas=0, python_image="")
    assert agent_problems(local, "konnector_", "local") == [
        'konnector_agent_name is "Konnector_1": give a lower-case name (letters, digits, "-").']
