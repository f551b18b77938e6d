#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: klutch_cluster_info
short_description: Check that a cluster answers and which Klutch APIs it serves
version_added: 0.1.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - Connects to one cluster with the kubernetes.core connection options and reports the API
    server's version and whether the Klutch API groups are served there.
  - Use it as a preflight check before binding, to fail early with a clear message when a cluster
    is unreachable or the credentials are wrong.
  - Reads C(/version), one group version per Klutch API group and the C(klutch-bind) namespace,
    and writes nothing.
options: {}
extends_documentation_fragment:
  - klutch.bind.k8s_auth
  - klutch.bind.attributes
  - klutch.bind.attributes.info_module
"""

EXAMPLES = r"""
- name: Check that the control plane answers
  klutch.bind.klutch_cluster_info:
    kubeconfig: /etc/klutch/control-plane.kubeconfig
  register: control_plane

- name: Check an app cluster through a context of a shared kubeconfig
  klutch.bind.klutch_cluster_info:
    kubeconfig: ~/.kube/config
    context: app-eu-1

- name: Use the token and host that an AWX Kubernetes credential exports (K8S_AUTH_HOST, K8S_AUTH_API_KEY)
  klutch.bind.klutch_cluster_info:
"""

RETURN = r"""
host:
  description: The API server URL that was reached.
  returned: success
  type: str
  sample: https://127.0.0.1:6443
cluster:
  description: How messages name this cluster, the kubeconfig context and server.
  returned: success
  type: str
  sample: cluster app (https://127.0.0.1:6443)
kubernetes_version:
  description: The API server's version.
  returned: success
  type: str
  sample: v1.34.2
klutch_apis:
  description: For each Klutch API group version, whether the cluster serves it.
  returned: success
  type: dict
  sample: {"klutch.anynines.com/v1alpha1": true, "example-backend.klutch.anynines.com/v1alpha1": false}
cluster_id:
  description:
    - The app cluster's id as Klutch derives it from the UID of its C(klutch-bind) namespace, which
      M(klutch.bind.klutch_export_request) needs; null while that namespace does not exist, or when
      the credentials may not read it.
  returned: success
  type: str
  sample: 3fK9aQ
"""

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError, Forbidden, NotFound
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import NAMESPACES
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule
from ansible_collections.klutch.bind.plugins.module_utils.plan.bindings import BIND_NAMESPACE, cluster_id

KLUTCH_API_GROUP_VERSIONS = ("klutch.anynines.com/v1alpha1", "example-backend.klutch.anynines.com/v1alpha1")


def served(client, group_version):
    try:
        client.request("GET", "/apis/" + group_version, "read", "API group " + group_version)
    except NotFound:
        return False
    return True


def readable_namespace(client, name):
    """The namespace, or None when it is missing or this identity may not read it."""
    try:
        return client.get(NAMESPACES, name)
    except Forbidden:
        return None


def main():
    module = KlutchModule(argument_spec={}, supports_check_mode=True)
    try:
        client = module.client()
        version = client.request("GET", "/version", "read", "the server version")
        apis = dict((group_version, served(client, group_version)) for group_version in KLUTCH_API_GROUP_VERSIONS)
        bind_namespace = readable_namespace(client, BIND_NAMESPACE)
    except ClusterError as error:
        module.fail(error)
    module.exit(changed=False, host=client.configuration.host, cluster=client.label,
                kubernetes_version=version.get("gitVersion"), klutch_apis=apis,
                cluster_id=cluster_id(bind_namespace["metadata"]["uid"]) if bind_namespace else None)


if __name__ == "__main__":
    main()
