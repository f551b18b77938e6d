# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
name: agent_deployment
short_description: A klutch.bind agent as a Deployment, and with it the ConfigMap that carries its code
version_added: 0.2.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - The objects to apply, in order, to run the konnector (namespace C(klutch-bind)) or the backend agent
    (namespace C(klutch-bind-system)) as a Deployment whose replicas elect a leader through a Lease. The roles
    C(klutch.bind.konnector) and C(klutch.bind.control_plane) apply them, after the agent's ServiceAccount and
    RBAC.
  - With O(delivery=bundle) the first object is a ConfigMap holding the agent's code (lookup
    P(klutch.bind.agent_bundle#lookup), built on the controller), which O(image), an official Python image,
    runs from the mounted zip; the Pod template carries the zip's SHA-256, so new code rolls the Pods.
  - With O(delivery=image), O(image) is an image built from C(extensions/agent/Containerfile) and the
    Deployment is the only object.
  - The Pods run as user and group 65532, non-root, on a read-only root filesystem with the C(RuntimeDefault)
    seccomp profile and no capabilities; C(/healthz) is their liveness and C(/readyz) their readiness probe.
options:
  role:
    description: Which agent.
    type: str
    required: true
    choices: [konnector, backend]
  args:
    description: Options for the agent after its role, such as C(--resync=30).
    type: list
    elements: str
    default: []
  replicas:
    description: Replicas of the Deployment; one leads at a time.
    type: int
    default: 2
  delivery:
    description: C(bundle) to run the collection's code on O(image), C(image) when O(image) holds the agent.
    type: str
    choices: [bundle, image]
    default: bundle
  image:
    description: The image the container runs.
    type: str
    required: true
  image_pull_secrets:
    description: Names of Secrets in the agent's namespace to pull O(image) with.
    type: list
    elements: str
    default: []
notes:
  - Takes no terms.
seealso:
  - module: klutch.bind.klutch_manifest
  - plugin: klutch.bind.agent_bundle
    plugin_type: lookup
"""

EXAMPLES = r"""
- name: Run the konnector as a Deployment on the official Python image
  klutch.bind.klutch_manifest:
    definition: >-
      {{ lookup('klutch.bind.agent_deployment', role='konnector', image='docker.io/library/python:3.11-slim-bookworm',
                args=['--grant-claims-to=klutch-bind/klutch-bind-konnector']) }}
"""

RETURN = r"""
_raw:
  description: The objects to apply, in order, as one list.
  type: list
  elements: list
"""

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

from ansible_collections.klutch.bind.plugins.lookup.agent_bundle import build_zip, bundle_files, describe
from ansible_collections.klutch.bind.plugins.module_utils.agent.deployment import manifests


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        if terms:
            raise AnsibleLookupError("klutch.bind.agent_deployment takes no terms, only options.")
        self.set_options(var_options=variables, direct=kwargs)
        options = dict((name, self.get_option(name)) for name in (
            "role", "args", "replicas", "delivery", "image", "image_pull_secrets"))
        bundle = None
        if options["delivery"] == "bundle":
            files = bundle_files()
            bundle = describe(build_zip(files), files)
        return [manifests(options["role"], options["args"], options["replicas"], options["image"],
                          options["image_pull_secrets"], bundle)]
