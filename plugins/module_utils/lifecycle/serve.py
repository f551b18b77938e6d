# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Serving a consumer on the control plane, as Klutch's backend does: read first, then write what differs
(requests, namespace mapping, RBAC, token retirement and the ClusterBinding's health).

klutch_export_request runs it for the consumer it onboards; the backend agent runs it for every
consumer namespace whenever requests, exports, CRDs or namespace mappings change.
"""

import datetime

from ansible_collections.klutch.bind.plugins.module_utils.k8s.apply import now
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError, ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import parse_time
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    CLUSTER_ROLES,
    CLUSTER_ROLE_BINDINGS,
    CUSTOM_RESOURCE_DEFINITIONS,
    NAMESPACES,
    SECRETS,
    api_name,
)
from ansible_collections.klutch.bind.plugins.module_utils.kinds import (
    API_SERVICE_EXPORTS,
    API_SERVICE_EXPORT_REQUESTS,
    API_SERVICE_NAMESPACES,
    CLUSTER_BINDINGS,
    EXPORT_TEMPLATES,
)
from ansible_collections.klutch.bind.plugins.module_utils.plan import consumers, health, templates

FAIL_AFTER = datetime.timedelta(minutes=1)  # Klutch retries a failing request for a minute before failing it
REQUEST_TTL = datetime.timedelta(minutes=10)  # and deletes a finished request this long after its creation
# The konnector writes the ClusterBinding's heartbeat, the backend its conditions: two appliers.
FIELD_MANAGER = "klutch.bind-backend"
# Objects that are the consumer's by name (its RBAC, credentials, ClusterBinding spec, exports) are
# applied with force: where Klutch's backend wrote them before, its field manager owns the fields,
# and without force every apply would fail with a conflict. Nothing else is forced.
OURS = {"force": True}
TOKEN_SECRETS = "type=%s" % consumers.TOKEN_SECRET_TYPE


def by_name(objects):
    return dict((obj["metadata"]["name"], obj) for obj in objects)


class Consumer:
    """What the control plane holds for one consumer namespace, read (read()) before anything is written."""

    def __init__(self, namespace, namespaces):
        self.namespaces = namespaces  # {name: Namespace} of the whole cluster
        self.namespace = namespace
        self.exports, self.requests, self.service_namespaces, self.cluster_binding = {}, {}, [], None
        self.secrets = {}  # the kubeconfig Secret and the token Secrets
        self.unmapped = {}  # {APIServiceNamespace name: why it could not be mapped} in this pass

    def read(self, client):
        if self.namespace:
            self.cluster_binding = client.get(CLUSTER_BINDINGS, "cluster", self.namespace)
            self.exports = by_name(client.list(API_SERVICE_EXPORTS, self.namespace)[0])
            self.requests = by_name(client.list(API_SERVICE_EXPORT_REQUESTS, self.namespace)[0])
            self.service_namespaces = client.list(API_SERVICE_NAMESPACES, self.namespace)[0]
            kubeconfig = client.get(SECRETS, consumers.KUBECONFIG_SECRET, self.namespace)
            self.secrets = by_name(client.list(SECRETS, self.namespace, field_selector=TOKEN_SECRETS)[0]
                                   + ([kubeconfig] if kubeconfig else []))
        return self

    @classmethod
    def all(cls, client):
        """Every consumer namespace, those that carry a consumer identity, still unread: the agent reads
        each one on its own, so one whose objects cannot be read stops no other."""
        namespaces = by_name(client.list(NAMESPACES)[0])
        return [cls(name, namespaces) for name, namespace in sorted(namespaces.items())
                if ((namespace["metadata"].get("annotations") or {}).get(consumers.IDENTITY_ANNOTATION))]

    @classmethod
    def by_identity(cls, client, identity):
        namespaces = by_name(client.list(NAMESPACES)[0])
        return cls(consumers.consumer_namespace(namespaces.values(), identity), namespaces).read(client)

    def mapped(self):
        return [consumers.mapped_namespace(self.namespace, item) for item in self.service_namespaces
                if item["metadata"]["name"] not in self.unmapped]

    def current_token(self):
        """The name of the token Secret the consumer's kubeconfig carries."""
        return consumers.current_token_secret(self.secrets.get(consumers.KUBECONFIG_SECRET))

    def token_secrets(self):
        return [secret for secret in self.secrets.values() if secret.get("type") == consumers.TOKEN_SECRET_TYPE]

    def revoked_at(self):
        return consumers.revoked_at(self.namespaces.get(self.namespace))

    def uid(self):
        return self.namespaces[self.namespace]["metadata"]["uid"]

    def unmapped_error(self):
        """The namespaces this pass could not map, as one error to raise after everything else was done."""
        return ClusterError("Could not map %s of consumer namespace %s: %s" % (
            ", ".join("APIServiceNamespace %s" % name for name in sorted(self.unmapped)), self.namespace,
            "; ".join(self.unmapped[name] for name in sorted(self.unmapped))))


def require_klutch_apis(client):
    for resource in (API_SERVICE_EXPORTS, API_SERVICE_EXPORT_REQUESTS, API_SERVICE_NAMESPACES, CLUSTER_BINDINGS,
                     EXPORT_TEMPLATES):
        if client.resource_for(resource.api_version, resource.kind) is None:
            raise ConfigError("%s does not serve %s: install the Klutch CRDs on the control plane first (role "
                              "klutch.bind.control_plane)." % (client.label, resource.kind))
    if client.get(CLUSTER_ROLES, consumers.BINDER) is None:
        raise ConfigError("%s has no ClusterRole %s, which every consumer is bound to: install it first (role "
                          "klutch.bind.control_plane)." % (client.label, consumers.BINDER))


class Catalog:
    """The CRDs and templates that exports are made from, read once per pass."""

    def __init__(self, client):
        self.client = client
        self.templates = client.list(EXPORT_TEMPLATES)[0]
        self.crds = {}

    def crd(self, name):
        if name not in self.crds:
            self.crds[name] = self.client.get(CUSTOM_RESOURCE_DEFINITIONS, name)
        return self.crds[name]

    def api(self, group, resource, scope, existing=None):
        """(crd, claims) of an API to export to a consumer of `scope`; ConfigError saying why it cannot be."""
        name = api_name(group, resource)
        crd = self.crd(name)
        if crd is None:
            raise ConfigError("Cannot export %s: %s has no CRD %s. Check group and resource, or publish the data "
                              "service first." % (name, self.client.label, name))
        template = next((t for t in self.templates if templates.exported_api(t) == (group or "", resource)), None)
        if template is None:
            raise ConfigError("Cannot export %s: no APIServiceExportTemplate on %s exports it. Publish one (module "
                              "klutch.bind.klutch_template) first." % (name, self.client.label))
        problem = consumers.export_problem(crd, scope, existing)
        if problem:
            raise ConfigError(problem)
        return crd, (template.get("spec") or {}).get("permissionClaims") or []


def map_namespaces(recorder, consumer):
    """Namespace <P>-N for each APIServiceNamespace N the consumer created; a mapped namespace whose
    APIServiceNamespace is gone is deleted (its consumer namespace is).

    One that cannot be mapped (the server refuses its name, say) is noted in consumer.unmapped and
    left out of the RBAC; the others are mapped all the same. Returns {APIServiceNamespace name: its
    namespace} for those mapped.
    """
    mapped = {}
    for service_namespace in consumer.service_namespaces:
        target = consumers.mapped_namespace(consumer.namespace, service_namespace)
        name = service_namespace["metadata"]["name"]
        source = "%s/%s" % (consumer.namespace, name)
        problem = consumers.mapping_problem(consumer.namespace, target, source, consumer.namespaces.get(target))
        if problem:
            consumer.unmapped[name] = problem
            continue
        try:
            recorder.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {
                "name": target, "annotations": {consumers.API_SERVICE_NAMESPACE_ANNOTATION: source}}},
                before=consumer.namespaces.get(target))
        except ClusterError as error:
            consumer.unmapped[name] = str(error)
            continue
        mapped[name] = target
    wanted = set("%s/%s" % (consumer.namespace, item["metadata"]["name"]) for item in consumer.service_namespaces)
    for name, namespace in sorted(consumer.namespaces.items()):
        source = (namespace["metadata"].get("annotations") or {}).get(consumers.API_SERVICE_NAMESPACE_ANNOTATION, "")
        if source.startswith(consumer.namespace + "/") and source not in wanted \
                and not namespace["metadata"].get("deletionTimestamp"):
            recorder.delete(NAMESPACES, name, before=namespace)
    return mapped


def announce_namespaces(recorder, consumer, mapped):
    """Each mapped namespace in its APIServiceNamespace's status."""
    for service_namespace in consumer.service_namespaces:
        name = service_namespace["metadata"]["name"]
        if name in mapped and (service_namespace.get("status") or {}).get("namespace") != mapped[name]:
            try:
                recorder.apply({"apiVersion": API_SERVICE_NAMESPACES.api_version, "kind": API_SERVICE_NAMESPACES.kind,
                                "metadata": {"name": name, "namespace": consumer.namespace},
                                "status": {"namespace": mapped[name]}}, API_SERVICE_NAMESPACES, subresource="status",
                               before=service_namespace)
            except ClusterError as error:
                consumer.unmapped[name] = str(error)


def write_request_status(recorder, consumer, name, stored, failures=()):
    status = consumers.request_status(now(), stored.get("status"), failures)
    if stored.get("status") != status:
        recorder.apply({"apiVersion": API_SERVICE_EXPORT_REQUESTS.api_version, "kind": API_SERVICE_EXPORT_REQUESTS.kind,
                        "metadata": {"name": name, "namespace": consumer.namespace}, "status": status},
                       API_SERVICE_EXPORT_REQUESTS, subresource="status", before=stored)
    return status["phase"]


def grant_namespaces(recorder, consumer, exports, default_scope):
    """Map the consumer's namespaces, grant the RBAC, then announce the namespaces in the statuses: the
    konnector starts writing into a namespace as soon as the status names it."""
    mapped = map_namespaces(recorder, consumer)
    rbac(recorder, consumer, exports, default_scope, [target for target in mapped.values()
                                                      if target not in consumer.namespaces])
    announce_namespaces(recorder, consumer, mapped)


def rbac(recorder, consumer, exports, default_scope, new_namespaces=()):
    """The consumer's RBAC as planned, and no cluster-wide binding that the plan does not hold."""
    exports = list(exports)
    scope = consumers.consumer_scope(exports, default_scope)
    namespace = consumer.namespace
    planned = consumers.consumer_rbac(namespace, consumer.uid(), exports, scope, consumer.mapped())
    for obj in planned:
        if recorder.check_mode and obj["metadata"].get("namespace") in new_namespaces:
            recorder.planned(obj)  # its namespace was only dry-run created
        else:
            recorder.apply(obj, **OURS)
    if not any(obj["metadata"]["name"] == consumers.cluster_wide_role(namespace) for obj in planned):
        recorder.delete(CLUSTER_ROLE_BINDINGS, consumers.cluster_wide_role(namespace))
        recorder.delete(CLUSTER_ROLES, consumers.cluster_wide_role(namespace))


def failed_for_good(request, moment):
    created = request["metadata"].get("creationTimestamp")
    if not created:
        return True
    born = parse_time(created)
    return born is None or moment - born >= FAIL_AFTER


def reconcile(recorder, consumer, catalog, default_scope, moment):
    """The backend controllers for one consumer namespace: requests, drift, mapping, RBAC."""
    namespace = consumer.namespace
    scope = consumers.consumer_scope(consumer.exports.values(), default_scope)
    served = []
    for name, request in sorted(consumer.requests.items()):
        if (request.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            created = parse_time(request["metadata"].get("creationTimestamp"))
            if created is not None and moment - created >= REQUEST_TTL:
                recorder.delete(API_SERVICE_EXPORT_REQUESTS, name, namespace, before=request)
            continue
        failures = []
        for entry in request["spec"].get("resources") or []:
            api = api_name(entry.get("group"), entry["resource"])
            try:
                crd, claims = catalog.api(entry.get("group"), entry["resource"], scope, consumer.exports.get(api))
            except ConfigError as error:
                failures.append(str(error))
                continue
            if api not in consumer.exports:
                export = consumers.api_service_export(crd, namespace, scope, claims)
                recorder.apply(export, API_SERVICE_EXPORTS, before=None, **OURS)
                consumer.exports[api] = export
        if not failures or failed_for_good(request, moment):
            served.append((name, request, failures))
    for name, export in sorted(consumer.exports.items()):
        crd = catalog.crd(name)
        if crd is None:  # the provider removed the API: its export goes (Klutch's export controller)
            recorder.delete(API_SERVICE_EXPORTS, name, namespace, before=export)
            continue
        spec = export["spec"]
        wanted = consumers.api_service_export(crd, namespace, spec.get("informerScope") or scope,
                                              spec.get("permissionClaims"), spec.get("clusterScopedIsolation") or "Prefixed",
                                              existing=export)
        if consumers.export_differs(export, wanted):
            recorder.apply(wanted, API_SERVICE_EXPORTS, before=export, **OURS)
    grant_namespaces(recorder, consumer, [export for name, export in consumer.exports.items()
                                          if catalog.crd(name) is not None], default_scope)
    for name, request, failures in served:  # Succeeded once the consumer may use what it asked for
        write_request_status(recorder, consumer, name, request, failures)
    retire_tokens(recorder, consumer, consumer.current_token(), moment)
    report_health(recorder, consumer, moment)
    if consumer.unmapped:
        raise consumer.unmapped_error()


def retire_tokens(recorder, consumer, current, moment):
    """Delete the token Secrets that a rotation replaced, once their grace is over: the old token stops working."""
    for name in consumers.retired_tokens(consumer.token_secrets(), current, moment):
        recorder.delete(SECRETS, name, consumer.namespace, before=consumer.secrets[name])
        del consumer.secrets[name]


def report_health(recorder, consumer, moment):
    """The ClusterBinding's Healthy and Ready conditions from the konnector's heartbeat."""
    binding = consumer.cluster_binding
    if binding is None:
        return
    conditions = health.cluster_binding_conditions(binding.get("status"), moment, now())
    if conditions != (binding.get("status") or {}).get("conditions"):
        recorder.apply({"apiVersion": CLUSTER_BINDINGS.api_version, "kind": CLUSTER_BINDINGS.kind,
                        "metadata": {"name": "cluster", "namespace": consumer.namespace},
                        "status": {"conditions": conditions}}, CLUSTER_BINDINGS, subresource="status",
                       before=binding, field_manager=FIELD_MANAGER, **OURS)
