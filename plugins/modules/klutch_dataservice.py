#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: klutch_dataservice
short_description: Publish a Crossplane data service on the control plane, as a package or as XRDs and Compositions
version_added: 0.1.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - Publishes the Crossplane API of a data service (CompositeResourceDefinitions and
    Compositions) on a control-plane cluster in one of three ways.
  - With O(package) alone, installs that Configuration package (C(pkg.crossplane.io/v1
    Configuration) named O(name)), after checking that the registry has it, and waits until the
    package's revision is Installed and Healthy and each XRD it installed is Established and Offered.
  - With O(src) and O(package), builds the package source directory with C(crank xpkg build),
    pushes it to O(package) unless the registry already holds the same content, and installs it.
  - With O(src) alone, applies the XRDs and Compositions directly (the package's
    C(crossplane.yaml) is skipped) and waits until each XRD is Established and Offered.
  - O(apis) adds plans to, or renames, the APIs of the source without editing its YAML, which is how
    an operator white-labels a service.
  - Everything is checked before the first write, namely that Crossplane is installed, that the
    package exists, that the source parses, that each Composition's kinds are served or defined,
    and that no other package or direct apply already controls the source's XRDs and Compositions.
options:
  name:
    description:
      - The name of the Configuration with O(package); with O(src) alone, only a label for messages.
    type: str
    required: true
  package:
    description:
      - The package's OCI reference with a tag or digest, for example
        C(xpkg.upbound.io/acme/databases:v1.2.0). References without a registry mean
        C(xpkg.upbound.io), as in Crossplane.
      - To modify a published service, give a new tag; the Configuration moves to the new revision
        and the module waits until it is healthy.
    type: str
  src:
    description:
      - A package source on the host that runs the module, a directory of YAML files with the
        XRDs and Compositions (and, to build a package, a C(crossplane.yaml) with the package metadata).
      - With O(package) it is built and pushed; without, its objects are applied directly.
    type: path
  apis:
    description:
      - Changes to the APIs in O(src), one entry per XRD. Group, kind and claim names of an XRD are
        immutable in Crossplane, so a renamed API is published as a new XRD C(<plural>.<group>)
        with its Compositions renamed C(<composition>.<plural>.<group>); the original stays
        until removed.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: The XRD's name in the source, for example C(xpostgresqlinstances.samples.klutch.bind).
        type: str
        required: true
      group:
        description: A new API group.
        type: str
      kind:
        description: A new composite kind; default C(X<claim_kind>) when O(apis[].claim_kind) is given.
        type: str
      plural:
        description: The composite's plural; default the lower-case kind plus C(s).
        type: str
      claim_kind:
        description: A new claim kind, the kind application developers create.
        type: str
      claim_plural:
        description: The claim's plural; default the lower-case claim kind plus C(s).
        type: str
      plans:
        description: Plans to add to the C(spec.plan) enum of every version.
        type: list
        elements: str
  crank:
    description:
      - The path of Crossplane's C(crank) CLI (or the C(crossplane) CLI) to build packages with;
        default C(crank), then C(crossplane), on the PATH.
      - It pushes with the registry credentials of O(registry_config) (by default the Docker configuration) or
        O(registry_username).
    type: path
  verify_package:
    description:
      - Check that the registry holds O(package) before installing it, and with O(src), whether it holds
        this content already. Set V(false) when only the cluster can reach or read the registry; with
        O(src) the package is then pushed on every run, which reports a change each time.
    type: bool
    default: true
  registry_config:
    description:
      - A Docker configuration file with the registry's credentials (C(auths), C(credHelpers) or
        C(credsStore)), as C(docker login) or C(crossplane xpkg login) write it. The package is read and
        pushed with them.
      - Default C($DOCKER_CONFIG/config.json), else C(~/.docker/config.json), when it exists.
    type: path
  registry_username:
    description: A user name for the registry, instead of O(registry_config); needs O(registry_password).
    type: str
  registry_password:
    description:
      - The password or token of O(registry_username). It is handed to C(crank) in a Docker configuration
        that lives in the module's private work directory for the push only.
    type: str
  registry_ca_path:
    description: A CA bundle (PEM) for the registry's TLS certificate, when this host does not trust its CA.
    type: path
  registry_insecure:
    description:
      - The registry serves plain HTTP. Registries on this host (C(localhost), loopback addresses) are always
        reached over plain HTTP, as Docker and Crossplane do; every other one over HTTPS unless this is set.
      - C(crank) itself pushes over plain HTTP only to local and private addresses.
    type: bool
    default: false
  package_pull_secrets:
    description: Secrets in C(crossplane-system) that Crossplane pulls the package with.
    type: list
    elements: str
    default: []
  state:
    description:
      - V(absent) deletes the Configuration (and with it the APIs of its package), or with O(src)
        alone the XRDs and Compositions of the source; XRDs that a package controls are refused.
      - Crossplane deletes the remaining claims of an API whose XRD is removed.
    type: str
    choices: [present, absent]
    default: present
  force_conflicts:
    description: Take over fields that another field manager owns.
    type: bool
    default: false
  wait:
    description:
      - Wait until the package is Installed and Healthy and each of its XRDs is Established and Offered (or,
        without O(package), each XRD of O(src)); with
        O(state=absent), until the objects are gone. XRDs that changed are always waited for.
    type: bool
    default: true
  wait_timeout:
    description: Seconds to wait for each object.
    type: int
    default: 300
extends_documentation_fragment:
  - klutch.bind.k8s_auth
  - klutch.bind.attributes
attributes:
  check_mode:
    support: full
    details: Writes are sent with C(dryRun=All) and nothing is pushed; a package source is still
      built locally, to tell whether the registry holds it.
  diff_mode:
    support: full
requirements:
  - C(crank) or C(crossplane) CLI on the PATH to build packages from O(src) with O(package).
  - oras (Python) to read the registry with O(package).
seealso:
  - module: klutch.bind.klutch_template
  - module: klutch.bind.klutch_manifest
"""

EXAMPLES = r"""
- name: Install a published data-service package
  klutch.bind.klutch_dataservice:
    name: acme-databases
    package: xpkg.upbound.io/acme/databases:v1.2.0

- name: Build the sample services, push them to a registry and install them
  klutch.bind.klutch_dataservice:
    name: sample-dataservices
    src: "{{ role_path }}/files/dataservices"
    package: registry.example.com/platform/dataservices:v0.1.0

- name: Apply the XRDs and Compositions directly, with a white-labelled PostgreSQL API and one more plan
  klutch.bind.klutch_dataservice:
    name: sample-dataservices
    src: "{{ role_path }}/files/dataservices"
    apis:
      - name: xpostgresqlinstances.samples.klutch.bind
        group: databases.acme.example
        claim_kind: AcmeDatabase
        plans: [postgresql-replica-xlarge]

- name: Remove a package and the APIs it installed
  klutch.bind.klutch_dataservice:
    name: acme-databases
    package: xpkg.upbound.io/acme/databases:v1.2.0
    state: absent
"""

RETURN = r"""
configuration:
  description: The Configuration with O(package), as the cluster reports it after the wait.
  returned: with O(package) and O(state=present)
  type: dict
  contains:
    name:
      description: The Configuration's name.
      type: str
    package:
      description: The package it installs.
      type: str
    revision:
      description: The name of its current ConfigurationRevision; null in check mode before it exists.
      type: str
    healthy:
      description: Whether the package is Installed and Healthy on the revision of this package.
      type: bool
  sample: {"name": "sample-dataservices", "package": "localhost:5000/samples/dataservices:v0.1.0",
           "revision": "sample-dataservices-3a5f1c2e9b7d", "healthy": true}
package:
  description: What happened to the package built from O(src).
  returned: with O(src), O(package) and O(state=present)
  type: dict
  contains:
    reference:
      description: Where it was pushed.
      type: str
    config_digest:
      description: The digest of the package's image config, which identifies its content.
      type: str
    pushed:
      description: Whether it was pushed (or, in check mode, would be), because the registry did not hold this content.
      type: bool
apis:
  description: The APIs that the source defines, after O(apis) is applied; what templates export.
  returned: with O(src)
  type: list
  elements: dict
  sample: [{"name": "xpostgresqlinstances.samples.klutch.bind", "group": "samples.klutch.bind", "versions": ["v1"],
            "kind": "XPostgresqlInstance", "plural": "xpostgresqlinstances", "claim_kind": "PostgresqlInstance",
            "claim_plural": "postgresqlinstances"}]
results:
  description: What happened to each object applied or deleted, as in M(klutch.bind.klutch_manifest).
  returned: always
  type: list
  elements: dict
diff:
  description: Before and after of every object that changed.
  returned: in diff mode
  type: list
  elements: dict
"""

import base64
import json
import os
import shutil
import tempfile

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.klutch.bind.plugins.module_utils import dataservices, oci, validate
from ansible_collections.klutch.bind.plugins.module_utils.k8s import apply, manifests
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError, ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import readiness
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import Resource
from ansible_collections.klutch.bind.plugins.module_utils.kinds import COMPOSITE_RESOURCE_DEFINITIONS, COMPOSITIONS
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule

try:
    import yaml
except ImportError:  # reported by KlutchModule
    yaml = None

CONFIGURATION_API_VERSION = "pkg.crossplane.io/v1"
CONFIGURATION_REVISIONS = Resource(CONFIGURATION_API_VERSION, "ConfigurationRevision", "configurationrevisions",
                                   namespaced=False)
FUNCTIONS = Resource(CONFIGURATION_API_VERSION, "Function", "functions", namespaced=False)
PACKAGE_LABEL = "pkg.crossplane.io/package"  # on a revision: the Configuration it belongs to


def require_crossplane(client, with_packages):
    wanted = [dataservices.XRD_KIND] + ([(CONFIGURATION_API_VERSION, "Configuration")] if with_packages else [])
    for api_version, kind in wanted:
        if client.resource_for(api_version, kind) is None:
            raise ConfigError("Crossplane is not installed on %s: it does not serve %s in %s. Install Crossplane "
                              "(1.17 to 1.20) on the control plane first." % (client.label, kind, api_version))


def load_source(module, client):
    """The cluster objects of the source with the API changes applied, checked against the cluster."""
    params = module.params
    metadata, objects = dataservices.split_package(manifests.load(src=params["src"]))
    objects = dataservices.customize(objects, params["apis"])
    if params["state"] == "absent":
        return metadata, objects
    if not dataservices.definitions(objects):
        raise ConfigError("%s holds no CompositeResourceDefinition: give the directory of the data service's XRDs "
                          "and Compositions." % params["src"])
    functions = set()
    if dataservices.pipeline_functions(objects) and client.resource_for(FUNCTIONS.api_version, FUNCTIONS.kind):
        functions = set(item["metadata"]["name"] for item in client.list(FUNCTIONS)[0])
    dataservices.check_compositions(objects, lambda api_version, kind: client.resource_for(api_version, kind)
                                    is not None, client.label, functions)
    return metadata, objects


def check_ownership(client, objects, configuration):
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
            problem = dataservices.ownership_problem(current, (revisions or {}).get(revision), configuration)
            if problem:
                raise ConfigError(problem)


def crank_path(module):
    path = module.params["crank"] or module.ansible.get_bin_path("crank") or module.ansible.get_bin_path("crossplane")
    if not path or not os.access(path, os.X_OK):
        raise ConfigError("Building %s needs Crossplane's crank (or crossplane) CLI, and %s. Install it on the host "
                          "that runs the module, or give its path in the crank option."
                          % (module.params["src"], "%s is not executable" % path if path else "none is on the PATH"))
    return path


def registry(module):
    """The registry client of the package options: credentials, CA and plain HTTP as given."""
    params = module.params
    if oci.oras is None:
        module.ansible.fail_json(msg=missing_required_lib("oras"), exception=oci.ORAS_IMPORT_ERROR)
    return oci.Registry(config=params["registry_config"] or oci.docker_config_path(os.environ),
                        username=params["registry_username"], password=params["registry_password"],
                        ca_path=params["registry_ca_path"], insecure=params["registry_insecure"])


def crank_environment(module, reference, workdir):
    """crank's environment for a push: the registry credentials as a Docker configuration of its own (in the
    private work directory) when they are variables, and the registry's CA."""
    params = module.params
    environment = {}
    if params["registry_username"]:
        docker = os.path.join(workdir, "docker")
        os.mkdir(docker, 0o700)
        secret = ("%s:%s" % (params["registry_username"], params["registry_password"] or "")).encode("utf-8")
        with os.fdopen(os.open(os.path.join(docker, "config.json"), os.O_WRONLY | os.O_CREAT, 0o600), "w") as handle:
            json.dump({"auths": {reference.registry: {"auth": base64.b64encode(secret).decode("ascii")}}}, handle)
        environment["DOCKER_CONFIG"] = docker
    elif params["registry_config"]:
        docker = os.path.join(workdir, "docker")
        os.mkdir(docker, 0o700)
        os.symlink(os.path.abspath(params["registry_config"]), os.path.join(docker, "config.json"))
        environment["DOCKER_CONFIG"] = docker
    if params["registry_ca_path"]:
        environment["SSL_CERT_FILE"] = params["registry_ca_path"]
    return environment


def run_crank(module, argv, action, environment=None):
    code, _out, err = module.ansible.run_command([crank_path(module)] + argv, environ_update=environment or {})
    if code != 0:
        raise ConfigError("crank could not %s (exit %d): %s" % (action, code, err.strip()[-800:]))


def build_and_push(module, metadata, objects):
    """Build the source into a package file; push it unless the registry holds that content."""
    params = module.params
    reference = oci.Reference(params["package"])
    if not metadata:
        raise ConfigError("%s has no crossplane.yaml (kind Configuration in %s), which a package needs. Add it, or "
                          "drop the package option to apply the XRDs and Compositions directly."
                          % (params["src"], dataservices.PACKAGE_METADATA_GROUP))
    workdir = tempfile.mkdtemp(prefix="klutch-xpkg-")
    try:
        root = os.path.join(workdir, "package")
        os.mkdir(root)
        for filename, documents in (("crossplane.yaml", metadata), ("apis.yaml", objects)):
            with open(os.path.join(root, filename), "w") as handle:
                yaml.safe_dump_all(documents, handle, default_flow_style=False, sort_keys=True)
        package_file = os.path.join(workdir, "package.xpkg")
        examples = os.path.join(workdir, "examples")  # crank would otherwise read ./examples of the cwd
        os.mkdir(examples)
        run_crank(module, ["xpkg", "build", "--package-root", root, "--examples-root", examples, "-o", package_file],
                  "build " + params["src"])
        digest = oci.package_file_config_digest(package_file)
        # Without verify_package the registry is not read: the package is pushed on every run.
        held = oci.config_digest(registry(module).manifest(reference), reference) if params["verify_package"] else None
        if held and held != digest:
            raise ConfigError("%s already holds a different package. Crossplane does not pull a tag again, so give the "
                              "changed source a new tag." % reference.text)
        if not held and not module.check_mode:
            run_crank(module, ["xpkg", "push", "-f", package_file, reference.text], "push to " + reference.text,
                      crank_environment(module, reference, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"reference": reference.text, "config_digest": digest, "pushed": not held}


def configuration(params):
    spec = {"package": params["package"]}
    if params.get("package_pull_secrets"):
        spec["packagePullSecrets"] = [{"name": name} for name in params["package_pull_secrets"]]
    return {"apiVersion": CONFIGURATION_API_VERSION, "kind": "Configuration",
            "metadata": {"name": params["name"]}, "spec": spec}


def configuration_status(obj, name, package):
    ready, _description = readiness(configuration({"name": name, "package": package}))
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


def run(module):
    params = module.params
    present = params["state"] == "present"
    if params["apis"] and not params["src"]:
        raise ConfigError("apis changes the APIs of a source: give src too (a package reference cannot be changed).")
    client = module.client()
    if present:
        require_crossplane(client, bool(params["package"]))
    result = {}
    objects = []
    if params["src"]:
        metadata, objects = load_source(module, client)
        check_ownership(client, objects, params["name"] if params["package"] else None)
        result["apis"] = [dataservices.api_summary(xrd) for xrd in dataservices.definitions(objects)]
    if params["package"]:
        if present and params["src"]:
            result["package"] = build_and_push(module, metadata, objects)
        elif present and params["verify_package"]:
            reference = oci.Reference(params["package"])
            if registry(module).manifest(reference) is None:
                raise ConfigError("Configuration %s: the registry %s has no package %s. Push it first, fix the "
                                  "reference, or give src to build and push it."
                                  % (params["name"], reference.registry, reference.text))
        objects = [configuration(params)]
    planned = apply.plan(client, objects, None, not present)
    if present:
        results, diffs, final = apply.apply_planned(client, planned, module.check_mode, force=params["force_conflicts"],
                                                    wait=params["wait"], wait_timeout=params["wait_timeout"])
        if params["package"]:
            installed = final.get(("Configuration", params["name"]))
            result["configuration"] = configuration_status(installed, params["name"], params["package"])
            if params["wait"] and not module.check_mode:
                wait_for_package_apis(client, installed, params["wait_timeout"])
    else:
        results, diffs = apply.delete_planned(client, planned, module.check_mode, params["wait"], params["wait_timeout"])
    result.update(changed=apply.changed(results) or bool((result.get("package") or {}).get("pushed")),
                  results=results)
    if module.diff_mode:
        result["diff"] = diffs
    return result


def main():
    module = KlutchModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            package=dict(type="str"),
            src=dict(type="path"),
            apis=dict(type="list", elements="dict", default=[], options=dict(
                name=dict(type="str", required=True),
                group=dict(type="str"),
                kind=dict(type="str"),
                plural=dict(type="str"),
                claim_kind=dict(type="str"),
                claim_plural=dict(type="str"),
                plans=dict(type="list", elements="str"),
            )),
            crank=dict(type="path"),
            verify_package=dict(type="bool", default=True),
            registry_config=dict(type="path"),
            registry_username=dict(type="str"),
            registry_password=dict(type="str", no_log=True),
            registry_ca_path=dict(type="path"),
            registry_insecure=dict(type="bool", default=False),
            package_pull_secrets=dict(type="list", elements="str", default=[], no_log=False),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            force_conflicts=dict(type="bool", default=False),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=300),
        ),
        required_one_of=[("package", "src")],
        required_together=[("registry_username", "registry_password")],
        checks={"name": validate.kubernetes_name("a Crossplane Configuration"), "wait_timeout": validate.positive()},
        supports_check_mode=True,
    )
    try:
        result = run(module)
    except ClusterError as error:
        module.fail(error)
    module.exit(**result)


if __name__ == "__main__":
    main()
