# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Checks of user input that must hold before anything is sent to a cluster, worded per option."""

import base64
import binascii
import re

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import kind_of

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


def consumer_name(option, consumer):
    """A check for a consumer's name, the first part of its identity `<consumer>#<cluster id>`."""
    if not isinstance(consumer, str) or not consumer.strip() or "#" in consumer:
        raise ConfigError("%s %r cannot identify a consumer: it is empty or holds '#', which separates it from "
                          "the cluster id in the identity annotation. Set %s to the app cluster's stable name."
                          % (option, consumer if isinstance(consumer, str) else "", option))


def require_consumer(consumer, cluster_id, option="cluster_id"):
    """The consumer identity `<consumer>#<cluster id>` must name one consumer, never every one or a wrong one."""
    consumer_name("consumer", consumer)
    if not isinstance(cluster_id, str) or not re.match(r"^[0-9A-Za-z]+$", cluster_id):
        raise ConfigError("%s %r is not an app cluster's id (letters and digits, as klutch_cluster_info "
                          "returns it). Set %s from klutch_cluster_info's cluster_id."
                          % (option, cluster_id if isinstance(cluster_id, str) else "", option))


def kubernetes_name(what, name_format="subdomain"):
    """A check for an option that names `what`: a Kubernetes name of `name_format`."""
    return lambda option, value: require_name(option, value, what, name_format)


def each(check):
    """A check for a list option whose every item `check` checks, as <option>[<index>]."""
    def check_all(option, values):
        for index, value in enumerate(values):
            check("%s[%d]" % (option, index), value)
    return check_all


def positive(least=1, unit="seconds"):
    """A check for a count or a duration in `unit` that must be at least `least`."""
    def check(option, value):
        if value < least:
            raise ConfigError("%s is %s: it must be at least %s %s%s. Set %s to a larger number, or leave it out for "
                              "the default." % (option, value, least, unit,
                                                " (0 would mean no wait, or a busy loop)" if least > 0 else "", option))
    return check


_AGE = re.compile(r"^(?:(\d{1,5})d)?(?:(\d{1,6})h)?(?:(\d{1,7})m)?(?:(\d{1,9})s)?$")


def age_seconds(text):
    """Seconds of an age such as "30d", "12h", "1h30m" or "45s"; None when it is not one."""
    match = _AGE.match(text) if isinstance(text, str) and text else None
    if not match:
        return None
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def age(option, value):
    """A check for an age given in days, hours, minutes and seconds."""
    if not age_seconds(value):
        raise ConfigError("%s is %r, not an age of at least one second: write it as days, hours, minutes and seconds, "
                          "for example 30d, 12h or 1h30m." % (option, value))


def text(option, value):
    """A check for free text that must not be empty."""
    if not value.strip():
        raise ConfigError("%s is empty (an undefined variable renders as an empty string): set it, or leave it out "
                          "for the default." % option)


def certificate_data(option, value):
    """A check for base64-encoded PEM certificates, as a kubeconfig's certificate-authority-data."""
    try:
        decoded = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if b"-----BEGIN CERTIFICATE-----" not in decoded:
        raise ConfigError("%s is not base64-encoded PEM certificate data: encode the CA's PEM file, for example with "
                          "'base64 -w0 ca.crt', or leave %s out to use the control plane's own CA." % (option, option))


def server_name(option, value):
    """A check for a TLS server name: a DNS name."""
    if name_problem(value.lower(), "subdomain"):
        raise ConfigError("%s %r is not a DNS name the server's certificate could hold: set it to the name in the "
                          "certificate, or leave it out." % (option, value))


def run_checks(params, checks):
    """Run {option: check(option, value)} over the options that were given (None: the default applies)."""
    for option, check in checks.items():
        if params.get(option) is not None:
            check(option, params[option])


def port(option, value):
    """A check for a TCP port to listen on."""
    if not 0 < value < 65536:
        raise ConfigError("%s is %s, not a TCP port (1-65535): set a free port, or leave it out." % (option, value))


def apis(option, items):
    """A check for a list of APIs named by group and plural resource, as exports and services give them."""
    for index, item in enumerate(items):
        require_name("%s[%d].group" % (option, index), item.get("group"), "an API group")
        require_name("%s[%d].resource" % (option, index), item.get("resource"), "a resource (the plural name)", "label")


def claim_name(option, name):
    """A check for one accept_claims entry: "*", or `<resource>` (core group) or `<resource>.<group>`."""
    if name != "*" and name_problem(name):
        raise ConfigError("%s %r is not a claim name: give each claim as text, <resource> for the core group "
                          "(secrets) or <resource>.<group> (widgets.example.org), or \"*\" for all." % (option, name))


claim_names = each(claim_name)


def services(option, items):
    """A check for klutch_bind's services: APIs, each with its accept_claims (binding needs one at least,
    which bindings.bind_app_cluster checks: unbinding takes none as all)."""
    apis(option, items)
    for index, item in enumerate(items):
        claim_names("%s[%d].accept_claims" % (option, index), item.get("accept_claims") or [])


_QUALIFIED = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def label_problem(key, value):
    """Why `key: value` cannot be a label (selector) of Kubernetes objects, or None."""
    prefix, _slash, name = key.rpartition("/") if isinstance(key, str) else ("", "", None)
    if not isinstance(name, str) or not _QUALIFIED.match(name) or (prefix and name_problem(prefix)):
        return "the key %r is not a label key ([prefix/]name, name up to 63 letters, digits, '-', '_', '.')" % (key,)
    if isinstance(value, (dict, list)) or value is None:
        return "the value of %s is a %s, not a string" % (key, kind_of(value))
    text_value = ("true" if value else "false") if isinstance(value, bool) else str(value)
    if text_value and not _QUALIFIED.match(text_value):
        return "the value %r of %s is not a label value (up to 63 letters, digits, '-', '_', '.')" % (text_value, key)
    return None


def permission_claims(option, claims):
    """A check for a template's permission claims: names, selectors, and one owner per kind."""
    owners = {}
    for index, claim in enumerate(claims):
        where = "%s[%d]" % (option, index)
        if claim.get("group"):
            require_name(where + ".group", claim["group"], "an API group")
        require_name(where + ".resource", claim.get("resource"), "a resource (the plural name)", "label")
        for field, name_format in (("names", "subdomain"), ("namespaces", "label")):
            for position, value in enumerate(claim.get(field) or []):
                require_name("%s.%s[%d]" % (where, field, position), value, "an object to claim", name_format)
        for position, labels in enumerate(claim.get("label_selectors") or []):
            problems = [label_problem(key, value) for key, value in labels.items()] or ["it is empty"]
            if any(problems):
                raise ConfigError("%s.label_selectors[%d] cannot select objects: %s. Give a mapping of label keys to "
                                  "values." % (where, position, next(problem for problem in problems if problem)))
        kind, owner = (claim.get("group") or "", claim["resource"]), claim.get("owner")
        first = owners.setdefault(kind, (index, owner)) if owner else (index, owner)
        if first[1] != owner:
            raise ConfigError("%s claims %s owned by the %s, and %s[%d] claims it owned by the %s. Each object would "
                              "be copied both ways and the sync would flap: give one owner per kind." % (
                                  where, ".".join(part for part in kind[::-1] if part), owner.lower(), option, first[0],
                                  first[1].lower()))
