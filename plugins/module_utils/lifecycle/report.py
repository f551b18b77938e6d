# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is bound where, and whether it is healthy and in step: read only, for klutch_info.

Each side is read the way its agent reads it, and what the agent would do next is planned, not done:
a binding whose next sync pass would write something is drifting, and the plan says what it would
write. Every report carries `problems`, sentences a person can act on; an empty list means healthy."""

import datetime

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    api_name,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import (
    API_SERVICE_BINDINGS,
    API_SERVICE_EXPORTS,
    EXPORT_TEMPLATES,
)
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import serve, sync
from ansible_collections.klutch.bind.plugins.module_utils.plan import bindings, consumers, health
from ansible_collections.klutch.bind.plugins.module_utils.plan.sync import contains, has_finalizer


def side_of(client):
    """control_plane when the cluster serves exports, app_cluster when it serves only bindings, else None."""
    if client.resource_for(API_SERVICE_EXPORTS.api_version, API_SERVICE_EXPORTS.kind) is not None:
        return "control_plane"
    if client.resource_for(API_SERVICE_BINDINGS.api_version, API_SERVICE_BINDINGS.kind) is not None:
        return "app_cluster"
    return None


def control_plane_report(client, moment=None):
    """Templates and consumers of a control plane, each consumer with its exports, requests, namespaces,
    heartbeat and problems."""
    moment = moment or datetime.datetime.now(datetime.timezone.utc)
    templates = [{"namespace": item["metadata"]["namespace"], "name": item["metadata"]["name"],
                  "exports": api_name(selector.get("group"), selector.get("resource"))}
                 for item in client.list(EXPORT_TEMPLATES)[0]
                 for selector in [(item.get("spec") or {}).get("APIServiceSelector") or {}]]
    consumers = [consumer_report(consumer.read(client), moment) for consumer in serve.Consumer.all(client)]
    return {"side": "control_plane", "templates": templates, "consumers": consumers,
            "problems": ["consumer %s: %s" % (consumer["consumer"], problem)
                         for consumer in consumers for problem in consumer["problems"]]}


def consumer_report(consumer, moment):
    identity = (consumer.namespaces[consumer.namespace]["metadata"].get("annotations") or {})[consumers.IDENTITY_ANNOTATION]
    name, _sep, cluster_id = identity.rpartition("#")
    unmapped = sorted(item["metadata"]["name"] for item in consumer.service_namespaces
                      if not (item.get("status") or {}).get("namespace"))
    heartbeat = health.heartbeat_health((consumer.cluster_binding or {}).get("status"), moment)
    phases = dict((request_name, (request.get("status") or {}).get("phase"))
                  for request_name, request in consumer.requests.items())
    problems = ["request %s is %s" % (request_name, phase or "not served yet")
                for request_name, phase in sorted(phases.items()) if phase != "Succeeded"]
    problems += ["APIServiceNamespace %s is not mapped yet" % item for item in unmapped]
    credentials = credentials_report(consumer)
    if credentials["revoked_at"]:
        problems.append("its credentials were revoked at %s" % credentials["revoked_at"])
    elif consumer.cluster_binding is None:
        problems.append("it has no ClusterBinding cluster in %s" % consumer.namespace)
    elif heartbeat["status"] != "True":
        problems.append("its konnector is not healthy (%s): %s" % (heartbeat["reason"], heartbeat["message"]))
    return {"consumer": name or identity, "cluster_id": cluster_id, "namespace": consumer.namespace,
            "exports": [{"name": export_name, "hash": (export["metadata"].get("annotations") or {}).get(
                consumers.SPEC_HASH_ANNOTATION)} for export_name, export in sorted(consumer.exports.items())],
            "requests": phases,
            "mapped_namespaces": sorted(consumers.mapped_namespace(consumer.namespace, item)
                                        for item in consumer.service_namespaces
                                        if item["metadata"]["name"] not in unmapped),
            "unmapped_namespaces": unmapped,
            "last_heartbeat": ((consumer.cluster_binding or {}).get("status") or {}).get("lastHeartbeatTime"),
            "healthy": heartbeat["status"] == "True", "credentials": credentials, "problems": problems}


def credentials_report(consumer):
    """The consumer's token: the Secret its kubeconfig carries and since when, tokens a rotation replaced and
    when they go, and whether it was revoked."""
    current = consumer.current_token()
    tokens = consumer.token_secrets()
    created = next((item["metadata"].get("creationTimestamp") for item in tokens
                    if item["metadata"]["name"] == current), None)
    return {"token_secret": current if created else None, "issued": created,
            "retiring": [{"name": item["metadata"]["name"], "at": item["metadata"]["annotations"][consumers.RETIRE_ANNOTATION]}
                         for item in sorted(tokens, key=lambda token: token["metadata"]["name"])
                         if item["metadata"]["name"] != current
                         and consumers.RETIRE_ANNOTATION in (item["metadata"].get("annotations") or {})],
            "revoked_at": consumer.revoked_at()}


def app_cluster_report(client, connect):
    """The app cluster's id, each binding with its claims, conditions, CRD, instances and the writes its
    next sync pass would make, and instances held by a finalizer whose binding is gone."""
    own = client.get(NAMESPACES, bindings.BIND_NAMESPACE)
    listed = client.list(API_SERVICE_BINDINGS, bindings.BIND_NAMESPACE)[0]
    reports = [binding_report(client, binding, connect) for binding in listed]
    stuck = orphaned_instances(client, set(binding["metadata"]["name"] for binding in listed))
    problems = ["binding %s: %s" % (report["name"], problem) for report in reports for problem in report["problems"]]
    problems += ["%d %s held by the syncer's finalizer, but their binding is gone: unbind it with klutch.bind.klutch_bind "
                 "state=absent to release them" % (item["count"], item["crd"]) for item in stuck]
    return {"side": "app_cluster",
            "cluster_id": bindings.cluster_id(own["metadata"]["uid"]) if own else None,
            "bindings": reports, "orphaned_instances": stuck, "problems": problems}


def binding_report(client, binding, connect):
    name = binding["metadata"]["name"]
    report = {"name": name,
              "claims": [{"group": claim.get("group") or "", "resource": claim["resource"], "state": claim.get("state")}
                         for claim in binding["spec"].get("permissionClaims") or []],
              "conditions": dict((condition["type"], condition["status"])
                                 for condition in (binding.get("status") or {}).get("conditions") or []),
              "crd": None, "instances": None, "pending": None, "drifting": None, "problems": []}
    report["problems"] += ["condition %s is %s" % (kind, status) for kind, status in sorted(report["conditions"].items())
                           if status != "True"]
    try:
        bound = sync.BoundApi(binding, client, connect)
        crd = client.get(CUSTOM_RESOURCE_DEFINITIONS, name)
        wanted = bindings.crd_from_export(bound.export, binding)
        in_step = crd is not None and contains(crd["spec"], wanted["spec"])
        report["crd"] = {"present": crd is not None, "in_step_with_export": in_step,
                         "export_hash": (bound.export["metadata"].get("annotations") or {}).get(consumers.SPEC_HASH_ANNOTATION)}
        if not in_step:
            report["problems"].append("its CRD is %s the export: the konnector or klutch.bind.klutch_binding brings it "
                                      "in step" % ("missing, unlike" if crd is None else "not in step with"))
            return report
        report["instances"] = len(client.list(bound.instances)[0])
        operations, _resources = sync.plan_binding(bound, client)
        report["pending"] = sync.counts(operations)
        report["drifting"] = bool(operations)
        if operations:
            report["problems"].append("its next sync pass would write %d objects (%s)" % (
                len(operations), pending_summary(report["pending"])))
        if bound.removals_withheld:
            report["problems"].append(sync.withheld_message(bound))
    except ClusterError as error:  # the binding cannot be served: the reason is the report
        report["problems"].append(str(error))
    return report


def pending_summary(pending):
    """'down 1 secrets, up 3 instances' from sync.counts()."""
    return ", ".join("%s %s" % (direction, ", ".join("%d %s" % (count, kind) for kind, count in sorted(kinds.items())))
                     for direction, kinds in sorted(pending.items()) if kinds)


def orphaned_instances(client, binding_names):
    """[{crd, count}]: instances of CRDs that a binding owned, held by the syncer's finalizer after it went."""
    found = []
    for crd in client.list(CUSTOM_RESOURCE_DEFINITIONS)[0]:
        owners = [ref for ref in crd["metadata"].get("ownerReferences") or [] if ref.get("kind") == "APIServiceBinding"]
        if not owners or any(ref["name"] in binding_names for ref in owners):
            continue
        kind = bindings.instance_resource(crd["spec"])
        if kind is None:  # it serves no version: no instance to read
            continue
        try:
            held = [obj for obj in client.list(kind)[0] if has_finalizer(obj)]
        except ClusterError:  # a CRD not served (yet, or any more) holds no instance to read
            continue
        if held:
            found.append({"crd": crd["metadata"]["name"], "count": len(held)})
    return found
