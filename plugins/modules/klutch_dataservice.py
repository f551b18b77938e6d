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

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.klutch.bind.plugins.module_utils import arguments, oci, validate
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import publish
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule


def main():
    module = KlutchModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            package=dict(type="str"),
            src=arguments.SRC,
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
            state=arguments.STATE,
            force_conflicts=arguments.FORCE_CONFLICTS,
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=300),
        ),
        required_one_of=[("package", "src")],
        required_together=[("registry_username", "registry_password")],
        checks={"name": validate.kubernetes_name("a Crossplane Configuration"), "wait_timeout": validate.positive()},
        supports_check_mode=True,
    )
    try:
        result, diffs = publish.publish(module.client, module.check_mode, module.params, module.ansible)
    except publish.MissingLibrary:
        module.ansible.fail_json(msg=missing_required_lib("oras"), exception=oci.ORAS_IMPORT_ERROR)
    except ClusterError as error:
        module.fail(error)
    if module.diff_mode:
        result["diff"] = diffs
    module.exit(**result)


if __name__ == "__main__":
    main()
