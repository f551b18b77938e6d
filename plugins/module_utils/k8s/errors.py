# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors of the cluster-access layer, worded for the person running the playbook.

Every message names what was being done, to which object, on which cluster, and what to do
next. Messages never include request bodies, credentials or kubeconfig contents.

The client raises a subclass of ClusterError for each answer a caller may act on (NotFound,
Conflict, ...), so callers catch the class instead of comparing `.status`, which stays set.
"""


class ClusterError(Exception):
    """A failure talking to a cluster; `str()` is the one-line message for `fail_json`."""

    def __init__(self, message, status=None, reason=None, object_missing=False):
        super(ClusterError, self).__init__(message)
        self.status = status
        self.reason = reason
        # A 404 for an object that does not exist, as opposed to a resource type that is not served.
        self.object_missing = object_missing


class ConfigError(ClusterError):
    """The connection options or the kubeconfig are wrong; nothing was sent anywhere."""


class WaitTimeout(ClusterError):
    """An object did not reach the awaited state in time."""


class BadRequest(ClusterError):
    """400: the server could not read the request, e.g. a field it does not know."""


class Unauthorized(ClusterError):
    """401: the credentials were rejected."""


class Forbidden(ClusterError):
    """403: the identity lacks a permission."""


class NotFound(ClusterError):
    """404: the object does not exist (`object_missing`), or the resource type is not served."""


class Conflict(ClusterError):
    """409: the object exists already, changed since it was read, or its fields belong to another manager."""


class Gone(ClusterError):
    """410: a resourceVersion or continue token too old to serve: list again."""


class Invalid(ClusterError):
    """422, or a value of the wrong type, which the server refuses with a 500: the object is invalid."""


class Unavailable(ClusterError):
    """No answer (refused, dropped, timed out), or 429 or 5xx until the retries ran out; `status` is None
    when no answer came."""


STATUS_ERRORS = {400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict, 410: Gone,
                 422: Invalid, 429: Unavailable}


def error_class(status):
    """The ClusterError subclass for an HTTP status; ClusterError itself for a status no caller tells apart."""
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    if isinstance(status, int) and status >= 500:
        return Unavailable
    return ClusterError


def status_error(message, status, **details):
    """The error for an HTTP `status`, of the class error_class() gives; `details` as ClusterError takes them."""
    return error_class(status)(message, status=status, **details)


def _server_message(status_body):
    if not isinstance(status_body, dict):
        return ""
    message = status_body.get("message") or ""
    causes = (status_body.get("details") or {}).get("causes") or []
    extra = [
        "%s: %s" % (cause.get("field"), cause.get("message"))
        for cause in causes
        if cause.get("field") and cause.get("message") and cause.get("message") not in message
    ]
    return "; ".join([message] + extra) if extra else message


def object_missing(status, status_body):
    """A 404 names the missing object in `details`; an unserved resource type has none."""
    return status == 404 and isinstance(status_body, dict) and bool((status_body.get("details") or {}).get("name"))


def typed_patch_error(status, status_body):
    """Server-side apply of a value of the wrong type fails with 500, but it is the caller's error."""
    return status == 500 and "failed to create typed patch object" in _server_message(status_body)


def api_error_message(status, status_body, action, target, cluster):
    """The message for an HTTP error `status` while doing `action` on `target` in `cluster`."""
    server = _server_message(status_body)
    said = " The API server said: %s" % server if server else ""
    where = "%s %s on %s" % (action, target, cluster)
    if status == 401:
        return (
            "Cannot %s: the credentials were rejected (401 Unauthorized). The token or client "
            "certificate is wrong or expired: refresh the kubeconfig, api_key or client_cert."
            % where
        )
    if status == 403:
        return (
            "Cannot %s: permission denied (403 Forbidden).%s Grant the missing verb with a Role or "
            "ClusterRole and a binding, or connect as an identity that has it." % (where, said)
        )
    if status == 404:
        if not object_missing(status, status_body):
            return (
                "Cannot %s: the API server does not serve this resource type (404).%s Install its "
                "CustomResourceDefinition or check the apiVersion." % (where, said)
            )
        return "Cannot %s: it does not exist (404).%s Create it first or check the name and namespace." % (
            where, said)
    if status == 409:
        if "conflict" in server.lower() and "apply" in server.lower():
            fix = "Another field manager owns these fields: change them through that manager, or force the apply."
        else:
            fix = "It was changed or created concurrently: run the task again."
        return "Cannot %s: conflict (409).%s %s" % (where, said, fix)
    if status == 422 or typed_patch_error(status, status_body):
        return "Cannot %s: the object is invalid (422).%s Fix the fields named above." % (where, said)
    if status == 429:
        return "Cannot %s: the API server is throttling requests (429) and retries ran out.%s Try again later." % (
            where, said)
    if status is not None and status >= 500:
        return "Cannot %s: the API server failed (%s) and retries ran out.%s Check the API server's health." % (
            where, status, said)
    return "Cannot %s: the API server answered %s.%s" % (where, status, said)


def connection_error_message(error_text, action, target, cluster):
    """The message when no HTTP answer came back: refused, unresolvable, TLS, timeout."""
    text = error_text.lower()
    where = "%s %s on %s" % (action, target, cluster)
    if "mismatch" in text or ("hostname" in text and "match" in text):
        return (
            "Cannot %s: the server's certificate does not name this host. Use the host name or address the "
            "certificate was issued for (or the kubeconfig's tls-server-name)." % where
        )
    if "certificate verify failed" in text or "certificate_verify_failed" in text:
        return (
            "Cannot %s: the server's TLS certificate is not trusted by the configured CA. Set ca_cert "
            "(or the kubeconfig's certificate-authority-data) to the cluster's CA." % where
        )
    if "ssl" in text or "tls" in text:
        return "Cannot %s: the TLS handshake failed. Check ca_cert, client_cert and client_key." % where
    if "refused" in text:
        return "Cannot %s: the connection was refused. Check that the API server runs and the host and port are right." % (
            where)
    if "name or service not known" in text or "nodename nor servname" in text or "resolution" in text:
        return "Cannot %s: the host name does not resolve. Check the host or the kubeconfig's server." % where
    if "timed out" in text or "timeout" in text:
        return "Cannot %s: the API server did not answer in time. Check the network path and proxy settings." % where
    return "Cannot %s: the API server is unreachable. Check the host, port and proxy settings." % where
