# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options (kubernetes.core's names and K8S_AUTH_* fallbacks) to a client configuration.

`resolve_auth` and `parse_kubeconfig` are pure. `build_configuration` reads kubeconfigs with
certificates, a token or basic auth itself, and a Pod's service account, and hands every other kind
(exec plugins, OIDC and other auth providers, token files, relative paths) to the official
`kubernetes` package, which knows them all. Importing that package costs about 0.2 s of CPU, a third
of a typical task, so it is imported only when needed; the agents run without it.

Certificates, keys and CA data given as data stay in memory: TLS loads a client certificate only
from a file, so the client writes it to a private file for the instant of loading and removes it
at once (client.py), and files the kubernetes package writes for them are read back and removed.
"""

import base64
import os
from urllib.parse import urlsplit

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import kind_of

try:
    import yaml
except ImportError:  # reported by the module's import check
    yaml = None

AUTH_ARG_SPEC = {
    "kubeconfig": {"type": "raw"},
    "context": {"type": "str"},
    "host": {"type": "str"},
    "api_key": {"type": "str", "no_log": True},
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"]},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"]},
    "client_cert": {"type": "path", "aliases": ["cert_file"]},
    "client_key": {"type": "path", "aliases": ["key_file"], "no_log": False},
    "proxy": {"type": "str"},
    "no_proxy": {"type": "str"},
    "impersonate_user": {"type": "str"},
    "impersonate_groups": {"type": "list", "elements": "str"},
}

# kubernetes.core reads K8S_AUTH_<OPTION> and, for some options, the older client attribute name.
ENV_NAMES = {
    name: ["K8S_AUTH_" + name.upper()] + [
        "K8S_AUTH_" + legacy for legacy in {
            "validate_certs": ["VERIFY_SSL"],
            "ca_cert": ["SSL_CA_CERT"],
            "client_cert": ["CERT_FILE"],
            "client_key": ["KEY_FILE"],
        }.get(name, [])
    ]
    for name in AUTH_ARG_SPEC
}

FALSE_STRINGS = ("0", "false", "no", "off", "n", "f")
SECRET_USER_KEYS = ("token", "password", "client-key-data", "id-token", "refresh-token", "client-secret",
                    "access-token")


def url_problem(value):
    """Why `value` is not an https:// or http:// server address with a host, or None."""
    if not isinstance(value, str) or not value.strip():
        return "it is empty (an undefined variable renders as an empty string)"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as error:
        return "it is not a URL (%s)" % error
    if parts.scheme not in ("https", "http"):
        return "it does not start with https:// (or http://)"
    if not parts.hostname:
        return "it names no host"
    if port is not None and not 0 < port < 65536:
        return "port %d is out of range" % port
    if parts.query or parts.fragment or any(char.isspace() for char in value):
        return "it holds a query, a fragment or white space"
    return None


def require_url(option, value):
    """ConfigError naming `option` when `value` is not a server address."""
    problem = url_problem(value)
    if problem:
        raise ConfigError("%s is not a server address (%r): %s. Set it to https://<host>:<port>." % (
            option, value if isinstance(value, str) else "", problem))


def resolve_auth(params, environ=None):
    """The connection settings: task parameters first, then K8S_AUTH_* environment variables."""
    environ = os.environ if environ is None else environ
    settings = {}
    for name, spec in AUTH_ARG_SPEC.items():
        value = params.get(name)
        if value is None:
            value = next((environ[env] for env in ENV_NAMES[name] if environ.get(env)), None)
            if value is not None and spec["type"] == "bool":
                value = value.strip().lower() not in FALSE_STRINGS
            elif value is not None and spec["type"] == "list":
                value = [item.strip() for item in value.split(",") if item.strip()]
            elif value is not None and spec["type"] == "path":
                value = os.path.expanduser(value)
        settings[name] = value
    settings["kubeconfig"] = parse_kubeconfig(settings["kubeconfig"])
    return settings


def _looks_inline(text):
    stripped = text.lstrip()
    return "\n" in stripped or stripped.startswith("{")


def parse_kubeconfig(value):
    """A kubeconfig option as a dict (inline YAML, JSON or dict) or a path string; None stays None."""
    if value is None or isinstance(value, dict):
        return value
    if not isinstance(value, str):
        raise ConfigError("kubeconfig must be a path, a dict or an inline YAML document, not a %s." % kind_of(value))
    if not value.strip():
        raise ConfigError("kubeconfig is empty (an undefined variable renders as an empty string): give a path or an "
                          "inline kubeconfig, or leave it out to use K8S_AUTH_KUBECONFIG or ~/.kube/config.")
    if not _looks_inline(value):
        return os.path.expanduser(value)
    try:
        loaded = yaml.safe_load(value)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark else ""
        raise ConfigError("The inline kubeconfig is not valid YAML%s: fix it, or pass a file path instead." % where)
    if not isinstance(loaded, dict):
        raise ConfigError("The inline kubeconfig is not a YAML mapping: pass a kubeconfig document or a file path.")
    return loaded


def kubeconfig_secrets(kubeconfig):
    """Secret values inside an inline kubeconfig, for `no_log_values` (server names stay visible)."""
    if not isinstance(kubeconfig, dict):
        return set()
    values = set()
    users = kubeconfig.get("users")
    for entry in users if isinstance(users, list) else []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue  # a malformed entry is refused when the kubeconfig is loaded
        provider = (user.get("auth-provider") or {}).get("config") if isinstance(user.get("auth-provider"), dict) else None
        for fields in (user, provider if isinstance(provider, dict) else {}):
            values.update(str(fields[key]) for key in SECRET_USER_KEYS if fields.get(key))
    return values


# The kubeconfig fields this module reads itself, by type; a wrong type is refused as kubectl refuses it.
KUBECONFIG_SECTIONS = {"clusters": "cluster", "contexts": "context", "users": "user"}
KUBECONFIG_BOOLEANS = {"cluster": ("insecure-skip-tls-verify", "disable-compression")}
KUBECONFIG_STRINGS = {
    "cluster": ("server", "certificate-authority", "certificate-authority-data", "tls-server-name", "proxy-url"),
    "context": ("cluster", "user", "namespace"),
    "user": ("client-certificate", "client-certificate-data", "client-key", "client-key-data", "token", "tokenFile",
             "username", "password"),
}


def kubeconfig_problem(document):
    """Where a kubeconfig document's shape is wrong (e.g. "users[0].user is a string, not a mapping"), or None."""
    if not isinstance(document.get("current-context", ""), str):
        return "current-context is not a string"
    for section, key in KUBECONFIG_SECTIONS.items():
        entries = document.get(section)
        if entries is None:
            continue
        if not isinstance(entries, list):
            return "%s is a %s, not a list of entries with a name and a %s" % (section, kind_of(entries), key)
        for index, entry in enumerate(entries):
            where = "%s[%d]" % (section, index)
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
                return "%s is not an entry with a name and a %s" % (where, key)
            body = entry.get(key)
            if body is None:
                continue
            if not isinstance(body, dict):
                return "%s.%s is a %s, not a mapping" % (where, key, kind_of(body))
            for field in KUBECONFIG_BOOLEANS.get(key, ()):
                if field in body and not isinstance(body[field], bool):
                    return "%s.%s.%s is %r, not true or false (write it unquoted)" % (where, key, field, body[field])
            for field in KUBECONFIG_STRINGS[key]:
                if field in body and not isinstance(body[field], str):
                    return "%s.%s.%s is a %s, not a string" % (where, key, field, kind_of(body[field]))
    return None


def check_kubeconfig(document, source):
    problem = kubeconfig_problem(document)
    if problem:
        raise ConfigError("The kubeconfig %s is malformed: %s. Fix or regenerate it." % (source, problem))


def _read_kubeconfig_files(path):
    """Merge a ':'-separated list of kubeconfig files the way kubectl does: first wins."""
    merged = {"clusters": [], "contexts": [], "users": []}
    paths = [os.path.expanduser(part) for part in path.split(":") if part]
    existing = [single for single in paths if os.path.isfile(single)]
    if not existing:
        raise ConfigError("The kubeconfig file %s does not exist: check the kubeconfig option or K8S_AUTH_KUBECONFIG." % path)
    for single in existing:  # like kubectl, missing files in a list are skipped
        try:
            with open(single) as handle:
                loaded = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError) as error:
            mark = getattr(error, "problem_mark", None)
            where = " at line %d" % (mark.line + 1) if mark else ""
            raise ConfigError("The kubeconfig file %s is not valid YAML%s: fix or regenerate it." % (single, where))
        if not isinstance(loaded, dict):
            raise ConfigError("The kubeconfig file %s is not a kubeconfig (no YAML mapping): fix or regenerate it." % single)
        check_kubeconfig(loaded, single)
        if not merged.get("current-context"):
            merged["current-context"] = loaded.get("current-context")
        for section in ("clusters", "contexts", "users"):
            known = set(item.get("name") for item in merged[section])
            merged[section].extend(item for item in loaded.get(section) or [] if isinstance(item, dict)
                                   and item.get("name") not in known)
    return merged


def _by_name(kubeconfig, section, key):
    """{name: entry} of a kubeconfig section, e.g. ("clusters", "cluster")."""
    return dict((item.get("name"), item.get(key) or {}) for item in kubeconfig.get(section) or []
                if isinstance(item, dict))


def select_context(kubeconfig, context, source):
    """The (context name, cluster server) that `context` picks; a clear error when it cannot."""
    contexts = _by_name(kubeconfig, "contexts", "context")
    name = context or kubeconfig.get("current-context")
    if not contexts:
        raise ConfigError("The kubeconfig %s has no contexts: it is not a usable kubeconfig." % source)
    if not name:
        raise ConfigError("The kubeconfig %s sets no current-context: set the context option to one of: %s." % (
            source, ", ".join(sorted(contexts))))
    if name not in contexts:
        raise ConfigError("The context %r is not in the kubeconfig %s. Its contexts are: %s. Set context to one of them." % (
            name, source, ", ".join(sorted(contexts))))
    clusters = _by_name(kubeconfig, "clusters", "cluster")
    cluster = contexts[name].get("cluster")
    if cluster not in clusters or not clusters[cluster].get("server"):
        raise ConfigError("The context %r of the kubeconfig %s names cluster %r, which has no server entry: fix the kubeconfig." % (
            name, source, cluster))
    return name, clusters[cluster]["server"]


def cluster_label(context, server):
    """How messages name the cluster: the context and server, never credentials."""
    return "cluster %s (%s)" % (context, server) if context else "cluster %s" % server


class ClientConfiguration:
    """The fields the client reads, named as in kubernetes.client.Configuration, plus CA data in memory."""

    def __init__(self):
        self.host = "http://localhost"
        self.verify_ssl = True
        self.ssl_ca_cert = self.ssl_ca_cert_data = self.cert_file = self.key_file = self.tls_server_name = None
        self.cert_data = self.key_data = None  # PEM bytes of a client certificate and key given as data
        self.proxy = self.no_proxy = None
        self.api_key, self.api_key_prefix, self.refresh_api_key_hook = {}, {}, None
        self.username = self.password = None


# Kubeconfig entries with only these keys are read here; any other key goes to the kubernetes package.
DIRECT_CLUSTER_KEYS = frozenset(("server", "certificate-authority", "certificate-authority-data",
                                 "insecure-skip-tls-verify", "tls-server-name", "proxy-url", "extensions"))
DIRECT_USER_KEYS = frozenset(("client-certificate", "client-certificate-data", "client-key", "client-key-data",
                              "token", "username", "password", "extensions"))

# Where the kubelet mounts a Pod's ServiceAccount token and CA; the variable moves it (tests).
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SERVICE_ACCOUNT_DIR_VARIABLE = "KLUTCH_BIND_SERVICE_ACCOUNT_DIR"


def build_configuration(settings, environ=None):
    """A client configuration and a label for messages, from resolved settings."""
    environ = os.environ if environ is None else environ
    context = None
    has_direct_credentials = settings.get("host") and (
        settings.get("api_key") or settings.get("username") or settings.get("client_cert"))
    kubeconfig = settings.get("kubeconfig")
    if has_direct_credentials:
        configuration = ClientConfiguration()
    elif kubeconfig is None and not settings.get("context") and environ.get("KUBERNETES_SERVICE_HOST"):
        configuration, context = in_cluster_configuration(environ)
    else:
        configuration, context = _load_kubeconfig(kubeconfig, settings.get("context"), environ)
    _apply_overrides(settings, configuration)
    return configuration, cluster_label(context, configuration.host)


class ServiceAccountToken:
    """A refresh hook that sends the token file's current content.

    Bound ServiceAccount tokens expire (after an hour by default) and the kubelet replaces the file
    well before, so a long-running agent reads it again whenever the file has changed.
    """

    def __init__(self, path):
        self.path = path
        self.seen = None

    def __call__(self, configuration):
        try:
            stat = os.stat(self.path)
            seen = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
            if seen == self.seen:
                return
            with open(self.path) as handle:
                token = handle.read().strip()
        except (OSError, IOError):
            if self.seen is not None:
                return  # caught between the kubelet's steps of a swap: the token read last still works
            raise ConfigError("Running in a Pod, but its ServiceAccount token %s cannot be read: mount it "
                              "(automountServiceAccountToken: true), or give kubeconfig." % self.path)
        if not token:
            raise ConfigError("Running in a Pod, but its ServiceAccount token %s is empty: mount the token, "
                              "or give kubeconfig." % self.path)
        configuration.api_key = {"authorization": "Bearer " + token}
        self.seen = seen


def in_cluster_configuration(environ):
    """(configuration, context label) from the Pod's environment and its ServiceAccount's token and CA."""
    directory = environ.get(SERVICE_ACCOUNT_DIR_VARIABLE) or SERVICE_ACCOUNT_DIR
    host, port = environ["KUBERNETES_SERVICE_HOST"], environ.get("KUBERNETES_SERVICE_PORT")
    if not port:
        raise ConfigError("KUBERNETES_SERVICE_HOST is set but KUBERNETES_SERVICE_PORT is not: set both (the "
                          "kubelet does in a Pod), or give kubeconfig.")
    configuration = ClientConfiguration()
    if ":" in host and not host.startswith("["):
        host = "[%s]" % host  # an IPv6 address
    configuration.host = "https://%s:%s" % (host, port)
    configuration.ssl_ca_cert = os.path.join(directory, "ca.crt")
    if not os.path.isfile(configuration.ssl_ca_cert):
        raise ConfigError("Running in a Pod, but its ServiceAccount CA %s does not exist: mount the ServiceAccount "
                          "token (automountServiceAccountToken: true), or give kubeconfig." % configuration.ssl_ca_cert)
    configuration.refresh_api_key_hook = ServiceAccountToken(os.path.join(directory, "token"))
    configuration.refresh_api_key_hook(configuration)
    # The namespace file is not read: every request names its namespace.
    return configuration, "in-cluster"


def _kubernetes_config():
    try:
        from kubernetes import config as kube_config  # pylint: disable=import-outside-toplevel
        from kubernetes.config.config_exception import ConfigException  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise ConfigError("This kubeconfig needs the kubernetes Python package (exec plugins, auth providers, token "
                          "files or relative paths), which is not installed here (the agent bundle does not carry "
                          "it): give a kubeconfig with certificates or a token, or install kubernetes.")
    return kube_config, ConfigException


def _kubernetes_configuration():
    from kubernetes.client import Configuration  # pylint: disable=import-outside-toplevel

    configuration = Configuration()
    # Some versions of the kubernetes package copy HTTPS_PROXY and NO_PROXY into every Configuration;
    # like kubernetes.core, a proxy comes only from the proxy option or the kubeconfig's proxy-url.
    configuration.proxy = configuration.no_proxy = None
    return configuration


def _load_kubeconfig(kubeconfig, context, environ):
    """(configuration, context used) from a kubeconfig: a dict, a path, or KUBECONFIG's files."""
    if kubeconfig is None:
        kubeconfig = os.path.expanduser(environ.get("KUBECONFIG") or "~/.kube/config")
        if not all(os.path.isfile(part) for part in kubeconfig.split(":") if part):
            raise ConfigError(
                "No cluster to connect to: set kubeconfig (a path or inline), host with api_key, or the "
                "K8S_AUTH_KUBECONFIG / K8S_AUTH_HOST environment variables; %s does not exist." % kubeconfig)
    inline = isinstance(kubeconfig, dict)
    source = "given inline" if inline else kubeconfig
    if inline:
        check_kubeconfig(kubeconfig, source)
    document = kubeconfig if inline else _read_kubeconfig_files(kubeconfig)
    context, server = select_context(document, context, source)
    require_url("The server of context %s in the kubeconfig %s" % (context, source), server)
    cluster, user = _context_entries(document, context)
    if set(cluster) <= DIRECT_CLUSTER_KEYS and set(user) <= DIRECT_USER_KEYS and _absolute_paths(cluster, user):
        return _direct_configuration(cluster, user, source), context
    kube_config, config_exception = _kubernetes_config()
    configuration = _kubernetes_configuration()
    try:
        if inline:
            kube_config.load_kube_config_from_dict(
                config_dict=kubeconfig, context=context, client_configuration=configuration, persist_config=False)
        else:
            kube_config.load_kube_config(
                config_file=kubeconfig, context=context, client_configuration=configuration, persist_config=False)
    except (config_exception, ValueError, TypeError, KeyError) as error:
        raise ConfigError("The kubeconfig %s is not usable: %s. Fix or regenerate it." % (
            source, str(error).splitlines()[0] if str(error) else type(error).__name__))
    configuration.cert_data = configuration.key_data = None
    _take_written_keys(configuration, user)
    return configuration, context


def _context_entries(document, context):
    """The cluster and user entries that `context` names (select_context checked that they exist)."""
    named = _by_name(document, "contexts", "context")[context]
    return (_by_name(document, "clusters", "cluster")[named["cluster"]],
            _by_name(document, "users", "user").get(named.get("user")) or {})


def _absolute_paths(cluster, user):
    # A relative path means relative to the kubeconfig's own file, which the kubernetes package resolves.
    paths = [cluster.get("certificate-authority"), user.get("client-certificate"), user.get("client-key")]
    return all(os.path.isabs(path) for path in paths if path)


def _direct_configuration(cluster, user, source):
    configuration = ClientConfiguration()
    configuration.host = cluster["server"].rstrip("/")
    configuration.verify_ssl = not cluster.get("insecure-skip-tls-verify")
    configuration.tls_server_name = cluster.get("tls-server-name")
    configuration.proxy = cluster.get("proxy-url")
    if cluster.get("certificate-authority-data"):
        configuration.ssl_ca_cert_data = _pem_data(cluster, "certificate-authority", source).decode("ascii", "replace")
    else:
        configuration.ssl_ca_cert = _pem(cluster, "certificate-authority", source)[0]
    configuration.cert_file, configuration.cert_data = _pem(user, "client-certificate", source)
    configuration.key_file, configuration.key_data = _pem(user, "client-key", source)
    if user.get("token"):
        configuration.api_key = {"authorization": "Bearer %s" % user["token"]}
    if user.get("username") and user.get("password") is not None:  # as the kubernetes package: both or none
        configuration.username, configuration.password = user["username"], user["password"]
    return configuration


def _pem_data(entry, key, source):
    """The decoded base64 `<key>-data` of a kubeconfig entry."""
    try:
        # Line breaks and spaces inside the data are allowed, as by the kubernetes package.
        return base64.b64decode("".join(str(entry[key + "-data"]).split()), validate=True)
    except (TypeError, ValueError):
        raise ConfigError("The kubeconfig %s has %s-data that is not base64: fix or regenerate it." % (source, key))


def _pem(entry, key, source):
    """(path of `key`, None) or (None, the decoded `<key>-data`); (None, None) when neither is set."""
    if entry.get(key + "-data"):
        return None, _pem_data(entry, key, source)
    if entry.get(key) and not os.path.isfile(entry[key]):
        raise ConfigError("The kubeconfig %s names %s %s, which does not exist: fix the path or regenerate it."
                          % (source, key, entry[key]))
    return entry.get(key), None


def _take_written_keys(configuration, user):
    """The kubernetes package writes certificate and key data to temporary files that outlive a killed
    process: read them back into memory and remove them."""
    for key, attribute in (("client-certificate", "cert"), ("client-key", "key")):
        path = getattr(configuration, attribute + "_file", None)
        if user.get(key + "-data") and path and os.path.isfile(path):
            with open(path, "rb") as handle:
                setattr(configuration, attribute + "_data", handle.read())
            os.remove(path)
            setattr(configuration, attribute + "_file", None)


def _apply_overrides(settings, configuration):
    """Options given next to a kubeconfig win over what it says, as in kubernetes.core."""
    if settings.get("host"):
        host = settings["host"] if "://" in settings["host"] else "https://" + settings["host"]  # as kubectl does
        require_url("host", host)
        configuration.host = host.rstrip("/")
    if settings.get("validate_certs") is not None:
        configuration.verify_ssl = settings["validate_certs"]
    for option, attribute in (("ca_cert", "ssl_ca_cert"), ("client_cert", "cert_file"),
                              ("client_key", "key_file"), ("proxy", "proxy"), ("no_proxy", "no_proxy")):
        if settings.get(option):
            setattr(configuration, attribute, settings[option])
    if settings.get("ca_cert"):
        configuration.ssl_ca_cert_data = None  # the option wins over the kubeconfig's CA data
    if settings.get("client_cert"):
        configuration.cert_data = None
    if settings.get("client_key"):
        configuration.key_data = None
    if settings.get("api_key"):
        configuration.api_key = {"authorization": "Bearer " + settings["api_key"]}
        configuration.api_key_prefix = {}
        configuration.refresh_api_key_hook = None
    if settings.get("username"):
        configuration.username = settings["username"]
        configuration.password = settings.get("password") or ""
    for option in ("ca_cert", "client_cert", "client_key"):
        if settings.get(option) and not os.path.isfile(settings[option]):
            raise ConfigError("%s %s does not exist: check the path." % (option, settings[option]))
    if bool(settings.get("client_cert")) != bool(settings.get("client_key")):
        raise ConfigError("%s is set without %s: set both, or neither." % (
            ("client_cert", "client_key") if settings.get("client_cert") else ("client_key", "client_cert")))
    if configuration.host.startswith("http://") and (configuration.api_key or configuration.username
                                                     or configuration.refresh_api_key_hook or configuration.cert_file
                                                     or configuration.cert_data):
        raise ConfigError("The server %s is plain http: its credentials would travel unencrypted. Use https://." % configuration.host)


def authorization_header(configuration):
    """The Authorization header the configuration implies, refreshing exec or OIDC tokens first.

    Read from the configuration's fields rather than `auth_settings()`, whose keys changed
    between releases of the kubernetes package.
    """
    if configuration.refresh_api_key_hook is not None:
        configuration.refresh_api_key_hook(configuration)
    for key in ("BearerToken", "authorization"):
        value = (configuration.api_key or {}).get(key)
        if value:
            prefix = (configuration.api_key_prefix or {}).get(key)
            return "%s %s" % (prefix, value) if prefix else value
    if configuration.username:
        return "Basic " + base64.b64encode(
            ("%s:%s" % (configuration.username, configuration.password or "")).encode()).decode()
    return None
