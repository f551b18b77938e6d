# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Resource types known in advance, so no request is spent on API discovery."""

from urllib.parse import quote

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError


def path_segment(value, what, resource):
    """`value` as one URL path segment naming an object or a namespace.

    An empty name would address the whole collection (a GET lists it, a DELETE deletes all of it),
    and "/", "." or ".." would address another path: refused before any request, as the API server
    refuses such names itself. Other characters are escaped, so "#" or "?" cannot end the path.
    """
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("Refusing to address %s with an empty %s: that would mean every %s. Set the %s (an undefined "
                          "variable renders as an empty string)." % (resource.kind, what, resource.kind, what))
    if value in (".", "..") or "/" in value or "%" in value:
        raise ConfigError("Refusing to address %s %r: a %s cannot be '.' or '..' or contain '/' or '%%'. Set a valid "
                          "Kubernetes name." % (resource.kind, value, what))
    return quote(value, safe="")


RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"


def group_version(group, version):
    return "%s/%s" % (group, version) if group else version


def api_name(group, resource):
    """Klutch's name for an API, its CRD and its export: `<resource>.<group>`, or `<resource>` for the core group."""
    return "%s.%s" % (resource, group) if group else resource


class Resource:
    """An API resource type: where it lives on the API server and what it is called."""

    def __init__(self, api_version, kind, plural, namespaced=True):
        self.api_version = api_version
        self.kind = kind
        self.plural = plural
        self.namespaced = namespaced

    def __repr__(self):
        return "Resource(%r, %r, %r, namespaced=%r)" % (self.api_version, self.kind, self.plural, self.namespaced)

    @property
    def group(self):
        return self.api_version.rpartition("/")[0]

    @property
    def group_version_path(self):
        return "/api/v1" if self.api_version == "v1" else "/apis/" + self.api_version

    def collection_path(self, namespace=None):
        """The path of every object of this kind: in `namespace`, or in all namespaces when it is None."""
        parts = [self.group_version_path]
        if self.namespaced and namespace is not None:
            parts += ["namespaces", path_segment(namespace, "namespace", self)]
        parts.append(self.plural)
        return "/".join(parts)

    def path(self, namespace, name, subresource=None):
        """The path of one object (and its subresource); never a collection, whatever the arguments."""
        if self.namespaced and namespace is None:
            raise ConfigError("Refusing to address %s %s without a namespace: it is namespaced. Set its namespace."
                              % (self.kind, name))
        parts = [self.collection_path(namespace if self.namespaced else None), path_segment(name, "name", self)]
        if subresource:
            parts.append(subresource)
        return "/".join(parts)

    def describe(self, name=None, namespace=None):
        """How messages name one object ("Secret ns/name") or the collection ("secrets in ns")."""
        if name:
            return "%s %s" % (self.kind, "%s/%s" % (namespace, name) if self.namespaced and namespace else name)
        if self.namespaced and namespace:
            return "%s in namespace %s" % (self.plural, namespace)
        return self.plural


NAMESPACES = Resource("v1", "Namespace", "namespaces", namespaced=False)
SECRETS = Resource("v1", "Secret", "secrets")
CONFIG_MAPS = Resource("v1", "ConfigMap", "configmaps")
SERVICE_ACCOUNTS = Resource("v1", "ServiceAccount", "serviceaccounts")
CUSTOM_RESOURCE_DEFINITIONS = Resource(
    "apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False)
ROLES = Resource("rbac.authorization.k8s.io/v1", "Role", "roles")
ROLE_BINDINGS = Resource("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings")
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", namespaced=False)
CLUSTER_ROLE_BINDINGS = Resource(
    "rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False)
PODS = Resource("v1", "Pod", "pods")
DEPLOYMENTS = Resource("apps/v1", "Deployment", "deployments")
SELF_SUBJECT_ACCESS_REVIEWS = Resource(
    "authorization.k8s.io/v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews", namespaced=False)


def api_resource_list_entry(api_resource_list, kind):
    """The Resource for `kind` in a /apis/<group>/<version> answer, or None."""
    group_version = api_resource_list.get("groupVersion")
    for entry in api_resource_list.get("resources") or []:
        if entry.get("kind") == kind and "/" not in entry.get("name", ""):
            return Resource(group_version, kind, entry["name"], namespaced=bool(entry.get("namespaced")))
    return None


KNOWN = dict(((resource.api_version, resource.kind), resource) for resource in (
    NAMESPACES, SECRETS, CONFIG_MAPS, SERVICE_ACCOUNTS, CUSTOM_RESOURCE_DEFINITIONS,
    ROLES, ROLE_BINDINGS, CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS, PODS, DEPLOYMENTS,
))
