# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading package manifests from an OCI registry, to check a package before a cluster pulls it."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ipaddress
import json
import re
import ssl
import tarfile

from ansible_collections.klutch.bind.plugins.module_utils.errors import ConfigError

try:
    import urllib3
except ImportError:  # reported by the module's import check of kubernetes, which needs it
    urllib3 = None

# Crossplane 1.x resolves references without a registry against this one.
DEFAULT_REGISTRY = "xpkg.upbound.io"
MANIFEST_TYPES = ", ".join((
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
))
_RFC1918 = [ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")]


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
    def scheme(self):
        """Plain HTTP for local and private registries, as Crossplane's registry client does."""
        host = self.registry.rsplit(":", 1)[0] if self.registry.count(":") == 1 else self.registry
        host = host.strip("[]")
        if host == "localhost" or host.endswith((".local", ".localhost")):
            return "http"
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return "https"
        private = address.is_loopback or any(address in network for network in _RFC1918)
        return "http" if private else "https"

    def manifest_url(self):
        return "%s://%s/v2/%s/manifests/%s" % (self.scheme, self.registry, self.repository, self.version)


def _bearer_challenge(header):
    """realm, service and scope of a `WWW-Authenticate: Bearer ...` challenge, or None."""
    if not header or not header.lower().startswith("bearer "):
        return None
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


class Registry:
    """Anonymous read access to registries, with the token dance public registries ask for."""

    def __init__(self, timeout=30):
        context = ssl.create_default_context()
        self.http = urllib3.PoolManager(ssl_context=context, timeout=timeout, retries=urllib3.Retry(
            total=3, backoff_factor=0.5, status_forcelist=(429, 502, 503, 504)))

    def _get(self, url, reference, headers=None, fields=None):
        try:
            return self.http.request("GET", url, headers=headers, fields=fields, redirect=True)
        except urllib3.exceptions.HTTPError as error:
            raise ConfigError("Cannot reach the registry %s to check package %s (%s). Check the address, or set "
                              "verify_package=false when only the cluster can reach the registry."
                              % (reference.registry, reference.text, error.__class__.__name__))

    def manifest(self, reference):
        """The package's manifest (dict), or None when the registry does not have it."""
        headers = {"Accept": MANIFEST_TYPES}
        response = self._get(reference.manifest_url(), reference, headers)
        challenge = _bearer_challenge(response.headers.get("WWW-Authenticate")) if response.status == 401 else None
        if challenge and challenge.get("realm"):
            fields = dict((key, challenge[key]) for key in ("service", "scope") if challenge.get(key))
            token = self._get(challenge["realm"], reference, fields=fields)
            if token.status == 200:
                body = _json(token, "a token for package %s from %s" % (reference.text, challenge["realm"]))
                headers["Authorization"] = "Bearer " + (body.get("token") or body.get("access_token") or "")
                response = self._get(reference.manifest_url(), reference, headers)
        if response.status == 404:
            return None
        if response.status in (401, 403):
            raise ConfigError("The registry %s does not let package %s be read without credentials. Set "
                              "verify_package=false and give package_pull_secrets for the cluster to pull it."
                              % (reference.registry, reference.text))
        if response.status != 200:
            raise ConfigError("The registry %s answered %s for package %s. Check the reference and the registry."
                              % (reference.registry, response.status, reference.text))
        return _json(response, "the manifest of package %s from %s" % (reference.text, reference.registry))


def _json(response, what):
    try:
        body = json.loads(response.data.decode("utf-8"))
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
