# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading package manifests from an OCI registry, to check a package before a cluster pulls it.

The registry protocol (token exchange, Docker credential stores and helpers) is oras's; this file
reads references as Crossplane does and says what to do when a registry refuses."""

import ipaddress
import json
import os
import re
import tarfile
import traceback

from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError

try:
    import oras.provider
    import requests
    import requests.adapters
    import urllib3

    ORAS_IMPORT_ERROR = None
except ImportError:  # reported by klutch_dataservice, the one module that reads registries
    oras = requests = urllib3 = None
    ORAS_IMPORT_ERROR = traceback.format_exc()

TIMEOUT = 30  # seconds for one request to a registry
# Crossplane 1.x resolves references without a registry against this one.
DEFAULT_REGISTRY = "xpkg.upbound.io"
MANIFEST_TYPES = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
]


class Reference:
    """registry/repository:tag or @digest, as Crossplane and Docker read a package name."""

    def __init__(self, text):
        self.text = text
        name, _at, self.digest = text.partition("@")
        self.tag = None
        last = name.rsplit("/", 1)[-1]
        if ":" in last:
            name, self.tag = name.rsplit(":", 1)
        first, _slash, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            self.registry, self.repository = first, rest
        else:
            self.registry, self.repository = DEFAULT_REGISTRY, name
        valid_name = re.match(r"^[a-z0-9]+([._/-][a-z0-9]+)*$", self.repository or "")
        if not valid_name or not (self.tag or self.digest):
            raise ConfigError("Package %r is not a valid OCI reference with a tag or digest: write it as "
                              "registry/organisation/name:tag, for example xpkg.upbound.io/acme/databases:v1.2.0." % text)

    @property
    def version(self):
        return self.digest or self.tag

    @property
    def loopback(self):
        """Whether the registry is on this machine, which Docker and Crossplane reach over plain HTTP."""
        host = self.registry.rsplit(":", 1)[0] if self.registry.count(":") == 1 else self.registry
        host = host.strip("[]")
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def scheme(self, insecure=False):
        """HTTPS, unless the registry is on this machine or `insecure` says it serves plain HTTP."""
        return "http" if insecure or self.loopback else "https"

    def manifest_url(self, insecure=False):
        return "%s://%s/v2/%s/manifests/%s" % (self.scheme(insecure), self.registry, self.repository, self.version)


def docker_config_path(environ):
    """The Docker configuration the registry credentials come from by default: $DOCKER_CONFIG/config.json,
    else ~/.docker/config.json, as the Docker CLI and crank read it; None when there is none."""
    directory = environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    path = os.path.join(directory, "config.json")
    return path if os.path.exists(path) else None


class _BoundedAdapter(requests.adapters.HTTPAdapter if requests else object):
    """Every request to a registry gives up after TIMEOUT seconds."""

    def send(self, request, **kwargs):  # pylint: disable=arguments-differ
        kwargs["timeout"] = kwargs.get("timeout") or TIMEOUT
        return super(_BoundedAdapter, self).send(request, **kwargs)


class Registry:
    """Read access to a registry through oras (its token dance, Docker credential stores and helpers).

    `config` is a Docker configuration file to take credentials from; `username` and `password`
    take precedence over it. `ca_path` is a CA bundle for the registry's TLS; `insecure` means it
    serves plain HTTP.
    """

    def __init__(self, config=None, username=None, password=None, ca_path=None, insecure=False):
        self.config, self.username, self.password = config, username, password
        self.ca_path, self.insecure = ca_path, insecure

    def _client(self, reference):
        client = oras.provider.Registry(hostname=reference.registry, insecure=reference.scheme(self.insecure) == "http",
                                        tls_verify=self.ca_path or True)
        # Bounded: oras's session waits without a timeout, and its own retries take two minutes to give up.
        adapter = _BoundedAdapter(max_retries=urllib3.Retry(total=3, backoff_factor=0.5, allowed_methods=None,
                                                            status_forcelist=(429, 502, 503, 504)))
        for prefix in ("http://", "https://"):
            client.session.mount(prefix, adapter)
        if self.username:
            client.auth.set_basic_auth(self.username, self.password or "")
        else:
            client.auth.load_configs(client.get_container(reference.text), [self.config] if self.config else [])
        return client

    def _refused(self, reference, status):
        return ConfigError(
            "The registry %s refuses to let package %s be read (%s) with %s. Give credentials that may read it: "
            "registry_config (a Docker config.json, as docker login or crossplane xpkg login write it), or "
            "registry_username and registry_password." % (
                reference.registry, reference.text, status,
                "the credentials given" if self.username or self.config else "no credentials"))

    def manifest(self, reference):
        """The package's manifest (dict), or None when the registry does not have it."""
        try:
            client = self._client(reference)
            # The request as oras makes it (credentials, token exchange), without its retry decorator.
            request = getattr(type(client).do_request, "__wrapped__", type(client).do_request)
            response = request(client, reference.manifest_url(self.insecure), "GET",
                               headers={"Accept": ", ".join(MANIFEST_TYPES)})
        except ValueError:  # oras found no credentials to answer the registry's challenge with
            raise self._refused(reference, 401)
        except requests.exceptions.RequestException as error:
            raise ConfigError("Cannot read package %s from the registry %s (%s). Check the address; give "
                              "registry_ca_path when its certificate is not signed by a CA this machine trusts, "
                              "registry_insecure when it serves plain HTTP, or credentials (registry_config, "
                              "registry_username); or set verify_package=false when only the cluster can reach the "
                              "registry." % (reference.text, reference.registry, error.__class__.__name__))
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise self._refused(reference, response.status_code)
        if response.status_code != 200:
            raise ConfigError("The registry %s answered %s for package %s. Check the reference and the registry."
                              % (reference.registry, response.status_code, reference.text))
        return _json(response, "the manifest of package %s from %s" % (reference.text, reference.registry))


def _json(response, what):
    try:
        body = json.loads(response.content.decode("utf-8"))
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ConfigError("The registry sent something other than JSON for %s: is a proxy in the way? Check the "
                          "registry address." % what)
    return body


def config_digest(manifest, reference):
    """The digest of an image's config, which identifies its content; None when there is no manifest.

    A tag that holds an index of images is not a package this collection built: ConfigError.
    """
    if manifest is None:
        return None
    digest = (manifest.get("config") or {}).get("digest")
    if not digest:
        raise ConfigError("%s holds an image index, not a single package image, so it was not built from this "
                          "source: push to another tag." % reference.text)
    return digest


def package_file_config_digest(path):
    """The config digest of a package file that `crank xpkg build` wrote (a `docker save` tarball)."""
    try:
        with tarfile.open(path) as archive:
            entries = json.load(archive.extractfile("manifest.json"))
        return entries[0]["Config"]
    except (tarfile.TarError, KeyError, IndexError, TypeError, ValueError):
        raise ConfigError("crank wrote %s in a form this collection does not know (no docker manifest.json): use "
                          "crank from Crossplane 1.17 to 1.20." % path)
