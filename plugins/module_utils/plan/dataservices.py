# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Publishing a data service: what its sources (Crossplane XRDs and Compositions) may hold, and their
white-labelling. No I/O."""

import copy
import re

from ansible_collections.klutch.bind.plugins.module_utils.k8s import manifests
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.objects import api_group_of

XRD_KIND = ("apiextensions.crossplane.io/v1", "CompositeResourceDefinition")
COMPOSITION_KIND = ("apiextensions.crossplane.io/v1", "Composition")
PACKAGE_METADATA_GROUP = "meta.pkg.crossplane.io"
PLAN_FIELD = "plan"  # Klutch's data services name their plan spec.plan
_KIND_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_GROUP_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+$")


def _kind(obj):
    return (obj.get("apiVersion"), obj.get("kind"))


def split_package(objects):
    """(package metadata documents, objects for the cluster): `crossplane.yaml` is not a cluster object."""
    metadata = [obj for obj in objects if api_group_of(obj) == PACKAGE_METADATA_GROUP]
    return metadata, [obj for obj in objects if obj not in metadata]


def definitions(objects):
    return [obj for obj in objects if _kind(obj) == XRD_KIND]


def _check_name(value, pattern, option, api):
    if value is not None and not pattern.match(value):
        raise ConfigError("apis entry %s: %s %r is not valid; kinds are CamelCase (Database), groups are lower-case "
                          "DNS names with a dot (databases.example.com)." % (api, option, value))


def _renamed_names(spec, overrides, api):
    """The XRD's new (group, names, claimNames): a new claim kind implies the composite kind X<claim kind>."""
    names, claims = dict(spec.get("names") or {}), dict(spec.get("claimNames") or {})
    group = overrides.get("group") or spec.get("group")
    for option, pattern in (("group", _GROUP_NAME), ("kind", _KIND_NAME), ("claim_kind", _KIND_NAME)):
        _check_name(overrides.get(option), pattern, option, api)
    if overrides.get("claim_kind"):
        if not claims:
            raise ConfigError("apis entry %s: the XRD offers no claims, so it has no claim kind to rename. Remove "
                              "claim_kind, or add claimNames to the XRD." % api)
        claims = {"kind": overrides["claim_kind"],
                  "plural": overrides.get("claim_plural") or overrides["claim_kind"].lower() + "s"}
    elif overrides.get("claim_plural"):
        claims["plural"] = overrides["claim_plural"]
    kind = overrides.get("kind") or ("X" + claims["kind"] if overrides.get("claim_kind") else names.get("kind"))
    if kind != names.get("kind"):
        names = {"kind": kind, "plural": kind.lower() + "s"}
    if overrides.get("plural"):
        names["plural"] = overrides["plural"]
    return group, names, claims


def _add_plans(xrd, plans, api):
    for version in xrd["spec"].get("versions") or []:
        spec_schema = ((((version.get("schema") or {}).get("openAPIV3Schema") or {}).get("properties") or {})
                       .get("spec") or {})
        plan = (spec_schema.get("properties") or {}).get(PLAN_FIELD)
        if not plan or not isinstance(plan.get("enum"), list):
            raise ConfigError("apis entry %s: version %s has no spec.%s enum to add plans to. Remove plans, or give "
                              "the XRD a spec.%s enum." % (api, version.get("name"), PLAN_FIELD, PLAN_FIELD))
        plan["enum"] = plan["enum"] + [name for name in plans if name not in plan["enum"]]


def customize(objects, apis):
    """Copies of `objects` with each XRD named in `apis` renamed or extended (white-labelling).

    Crossplane makes an XRD's group and names immutable, so a renamed API is a new XRD
    (`<plural>.<group>`); its Compositions, whose type reference is immutable too, become
    `<composition>.<plural>.<group>`. The original API stays on the cluster until removed.
    """
    objects = copy.deepcopy(objects)
    by_name = dict((xrd["metadata"]["name"], xrd) for xrd in definitions(objects))
    for overrides in apis or []:
        api = overrides["name"]
        xrd = by_name.get(api)
        if xrd is None:
            raise ConfigError("apis entry %s: the source defines no such CompositeResourceDefinition; it defines %s."
                              % (api, ", ".join(sorted(by_name)) or "none"))
        spec = xrd["spec"]
        old_group, old_kind = spec.get("group"), (spec.get("names") or {}).get("kind")
        group, names, claims = _renamed_names(spec, overrides, api)
        if (group, names["kind"]) == (old_group, old_kind) and \
                (names != spec.get("names") or claims != (spec.get("claimNames") or {})):
            raise ConfigError("apis entry %s: plural and claim_plural change only with group, kind or claim_kind, because "
                              "Crossplane never renames an XRD in place. Add one of those." % api)
        if overrides.get("plans"):
            _add_plans(xrd, overrides["plans"], api)
        spec.update(group=group, names=names)
        if claims:
            spec["claimNames"] = claims
        xrd["metadata"]["name"] = "%s.%s" % (names["plural"], group)
        if (group, names["kind"]) == (old_group, old_kind):
            continue
        renamed = {}
        for composition in objects:
            ref = (composition.get("spec") or {}).get("compositeTypeRef") or {}
            if _kind(composition) != COMPOSITION_KIND or ref.get("kind") != old_kind or \
                    api_group_of(ref) != old_group:
                continue
            old_name = composition["metadata"]["name"]
            renamed[old_name] = "%s.%s" % (old_name, xrd["metadata"]["name"])
            composition["metadata"]["name"] = renamed[old_name]
            ref.update(apiVersion="%s/%s" % (group, ref["apiVersion"].split("/", 1)[1]), kind=names["kind"])
        for field in ("defaultCompositionRef", "enforcedCompositionRef"):
            if (spec.get(field) or {}).get("name") in renamed:
                spec[field] = dict(spec[field], name=renamed[spec[field]["name"]])
    return objects


def _composed_bases(spec):
    """(resource name, base) of what a Composition composes: in Resources mode, or through
    function-patch-and-transform's input in Pipeline mode."""
    for resource in spec.get("resources") or []:
        yield resource.get("name", "unnamed"), resource.get("base") or {}
    for step in spec.get("pipeline") or []:
        for resource in ((step.get("input") or {}).get("resources") or []):
            yield resource.get("name", "unnamed"), resource.get("base") or {}


def pipeline_functions(objects):
    """The Functions that the source's Pipeline Compositions call."""
    return set(((step.get("functionRef") or {}).get("name"))
               for composition in objects if _kind(composition) == COMPOSITION_KIND
               for step in (composition.get("spec") or {}).get("pipeline") or [])


def check_compositions(objects, served, cluster, functions=()):
    """ConfigError when a Composition refers to a kind or Function that neither the source nor the cluster has.

    `served(api_version, kind)` tells whether the cluster serves a kind; kinds that the source's
    XRDs define count as served. `functions` are the names of the Functions installed.
    """
    defined = {}
    for xrd in definitions(objects):
        defined.update(manifests.served_by(xrd))
    for composition in objects:
        if _kind(composition) != COMPOSITION_KIND:
            continue
        name = composition["metadata"]["name"]
        spec = composition.get("spec") or {}
        ref = spec.get("compositeTypeRef") or {}
        target = (ref.get("apiVersion"), ref.get("kind"))
        if target not in defined and not served(*target):
            raise ConfigError("Composition %s is for kind %s in %s, which no CompositeResourceDefinition in the source "
                              "defines and %s does not serve. Fix its compositeTypeRef, or add the XRD to the source."
                              % (name, target[1], target[0], cluster))
        for step in spec.get("pipeline") or []:
            function = (step.get("functionRef") or {}).get("name")
            if function not in functions:
                raise ConfigError("Composition %s calls Function %s in step %s, which is not installed on %s. Install "
                                  "that Function package first." % (name, function, step.get("step", "unnamed"), cluster))
        for resource, base in _composed_bases(spec):
            composed = (base.get("apiVersion"), base.get("kind"))
            if composed not in defined and not served(*composed):
                raise ConfigError("Composition %s composes kind %s in %s (resource %s), which %s does not serve. "
                                  "Install the provider that serves it first, or fix the base."
                                  % (name, composed[1], composed[0], resource, cluster))


def api_summary(xrd):
    """What a template needs to export the API: group, versions and the claim's names."""
    spec = xrd.get("spec") or {}
    claims = spec.get("claimNames") or {}
    return {
        "name": xrd["metadata"]["name"],
        "group": spec.get("group"),
        "versions": [version["name"] for version in spec.get("versions") or [] if version.get("served", True)],
        "kind": (spec.get("names") or {}).get("kind"),
        "plural": (spec.get("names") or {}).get("plural"),
        "claim_kind": claims.get("kind"),
        "claim_plural": claims.get("plural"),
    }


def _controller(obj):
    return next((ref for ref in (obj.get("metadata") or {}).get("ownerReferences") or [] if ref.get("controller")), None)


def ownership_problem(current, owner_package, configuration):
    """Why applying an object over `current` would fight another owner, or None.

    Crossplane lets one package revision control an XRD or Composition; a package cannot take
    over an object that someone applied directly, and a direct apply must not edit a package's.
    `owner_package` is the Configuration whose revision controls `current`, if one does.
    """
    controller = _controller(current)
    described = "%s %s" % (current.get("kind"), current["metadata"]["name"])
    if controller and controller.get("kind") == "ConfigurationRevision" and owner_package != configuration:
        return ("%s already belongs to the Crossplane package of Configuration %s. Publish this API under another "
                "name with apis (group or claim_kind), or change that Configuration instead."
                % (described, owner_package or controller.get("name")))
    if configuration and not controller:
        return ("%s exists on the cluster but no package controls it (it was applied directly), so package %s "
                "could not install it. Delete it first, or publish this API under another name with apis."
                % (described, configuration))
    return None


def controlling_revision(obj):
    """The name of the ConfigurationRevision that controls `obj`, or None."""
    controller = _controller(obj)
    return controller["name"] if controller and controller.get("kind") == "ConfigurationRevision" else None
