# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The resource types of Klutch and of Crossplane that this collection reads and writes."""

from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import Resource

KLUTCH_API_VERSION = "klutch.anynines.com/v1alpha1"
TEMPLATE_API_VERSION = "example-backend.klutch.anynines.com/v1alpha1"
EXPORT_TEMPLATES = Resource(TEMPLATE_API_VERSION, "APIServiceExportTemplate", "apiserviceexporttemplates")

# Crossplane, for publishing data services on the control plane.
COMPOSITE_RESOURCE_DEFINITIONS = Resource(
    "apiextensions.crossplane.io/v1", "CompositeResourceDefinition", "compositeresourcedefinitions", namespaced=False)
COMPOSITIONS = Resource("apiextensions.crossplane.io/v1", "Composition", "compositions", namespaced=False)

# Klutch's own kinds, for the backend's work on the control plane and the konnector's on app clusters.
API_SERVICE_EXPORTS = Resource(KLUTCH_API_VERSION, "APIServiceExport", "apiserviceexports")
API_SERVICE_EXPORT_REQUESTS = Resource(KLUTCH_API_VERSION, "APIServiceExportRequest", "apiserviceexportrequests")
API_SERVICE_NAMESPACES = Resource(KLUTCH_API_VERSION, "APIServiceNamespace", "apiservicenamespaces")
API_SERVICE_BINDINGS = Resource(KLUTCH_API_VERSION, "APIServiceBinding", "apiservicebindings")
CLUSTER_BINDINGS = Resource(KLUTCH_API_VERSION, "ClusterBinding", "clusterbindings")
