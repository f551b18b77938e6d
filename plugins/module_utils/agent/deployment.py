# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An agent as a Deployment, as both roles run it: the objects to apply, in order. Pure.

bundle delivery: a ConfigMap carries the agent's code (the agent_bundle lookup's zip), which an
official Python image runs from the mounted zip; image delivery: an image built from
extensions/agent/Containerfile runs its own copy. Its replicas elect a leader through a Lease.
"""

# role: (Deployment and ServiceAccount name, namespace); the roles' RBAC files name the same.
AGENTS = {"konnector": ("klutch-bind-konnector", "klutch-bind"),
          "backend": ("klutch-bind-backend", "klutch-bind-system")}
HEALTH_PORT = 8081
BUNDLE_DIRECTORY = "/opt/klutch-bind"
RUN_AS = 65532  # the Containerfile's user; the official Python image runs as root unless told otherwise


def labels(name):
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "klutch.bind"}


def bundle_config_map(role, bundle):
    name, namespace = AGENTS[role]
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name + "-bundle", "namespace": namespace, "labels": labels(name)},
            "binaryData": {"agent.zip": bundle["data"]}}


def container(role, args, image, bundle):
    """The agent's container: the bundle's zip on `image` (an official Python), or `image` with its own copy."""
    spec = {"name": role, "image": image, "imagePullPolicy": "IfNotPresent",
            "args": [role, "--identity=$(POD_NAME)", "--health-port=%d" % HEALTH_PORT] + list(args),
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "ports": [{"name": "health", "containerPort": HEALTH_PORT}],
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "health"}, "initialDelaySeconds": 10,
                              "periodSeconds": 20},
            # Ready while its passes sync everything: false when the other cluster refuses its credentials
            # or cannot be reached, true again once they work.
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "health"}, "periodSeconds": 5},
            "resources": {"requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
            # The only writable place: client certificates and keys given as kubeconfig data.
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}
    if bundle:
        # -S: the zip and the standard library only, whatever else the image installed.
        spec["command"] = ["python", "-S", "-m", bundle["entry"]]
        spec["env"] += [{"name": "PYTHONPATH", "value": BUNDLE_DIRECTORY + "/agent.zip"},
                        {"name": "PYTHONUNBUFFERED", "value": "1"}]
        spec["volumeMounts"].append({"name": "bundle", "mountPath": BUNDLE_DIRECTORY, "readOnly": True})
    return spec


def manifests(role, args, replicas, image, image_pull_secrets=(), bundle=None):
    """[ConfigMap with the bundle (bundle delivery only), Deployment] of the `role` agent.

    `bundle` is the agent_bundle lookup's answer for bundle delivery, and then `image` is the official
    Python image that runs it; None for image delivery, where `image` holds the agent itself.
    """
    name, namespace = AGENTS[role]
    template = {"metadata": {"labels": labels(name)},
                "spec": {"serviceAccountName": name,
                         "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                                             "seccompProfile": {"type": "RuntimeDefault"}},
                         "containers": [container(role, args, image, bundle)],
                         "volumes": [{"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
                         "imagePullSecrets": [{"name": secret} for secret in image_pull_secrets]}}
    if bundle:
        # New code, new Pods: the mounted file alone would change under running processes.
        template["metadata"]["annotations"] = {"klutch.bind/bundle-sha256": bundle["sha256"]}
        template["spec"]["volumes"].append({"name": "bundle", "configMap": {"name": name + "-bundle"}})
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": name, "namespace": namespace, "labels": labels(name)},
                  "spec": {"replicas": int(replicas), "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                           "template": template}}
    return ([bundle_config_map(role, bundle)] if bundle else []) + [deployment]
