# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Publishing a data service on the control plane: a Crossplane Configuration package (built with crank and
pushed first when a source is given), or a source's XRDs and Compositions applied directly. klutch_dataservice
runs it; what a source may hold is plan/dataservices.py's rules, the registry protocol oci.py's."""

import base64
import json
import os
import shutil
import tempfile

from ansible_collections.klutch.bind.plugins.module_utils import oci
from ansible_collections.klutch.bind.plugins.module_utils.k8s import apply, manifests
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import readiness
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import Resource
from ansible_collections.klutch.bind.plugins.module_utils.kinds import COMPOSITE_RESOURCE_DEFINITIONS, COMPOSITIONS
from ansible_collections.klutch.bind.plugins.module_utils.plan import dataservices

try:
    import yaml
except ImportError:  # reported by the module
    yaml = None

CONFIGURATION_API_VERSION = "pkg.crossplane.io/v1"
CONFIGURATION_REVISIONS = Resource(CONFIGURATION_API_VERSION, "ConfigurationRevision", "configurationrevisions",
                                   namespaced=False)
FUNCTIONS = Resource(CONFIGURATION_API_VERSION, "Function", "functions", namespaced=False)
PACKAGE_LABEL = "pkg.crossplane.io/package"  # on a revision: the Configuration it belongs to


class MissingLibrary(Exception):
    """oras is not installed, and the run reads a registry; the module reports it as Ansible reports a missing library."""


def require_crossplane(client, with_packages):
    wanted = [dataservices.XRD_KIND] + ([(CONFIGURATION_API_VERSION, "Configuration")] if with_packages else [])
    for api_version, kind in wanted:
        if client.resource_for(api_version, kind) is None:
            raise ConfigError("Crossplane is not installed on %s: it does not serve %s in %s. Install Crossplane "
                              "(1.17 to 1.20) on the control plane first." % (client.label, kind, api_version))


def load_source(client, src, apis, present):
    """(package metadata, cluster objects) of the source with the API changes applied, checked against the cluster."""
    metadata, objects = dataservices.split_package(manifests.load(src=src))
    objects = dataservices.customize(objects, apis)
    if not present:
        return metadata, objects
    if not dataservices.definitions(objects):
        raise ConfigError("%s holds no CompositeResourceDefinition: give the directory of the data service's XRDs "
                          "and Compositions." % src)
    functions = set()
    if dataservices.pipeline_functions(objects) and client.resource_for(FUNCTIONS.api_version, FUNCTIONS.kind):
        functions = set(item["metadata"]["name"] for item in client.list(FUNCTIONS)[0])
    dataservices.check_compositions(objects, lambda api_version, kind: client.resource_for(api_version, kind)
                                    is not None, client.label, functions)
    return metadata, objects


def check_ownership(client, objects, configuration_name):
    """Refuse, before any write, XRDs and Compositions that another package or a direct apply controls."""
    revisions = None
    for resource in (COMPOSITE_RESOURCE_DEFINITIONS, COMPOSITIONS):
        wanted = set(obj["metadata"]["name"] for obj in objects if obj["kind"] == resource.kind)
        for current in client.list(resource)[0] if wanted else []:
            if current["metadata"]["name"] not in wanted:
                continue
            revision = dataservices.controlling_revision(current)
            if revision and revisions is None:
                revisions = dict((item["metadata"]["name"], ((item["metadata"].get("labels") or {}).get(PACKAGE_LABEL)))
                                 for item in client.list(CONFIGURATION_REVISIONS)[0])
            problem = dataservices.ownership_problem(current, (revisions or {}).get(revision), configuration_name)
            if problem:
                raise ConfigError(problem)


def crank_path(host, crank, src):
    """The crank (or crossplane) CLI to build `src` with: the crank option, else the first on the PATH."""
    path = crank or host.get_bin_path("crank") or host.get_bin_path("crossplane")
    if not path or not os.access(path, os.X_OK):
        raise ConfigError("Building %s needs Crossplane's crank (or crossplane) CLI, and %s. Install it on the host "
                          "that runs the module, or give its path in the crank option."
                          % (src, "%s is not executable" % path if path else "none is on the PATH"))
    return path


def run_crank(host, crank, argv, action, environment=None):
    code, _out, err = host.run_command([crank] + argv, environ_update=environment or {})
    if code != 0:
        raise ConfigError("crank could not %s (exit %d): %s" % (action, code, err.strip()[-800:]))


def registry(params):
    """The registry client of the package options: credentials, CA and plain HTTP as given."""
    if oci.oras is None:
        raise MissingLibrary()
    return oci.Registry(config=params["registry_config"] or oci.docker_config_path(os.environ),
                        username=params["registry_username"], password=params["registry_password"],
                        ca_path=params["registry_ca_path"], insecure=params["registry_insecure"])


def crank_environment(params, reference, workdir):
    """crank's environment for a push: the registry credentials as a Docker configuration of its own (in the
    private work directory) when they are variables, and the registry's CA."""
    environment = {}
    if params["registry_username"] or params["registry_config"]:
        docker = os.path.join(workdir, "docker")
        os.mkdir(docker, 0o700)
        environment["DOCKER_CONFIG"] = docker
    if params["registry_username"]:
        secret = ("%s:%s" % (params["registry_username"], params["registry_password"] or "")).encode("utf-8")
        with os.fdopen(os.open(os.path.join(docker, "config.json"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
            json.dump({"auths": {reference.registry: {"auth": base64.b64encode(secret).decode("ascii")}}}, handle)
    elif params["registry_config"]:
        os.symlink(os.path.abspath(params["registry_config"]), os.path.join(docker, "config.json"))
    if params["registry_ca_path"]:
        environment["SSL_CERT_FILE"] = params["registry_ca_path"]
    return environment


def build_package(host, crank, src, workdir, metadata, objects):
    """The package file that crank builds from the source as loaded (API changes applied), in `workdir`."""
    root = os.path.join(workdir, "package")
    os.mkdir(root)
    for filename, documents in (("crossplane.yaml", metadata), ("apis.yaml", objects)):
        with open(os.path.join(root, filename), "w") as handle:
            yaml.safe_dump_all(documents, handle, default_flow_style=False, sort_keys=True)
    package_file = os.path.join(workdir, "package.xpkg")
    examples = os.path.join(workdir, "examples")  # crank would otherwise read ./examples of the cwd
    os.mkdir(examples)
    run_crank(host, crank, ["xpkg", "build", "--package-root", root, "--examples-root", examples, "-o", package_file],
              "build " + src)
    return package_file


def build_and_push(host, check_mode, params, metadata, objects):
    """Build the source into a package file; push it unless the registry holds that content."""
    reference = oci.Reference(params["package"])
    if not metadata:
        raise ConfigError("%s has no crossplane.yaml (kind Configuration in %s), which a package needs. Add it, or "
                          "drop the package option to apply the XRDs and Compositions directly."
                          % (params["src"], dataservices.PACKAGE_METADATA_GROUP))
    crank = crank_path(host, params["crank"], params["src"])
    workdir = tempfile.mkdtemp(prefix="klutch-xpkg-")
    try:
        package_file = build_package(host, crank, params["src"], workdir, metadata, objects)
        digest = oci.package_file_config_digest(package_file)
        # Without verify_package the registry is not read: the package is pushed on every run.
        held = oci.config_digest(registry(params).manifest(reference), reference) if params["verify_package"] else None
        if held and held != digest:
            raise ConfigError("%s already holds a different package. Crossplane does not pull a tag again, so give the "
                              "changed source a new tag." % reference.text)
        if not held and not check_mode:
            run_crank(host, crank, ["xpkg", "push", "-f", package_file, reference.text], "push to " + reference.text,
                      crank_environment(params, reference, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"reference": reference.text, "config_digest": digest, "pushed": not held}


def require_package(params):
    """Refuse a package reference that the registry does not hold."""
    reference = oci.Reference(params["package"])
    if registry(params).manifest(reference) is None:
        raise ConfigError("Configuration %s: the registry %s has no package %s. Push it first, fix the "
                          "reference, or give src to build and push it."
                          % (params["name"], reference.registry, reference.text))


def configuration(name, package, pull_secrets=()):
    spec = {"package": package}
    if pull_secrets:
        spec["packagePullSecrets"] = [{"name": secret} for secret in pull_secrets]
    return {"apiVersion": CONFIGURATION_API_VERSION, "kind": "Configuration",
            "metadata": {"name": name}, "spec": spec}


def configuration_status(obj, name, package):
    ready, _description = readiness(configuration(name, package))
    return {"name": name, "package": package, "revision": ((obj or {}).get("status") or {}).get("currentRevision"),
            "healthy": bool(obj) and ready(obj)}


def wait_for_package_apis(client, installed, timeout):
    """Each XRD the installed revision put on the cluster, once it serves its kinds: Crossplane calls a
    package Healthy before its XRDs are Established and Offered, and a template needs their CRDs.

    The revision's objectRefs name its objects but leave their kind empty, so an XRD is one of them
    by name and uid."""
    revision = client.get(CONFIGURATION_REVISIONS, installed["status"]["currentRevision"]) or {}
    installed_uids = dict((ref.get("name"), ref.get("uid")) for ref in (revision.get("status") or {}).get("objectRefs") or [])
    for xrd in client.list(COMPOSITE_RESOURCE_DEFINITIONS)[0]:
        if installed_uids.get(xrd["metadata"]["name"]) == xrd["metadata"]["uid"]:
            ready, description = readiness(xrd)
            client.wait(COMPOSITE_RESOURCE_DEFINITIONS, xrd["metadata"]["name"], None, ready, timeout, description)


def read_source(client, params, present):
    """(metadata, objects, result) of the source: loaded, checked, its ownership checked, its APIs summed up."""
    metadata, objects = load_source(client, params["src"], params["apis"], present)
    check_ownership(client, objects, params["name"] if params["package"] else None)
    return metadata, objects, {"apis": [dataservices.api_summary(xrd) for xrd in dataservices.definitions(objects)]}


def prepare_package(host, check_mode, params, metadata, objects):
    """Before the Configuration is applied: the source built and pushed (what happened), or the package checked."""
    if params["src"]:
        return {"package": build_and_push(host, check_mode, params, metadata, objects)}
    if params["verify_package"]:
        require_package(params)
    return {}


def install(client, check_mode, params, planned):
    """Apply the planned objects; ([result entries], [diffs], {"configuration": its status} with a package)."""
    results, diffs, final = apply.apply_planned(client, planned, check_mode, force=params["force_conflicts"],
                                                wait=params["wait"], wait_timeout=params["wait_timeout"])
    if not params["package"]:
        return results, diffs, {}
    installed = final.get(("Configuration", params["name"]))
    status = configuration_status(installed, params["name"], params["package"])
    if params["wait"] and not check_mode:
        wait_for_package_apis(client, installed, params["wait_timeout"])
    return results, diffs, {"configuration": status}


def publish(connect, check_mode, params, host):
    """Publish the data service of klutch_dataservice's options (state present) or withdraw it (absent).

    `connect()` returns the control plane's client, `host` runs crank (AnsibleModule's get_bin_path and
    run_command); returns (result, diffs)."""
    present = params["state"] == "present"
    if params["apis"] and not params["src"]:
        raise ConfigError("apis changes the APIs of a source: give src too (a package reference cannot be changed).")
    client = connect()
    if present:
        require_crossplane(client, bool(params["package"]))
    result, metadata, objects = {}, None, []
    if params["src"]:
        metadata, objects, result = read_source(client, params, present)
    if params["package"]:
        if present:
            result.update(prepare_package(host, check_mode, params, metadata, objects))
        objects = [configuration(params["name"], params["package"], params.get("package_pull_secrets"))]
    planned = apply.plan(client, objects, None, not present)
    if present:
        results, diffs, status = install(client, check_mode, params, planned)
        result.update(status)
    else:
        results, diffs = apply.delete_planned(client, planned, check_mode, params["wait"], params["wait_timeout"])
    result.update(changed=apply.changed(results) or bool((result.get("package") or {}).get("pushed")),
                  results=results)
    return result, diffs
