# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place that talks to an API server: get, list, server-side apply, delete, watch, wait.

Requests go straight to known paths over urllib3 (no discovery, no generated models), with the
auth that connection.py read (itself, or through the `kubernetes` package for unusual kubeconfigs).
Check mode adds dryRun=All to every write, so the API server validates what would happen and
nothing is stored.
"""

import ipaddress
import json
import os
import ssl
import tempfile
import time

from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import (
    authorization_header,
    build_configuration,
    resolve_auth,
)
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import (
    ClusterError,
    ConfigError,
    Gone,
    NotFound,
    Unavailable,
    WaitTimeout,
    api_error_message,
    connection_error_message,
    object_missing,
    status_error,
    typed_patch_error,
)
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import Change, has_changed, unmet_conditions
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import (
    KNOWN,
    NAMESPACES,
    PODS,
    Resource,
    SELF_SUBJECT_ACCESS_REVIEWS,
    api_resource_list_entry,
)

try:
    from urllib.parse import urlencode
except ImportError:  # pragma: no cover - Python 2 is not supported; keeps the compile test quiet
    from urllib import urlencode

try:
    import urllib3
    from urllib3._collections import HTTPHeaderDict
except ImportError:  # reported by the module's import check
    urllib3 = HTTPHeaderDict = None

FIELD_MANAGER = "klutch.bind"
USER_AGENT = "klutch.bind"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
# A cluster that is restarting, overloaded or briefly unreachable is tried again with exponential
# backoff (0.5 s, 1 s, 2 s, ... at most BACKOFF_CAP apart, or the server's Retry-After) until
# RETRY_BUDGET seconds have passed since the first failure. Agents use a shorter budget: their
# next pass tries again anyway.
RETRY_BUDGET = 60.0
AGENT_RETRY_BUDGET = 10.0
RETRY_BUDGET_VARIABLE = "KLUTCH_BIND_RETRY_BUDGET"  # a module's budget in seconds, for jobs that must fail fast
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
LIST_RESTARTS = 3  # times a list whose continue token expired starts over


def backoff(attempt):
    """Exponential backoff: 0.5 s, 1 s, 2 s, ... capped."""
    return min(BACKOFF_CAP, BACKOFF_BASE * (2 ** attempt))


def retry_delay(attempt, status, status_body, retry_after=None):
    """Seconds to wait before retrying a failed request, or None when retrying cannot help.

    429 and 5xx are transient, and a 409 for an object still being deleted. Any other 409 is not:
    the same request would meet the same newer resourceVersion, apply conflict or existing object;
    its caller reads again and decides.
    """
    if typed_patch_error(status, status_body):
        return None
    message = (status_body or {}).get("message", "") if isinstance(status_body, dict) else ""
    transient = status == 429 or status >= 500 or (status == 409 and "being deleted" in message)
    if not transient:
        return None
    delay = backoff(attempt)
    if retry_after:
        try:
            delay = min(BACKOFF_CAP, max(delay, float(retry_after)))
        except ValueError:
            pass
    return delay


# write() methods: (what messages call it, HTTP verb, content type)
WRITES = {"POST": ("create", "POST", "application/json"), "PUT": ("replace", "PUT", "application/json"),
          "PATCH": ("patch", "PATCH", "application/merge-patch+json"),
          "APPLY": ("apply", "PATCH", "application/apply-patch+yaml")}
UNREAD = object()  # apply() reads the current object itself unless given it


def retry_budget_from(environ):
    """The seconds to keep retrying, from KLUTCH_BIND_RETRY_BUDGET (unset or empty: RETRY_BUDGET)."""
    value = environ.get(RETRY_BUDGET_VARIABLE)
    if value is None or not value.strip():
        return RETRY_BUDGET
    try:
        budget = float(value)
    except ValueError:
        budget = -1.0
    if not 0 <= budget <= 3600:
        raise ConfigError("%s=%r is not a number of seconds from 0 to 3600: set it to how long to retry an API server "
                          "that is unreachable or overloaded (0: do not retry), or unset it for %d."
                          % (RETRY_BUDGET_VARIABLE, value, RETRY_BUDGET))
    return budget


class ClusterClient:
    """A connection to one cluster; `label` names it in every message."""

    def __init__(self, configuration, label, dry_run=False, impersonate_user=None, impersonate_groups=None,
                 retry_budget=RETRY_BUDGET):
        self.configuration = configuration
        self.label = label
        self.dry_run = dry_run
        self.retry_budget = retry_budget
        self.impersonate_user = impersonate_user
        self.impersonate_groups = impersonate_groups or []
        try:
            self._pool = _pool_manager(configuration)
        except ValueError as error:  # e.g. a socks5:// proxy, which urllib3 cannot use without extras
            raise ConfigError("Cannot connect to %s through proxy %s: %s. Use an http:// or https:// proxy." % (
                label, configuration.proxy, error))
        except ssl.SSLError:
            raise ConfigError("The CA data for %s holds no PEM certificate: fix the kubeconfig's "
                              "certificate-authority-data." % label)
        self._group_versions = {}

    @classmethod
    def from_params(cls, params, dry_run=False, environ=None, retry_budget=None):
        """A client from module parameters (kubernetes.core names) and K8S_AUTH_* variables (`environ`). The
        retry budget is `retry_budget`, else the process's KLUTCH_BIND_RETRY_BUDGET (for every cluster a
        module talks to), else RETRY_BUDGET."""
        if retry_budget is None:
            retry_budget = retry_budget_from(os.environ)
        settings = resolve_auth(params, environ)
        configuration, label = build_configuration(settings, environ)
        return cls(configuration, label, dry_run=dry_run, impersonate_user=settings.get("impersonate_user"),
                   impersonate_groups=settings.get("impersonate_groups"), retry_budget=retry_budget)

    # -- transport ------------------------------------------------------------------------
    def _headers(self, content_type=None):
        headers = HTTPHeaderDict({"Accept": "application/json", "User-Agent": USER_AGENT})
        if content_type:
            headers["Content-Type"] = content_type
        authorization = authorization_header(self.configuration)
        if authorization:
            headers["Authorization"] = authorization
        if self.impersonate_user:
            headers["Impersonate-User"] = self.impersonate_user
        for group in self.impersonate_groups:
            headers.add("Impersonate-Group", group)
        return headers

    def request(self, method, path, action, target, query=None, body=None, content_type=None, stream=False,
                read_timeout=READ_TIMEOUT):
        """Send one request with retries; the decoded JSON body, or the open response if `stream`."""
        url = self.configuration.host + path
        if query:
            url += "?" + urlencode([(key, value) for key, value in query.items() if value is not None])
        payload = json.dumps(body) if body is not None else None
        attempt, failing_since = 0, None

        def wait_before_retry(delay):
            """Sleep and say True while the retry budget, counted from the first failure, lasts."""
            if delay is None or time.monotonic() + delay - failing_since > self.retry_budget:
                return False
            time.sleep(delay)
            return True

        while True:
            try:
                response = self._pool.request(
                    method, url, body=payload, headers=self._headers(content_type if body is not None else None),
                    timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT, read=read_timeout), retries=False,
                    preload_content=not stream, redirect=False)
            except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError) as error:
                # Refused or dropped: the server is restarting or briefly away. TLS, DNS and read timeouts
                # are not retried: they do not heal by themselves, or the request may have been served.
                failing_since = failing_since or time.monotonic()
                if wait_before_retry(backoff(attempt)):
                    attempt += 1
                    continue
                raise Unavailable(connection_error_message(str(error), action, target, self.label))
            except urllib3.exceptions.LocationValueError:
                raise ConfigError("The API server address %s is not a valid URL: fix host or the kubeconfig's "
                                  "server." % self.configuration.host)
            except urllib3.exceptions.TimeoutError as error:
                raise Unavailable(connection_error_message(str(error), action, target, self.label))
            except urllib3.exceptions.HTTPError as error:
                raise ClusterError(connection_error_message(str(error), action, target, self.label))
            if response.status < 300:
                return response if stream else _decode(response.data)
            status_body = _decode(response.data if not stream else response.read()) if response.status >= 400 else None
            failing_since = failing_since or time.monotonic()
            if response.status < 400 or not wait_before_retry(retry_delay(attempt, response.status, status_body,
                                                                          response.headers.get("Retry-After"))):
                raise self._refusal(response, status_body, action, target)
            attempt += 1

    def _refusal(self, response, status_body, action, target):
        """The error for an answer that is no success, once no retry is left."""
        if response.status < 400:
            return status_error(
                "Cannot %s %s on %s: the server redirected to %s (%s); an API server never does. Check host, "
                "proxy and any authenticating proxy in front of the cluster." % (
                    action, target, self.label, response.headers.get("Location", "elsewhere"), response.status),
                response.status)
        reason = status_body.get("reason") if isinstance(status_body, dict) else None
        # A value of the wrong type is the caller's error, whatever status the server gives it.
        status = 422 if typed_patch_error(response.status, status_body) else response.status
        return status_error(api_error_message(response.status, status_body, action, target, self.label),
                            status, reason=reason, object_missing=object_missing(response.status, status_body))

    def api_resources(self, api_version):
        """The API server's resource list of one group version (cached); empty when not served."""
        if api_version not in self._group_versions:
            path = Resource(api_version, "", "").group_version_path
            try:
                self._group_versions[api_version] = self.request(
                    "GET", path, "read", "API group version %s" % api_version)
            except NotFound:
                self._group_versions[api_version] = {}
        return self._group_versions[api_version]

    def resource_for(self, api_version, kind):
        """The Resource for a kind: from the known table, else one look at its group version.

        Only the group version of an unfamiliar kind is read (cached per client), never the whole
        API; a kind that is not served gives None.
        """
        if (api_version, kind) in KNOWN:
            return KNOWN[(api_version, kind)]
        return api_resource_list_entry(self.api_resources(api_version), kind)

    def resource_by_plural(self, api_version, plural):
        """The Resource called `plural` in a group version, or None: permission claims name resources so."""
        known = next((item for item in KNOWN.values() if (item.api_version, item.plural) == (api_version, plural)), None)
        if known is not None:
            return known
        for entry in self.api_resources(api_version).get("resources") or []:
            if entry.get("name") == plural:
                return Resource(api_version, entry["kind"], plural, namespaced=bool(entry.get("namespaced")))
        return None

    def forget_group_version(self, api_version):
        """Read a group version again on next use, e.g. after its CRD was installed."""
        self._group_versions.pop(api_version, None)

    # -- verbs --------------------------------------------------------------------------------
    def get(self, resource, name, namespace=None):
        """The object, or None when it does not exist."""
        try:
            return self.request("GET", resource.path(namespace, name), "get", resource.describe(name, namespace))
        except ClusterError as error:
            if error.object_missing:
                return None
            raise

    def list(self, resource, namespace=None, label_selector=None, field_selector=None):
        """All items (following `continue`), each as a GET shows it, and the list's resourceVersion."""
        first = {"labelSelector": label_selector, "fieldSelector": field_selector, "limit": 500}
        items, query, restarts = [], first, 0
        while True:
            try:
                page = self.request("GET", resource.collection_path(namespace), "list",
                                    resource.describe(namespace=namespace), query=query)
            except Gone:
                # A continue token expires (410) once the server has compacted its revision, when the pages
                # come slowly: start over for one consistent list.
                if query is first or restarts == LIST_RESTARTS:
                    raise
                items, query, restarts = [], first, restarts + 1
                continue
            # Built-in kinds leave apiVersion and kind out of list items; objects read one by one carry them.
            items.extend(dict(item, apiVersion=resource.api_version, kind=resource.kind) for item in page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items, (page.get("metadata") or {}).get("resourceVersion")
            query = dict(query, **{"continue": token})

    def allowed(self, verb, group, resource, namespace=None):
        """Whether the API server lets this client's identity `verb` `resource` of API group `group` (in
        `namespace`) now."""
        answer = self.request("POST", SELF_SUBJECT_ACCESS_REVIEWS.collection_path(), "create",
                              "a SelfSubjectAccessReview", body={
                                  "apiVersion": SELF_SUBJECT_ACCESS_REVIEWS.api_version,
                                  "kind": SELF_SUBJECT_ACCESS_REVIEWS.kind,
                                  "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                                                  "namespace": namespace}}})
        return bool((answer.get("status") or {}).get("allowed"))

    def await_allowed(self, checks, timeout):
        """Until this client may do each (verb, group, resource, namespace) of `checks`; the first still refused
        after `timeout` s, else None. The API server authorizes from a cache of RBAC objects that trails
        their writes, so a request right after the write that grants it can still be refused."""
        deadline = time.monotonic() + timeout
        for check in checks:
            while not self.allowed(*check):
                if time.monotonic() > deadline:
                    return check
                time.sleep(0.05)
        return None

    def apply(self, resource, body, force=False, before=UNREAD, subresource=None, field_manager=FIELD_MANAGER,
              answer=None):
        """Server-side apply of `body` as field manager klutch.bind; a Change with before and after.

        The apply is first sent as a dry run: when the server's answer equals what is stored, no
        write request is made at all, so an unchanged object costs two reads and no write. A caller
        that has just listed the object passes it as `before` (None when absent) to save the GET,
        and one that has dry-run it already passes the server's `answer`.
        With `subresource="status"`, only the status is applied, as a controller writes it; writers
        that share an object's status apply as different `field_manager`s, so neither drops the other's fields.
        """
        name, namespace = self._apply_target(resource, body)
        if before is UNREAD:
            before = self.get(resource, name, namespace)
        try:
            planned = answer
            if planned is None:
                planned = self.dry_run_apply(resource, body, force, subresource, field_manager)
        except NotFound:
            # Check mode: an earlier step would create the namespace, which the server cannot dry-run into.
            if not (self.dry_run and before is None and namespace and self.get(NAMESPACES, namespace) is None):
                raise
            return Change(None, body, True)
        if not has_changed(before, planned):
            return Change(before, before, False)
        return Change(before, planned if self.dry_run else self._send_apply(resource, body, force, subresource,
                                                                            field_manager, dry_run=False), True)

    def dry_run_apply(self, resource, body, force=False, subresource=None, field_manager=FIELD_MANAGER):
        """What the server would store if `body` were applied (nothing is written)."""
        return self._send_apply(resource, body, force, subresource, field_manager, dry_run=True)

    @staticmethod
    def _apply_target(resource, body):
        metadata = body.get("metadata") or {}
        name, namespace = metadata.get("name"), metadata.get("namespace")
        if not name or (resource.namespaced and not namespace):
            raise ConfigError("Cannot apply %s %s without metadata.name%s." % (
                resource.kind, name or "(unnamed)", " and metadata.namespace" if resource.namespaced else ""))
        return name, namespace

    def _send_apply(self, resource, body, force, subresource, field_manager, dry_run):
        name, namespace = self._apply_target(resource, body)
        query = {"fieldManager": field_manager, "force": "true" if force else "false"}
        if dry_run:
            query["dryRun"] = "All"
        return self.request("PATCH", resource.path(namespace, name, subresource), "apply", resource.describe(name, namespace),
                            query=query, body=dict(body, apiVersion=resource.api_version, kind=resource.kind),
                            content_type="application/apply-patch+yaml")

    def write(self, method, resource, body, subresource=None):
        """One create (POST), replace (PUT), merge patch (PATCH) or forced server-side apply (APPLY) of
        `body`, a dry run in check mode; the object written.

        Unlike apply() it does not compare first: for callers that planned the write from a listing.
        """
        metadata = body.get("metadata") or {}
        name, namespace = metadata.get("name"), metadata.get("namespace")
        path = resource.collection_path(namespace) if method == "POST" else resource.path(namespace, name, subresource)
        action, verb, content_type = WRITES[method]
        query = {"fieldManager": FIELD_MANAGER, "dryRun": "All" if self.dry_run else None,
                 "force": "true" if method == "APPLY" else None}
        return self.request(verb, path, action, resource.describe(name, namespace), query=query, body=body,
                            content_type=content_type)

    def delete(self, resource, name, namespace=None, propagation="Background", before=UNREAD):
        """Delete if present; a Change whose `after` is None. `before` saves the GET, as for apply()."""
        if before is UNREAD:
            before = self.get(resource, name, namespace)
        if before is None:
            return Change(None, None, False)
        try:
            self.request("DELETE", resource.path(namespace, name), "delete", resource.describe(name, namespace),
                         query={"propagationPolicy": propagation, "dryRun": "All" if self.dry_run else None})
        except ClusterError as error:
            if not error.object_missing:
                raise
        return Change(before, None, True)

    def pod_log(self, name, namespace, container, tail_lines, previous=False):
        """The last `tail_lines` lines a container (or its previous run) wrote, as text."""
        response = self.request("GET", PODS.path(namespace, name, "log"), "read the log of", "container %s of %s" % (
            container, PODS.describe(name, namespace)), query={
                "container": container, "tailLines": tail_lines, "previous": "true" if previous else None},
            stream=True)
        try:
            return response.read().decode("utf-8", "replace")
        finally:
            response.release_conn()

    def watch(self, resource, namespace, resource_version, timeout, field_selector=None):
        """Yield (type, object) watch events until the server ends the watch after `timeout` s."""
        try:
            response = self.request(
                "GET", resource.collection_path(namespace), "watch", resource.describe(namespace=namespace),
                query={"watch": "true", "resourceVersion": resource_version, "fieldSelector": field_selector,
                       "timeoutSeconds": max(1, int(timeout)), "allowWatchBookmarks": "true"},
                stream=True, read_timeout=timeout + 10)
        except Gone as error:
            # A version too old may come back as the response's status instead of an ERROR event: the same.
            yield "ERROR", {"code": 410, "reason": error.reason, "message": str(error)}
            return
        try:
            for line in response:
                if line.strip():
                    event = json.loads(line)
                    yield event.get("type"), event.get("object") or {}
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError):
            return  # the connection dropped (an idle timeout on the way, say): the caller watches again
        finally:
            response.release_conn()

    def wait(self, resource, name, namespace, condition, timeout, description):
        """Watch one object until `condition(obj_or_None)` holds; WaitTimeout after `timeout` s."""
        deadline = time.monotonic() + timeout
        selector = "metadata.name=%s" % name
        items, version = self.list(resource, namespace, field_selector=selector)
        current = items[0] if items else None
        while not condition(current):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                unmet = unmet_conditions(current)
                raise WaitTimeout("Timed out after %ss waiting for %s on %s to be %s%s. Raise wait_timeout, or "
                                  "check why it is not (kubectl describe)." % (
                                      timeout, resource.describe(name, namespace), self.label, description,
                                      "; it reports " + "; ".join(unmet) if unmet else
                                      "; it does not exist" if current is None else ""))
            gone = False
            for kind, obj in self.watch(resource, namespace, version, remaining, selector):
                if kind == "ERROR":
                    if obj.get("code") != 410:
                        raise status_error(api_error_message(obj.get("code"), obj, "watch",
                                                             resource.describe(name, namespace), self.label),
                                           obj.get("code"), reason=obj.get("reason"))
                    gone = True  # the version is too old: list again
                    break
                version = (obj.get("metadata") or {}).get("resourceVersion", version)
                if kind == "BOOKMARK":
                    continue
                current = None if kind == "DELETED" else obj
                if condition(current) or time.monotonic() >= deadline:
                    break
            if gone:
                items, version = self.list(resource, namespace, field_selector=selector)
                current = items[0] if items else None
        return current


def _decode(data):
    if not data:
        return {}
    try:
        return json.loads(data)
    except ValueError:
        return {"message": data.decode("utf-8", "replace")[:500] if isinstance(data, bytes) else str(data)[:500]}


def _pool_manager(configuration):
    options = {
        "cert_reqs": ssl.CERT_REQUIRED if configuration.verify_ssl else ssl.CERT_NONE,
        "ca_certs": configuration.ssl_ca_cert,
        "cert_file": configuration.cert_file,
        "key_file": configuration.key_file,
        "maxsize": 16,  # the sync pass writes with up to 8 threads, and watches hold connections
    }
    # Data in memory (set by this collection's kubeconfig reader only): urllib3 1.26 takes no
    # ca_cert_data and no key data, but every release takes a TLS context that holds them.
    cert_data, key_data = getattr(configuration, "cert_data", None), getattr(configuration, "key_data", None)
    if getattr(configuration, "ssl_ca_cert_data", None) or cert_data or key_data:
        options["ssl_context"] = urllib3.util.ssl_.create_urllib3_context()
    if getattr(configuration, "ssl_ca_cert_data", None):
        options["ssl_context"].load_verify_locations(cadata=configuration.ssl_ca_cert_data)
    if cert_data or key_data:
        load_client_certificate(options["ssl_context"], cert_data or _read(configuration.cert_file),
                                key_data or _read(configuration.key_file))
        options["cert_file"] = options["key_file"] = None
    if getattr(configuration, "tls_server_name", None):
        options["server_hostname"] = configuration.tls_server_name
    if not configuration.verify_ssl:
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        options["assert_hostname"] = False
    proxy = configuration.proxy
    if proxy and not _bypasses_proxy(configuration.host, getattr(configuration, "no_proxy", None)):
        return urllib3.ProxyManager(proxy, proxy_headers=getattr(configuration, "proxy_headers", None), **options)
    return urllib3.PoolManager(**options)


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def load_client_certificate(context, cert_pem, key_pem):
    """Load a client certificate and key into `context`. TLS reads them only from a file: one that
    only this user may read, removed as soon as they are loaded, so no key outlives the instant."""
    descriptor, path = tempfile.mkstemp(prefix="klutch-bind-")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem)
        context.load_cert_chain(path)
    except ssl.SSLError:
        raise ConfigError("The client certificate and key given as data do not load (not PEM, or not a pair): fix "
                          "the kubeconfig's client-certificate-data and client-key-data.")
    finally:
        os.remove(path)


def _bypasses_proxy(host, no_proxy):
    """Whether `host` matches a no_proxy entry: a name, a domain suffix, an address or a CIDR."""
    if not no_proxy:
        return False
    hostname = urllib3.util.parse_url(host).host or ""
    hostname = hostname.strip("[]").lower()
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        address = None
    for entry in (part.strip().lower() for part in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*" or hostname == entry or hostname.endswith("." + entry.lstrip(".")):
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False
