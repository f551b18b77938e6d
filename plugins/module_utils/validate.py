# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of user input that must hold before anything is sent to a cluster, worded per option."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.klutch.bind.plugins.module_utils.errors import ConfigError

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
# RFC 1123: a label (namespaces, most generated names) and a subdomain (most object names).
FORMATS = {
    "label": (re.compile(r"^%s$" % _LABEL), 63,
              "lower-case letters, digits and '-', starting and ending with a letter or digit"),
    "subdomain": (re.compile(r"^%s(\.%s)*$" % (_LABEL, _LABEL)), 253,
                  "lower-case letters, digits, '-' and '.', each part starting and ending with a letter or digit"),
}


def name_problem(value, name_format="subdomain"):
    """Why `value` is not a Kubernetes name of `name_format` ("label" or "subdomain"), or None."""
    pattern, longest, rule = FORMATS[name_format]
    if not isinstance(value, str) or not value:
        return "it is empty (an undefined variable renders as an empty string)"
    if len(value) > longest:
        return "it has %d characters, more than the %d allowed" % (len(value), longest)
    if not pattern.match(value):
        return "it may hold only %s" % rule
    return None


def require_name(option, value, what, name_format="subdomain"):
    """ConfigError naming `option` when `value` cannot name `what`."""
    problem = name_problem(value, name_format)
    if problem:
        raise ConfigError("%s %r cannot name %s: %s. Set %s to a valid Kubernetes name." % (
            option, value if isinstance(value, str) else "", what, problem, option))


def require_consumer(consumer, cluster_id):
    """The consumer identity `<consumer>#<cluster id>` must name one consumer, never every one or a wrong one."""
    if not isinstance(consumer, str) or not consumer.strip() or "#" in consumer:
        raise ConfigError("consumer %r cannot identify a consumer: it is empty or holds '#', which separates it from "
                          "the cluster id in the identity annotation. Set consumer to the app cluster's stable name."
                          % (consumer if isinstance(consumer, str) else ""))
    if not isinstance(cluster_id, str) or not re.match(r"^[0-9A-Za-z]+$", cluster_id):
        raise ConfigError("cluster_id %r is not an app cluster's id (letters and digits, as klutch_cluster_info "
                          "returns it). Set cluster_id from klutch_cluster_info's cluster_id."
                          % (cluster_id if isinstance(cluster_id, str) else ""))
