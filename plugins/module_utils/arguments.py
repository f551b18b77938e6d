# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options that more than one module takes, with the checks run on them before anything connects.

The connection options every module takes are in k8s/connection.py (AUTH_ARG_SPEC), which reads them."""

from ansible_collections.klutch.bind.plugins.module_utils import validate
from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import require_url

STATE = dict(type="str", choices=["present", "absent"], default="present")
# Seconds to wait for what a write starts (a CRD served, a rollout, a token issued).
WAIT_TIMEOUT = dict(type="int", default=60)
# A file or directory of manifests.
SRC = dict(type="path")
FORCE_CONFLICTS = dict(type="bool", default=False)
# The permission claims a binding consents to, by <resource>[.<group>].
ACCEPT_CLAIMS = dict(type="list", elements="str", default=[])
# An API to export, by its CRD's group and plural resource.
API = dict(
    group=dict(type="str", required=True),
    resource=dict(type="str", required=True),
)
# How one consumer is served (doc fragment klutch.bind.export; lifecycle.export.ExportOptions).
EXPORT = dict(
    consumer=dict(type="str", required=True),
    consumer_scope=dict(type="str", choices=["Namespaced", "Cluster"], default="Namespaced"),
    external_address=dict(type="str"),
    external_ca_data=dict(type="str"),
    external_server_name=dict(type="str"),
    provider_pretty_name=dict(type="str", default="klutch.bind"),
    previous_cluster_id=dict(type="str"),
    rotate_after=dict(type="str"),
    rotation_grace=dict(type="int", default=300),
    reinstate=dict(type="bool", default=False),
)
EXPORT_CHECKS = {
    "external_address": require_url, "external_ca_data": validate.certificate_data,
    "external_server_name": validate.server_name, "provider_pretty_name": validate.text,
    "consumer": validate.consumer_name,
    "wait_timeout": validate.positive(),
    "rotate_after": validate.age, "rotation_grace": validate.positive(least=0),
}
