# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: cluster_id
short_description: An app cluster's id from the UID of its klutch-bind namespace
version_added: 0.1.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - Derives the id that Klutch gives an app cluster from the UID of the cluster's C(klutch-bind)
    namespace, the same value M(klutch.bind.klutch_cluster_info) returns as C(cluster_id).
  - Use it where a task has just created that namespace and already holds its UID (the C(results) of
    M(klutch.bind.klutch_manifest) carry each object's uid), instead of reading the cluster again.
options:
  _input:
    description: The UID of the app cluster's C(klutch-bind) namespace; null gives null.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Create the klutch-bind namespace
  klutch.bind.klutch_manifest:
    definition:
      apiVersion: v1
      kind: Namespace
      metadata:
        name: klutch-bind
  register: bind_namespace

- name: Export services to this app cluster, by its id
  klutch.bind.klutch_export_request:
    kubeconfig: /etc/klutch/control-plane.kubeconfig
    consumer: app-eu-1
    cluster_id: "{{ bind_namespace.results[0].uid | klutch.bind.cluster_id }}"
    resources:
      - {group: mangodb.com, resource: mangodbs}
"""

RETURN = r"""
_value:
  description: The cluster id (six characters), or null when the input is null.
  type: str
  sample: 3fK9aQ
"""

from ansible_collections.klutch.bind.plugins.module_utils.app_cluster import cluster_id


def cluster_id_or_none(klutch_bind_namespace_uid):
    return None if klutch_bind_namespace_uid is None else cluster_id(klutch_bind_namespace_uid)


class FilterModule(object):
    def filters(self):
        return {"cluster_id": cluster_id_or_none}
