# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What every klutch.bind module shares: the connection options, dependency checks, redaction."""

import copy
import importlib
import importlib.util
import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.klutch.bind.plugins.module_utils.k8s import manifests
from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import (
    AUTH_ARG_SPEC,
    kubeconfig_secrets,
    parse_kubeconfig,
)
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.validate import run_checks

KUBECONFIG_VARIABLES = ("K8S_AUTH_KUBECONFIG", "KUBECONFIG")
# Found, not imported: connection.py imports it only for the kubeconfigs that need it.
KUBERNETES_IMPORT_ERROR = None if importlib.util.find_spec("kubernetes") else "No module named 'kubernetes'"

try:
    importlib.import_module("yaml")  # only to report a missing PyYAML before anything needs it
    YAML_IMPORT_ERROR = None
except ImportError:
    YAML_IMPORT_ERROR = traceback.format_exc()


def klutch_argument_spec(**options):
    """The module's own options plus the connection options."""
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(options)
    return spec


def input_secrets(params):
    """Secret values inside option values: what an inline kubeconfig or a Secret manifest carries."""
    found = set()
    if YAML_IMPORT_ERROR:
        return found  # the missing library is reported once the module is set up
    try:
        for option in ("kubeconfig", "provider_kubeconfig", "control_plane_kubeconfig"):
            found.update(kubeconfig_secrets(parse_kubeconfig(params.get(option))))
    except ClusterError:
        pass  # reported when the client is built
    for option in ("definition", "resource_definition", "inline"):
        if params.get(option):
            found.update(manifests.secret_values(params[option]))
    return found


class _SecretAwareModule(AnsibleModule):
    """Registers secrets hidden inside option values as soon as the parameters are read.

    AnsibleModule logs the invocation, and reports argument errors, before a module's own code
    runs; registering here keeps those values out of syslog and out of every result.
    """

    def _load_params(self):
        super(_SecretAwareModule, self)._load_params()
        self.no_log_values.update(input_secrets(self.params))


class KlutchModule:
    """A thin wrapper: only `main()` of a module turns errors into fail_json, through `fail`."""

    def __init__(self, argument_spec, checks=None, **kwargs):
        """`checks`: {option: check(option, value)} from validate.py, run before any cluster is reached."""
        self.ansible = _SecretAwareModule(argument_spec=klutch_argument_spec(**argument_spec), **kwargs)
        if KUBERNETES_IMPORT_ERROR:
            self.ansible.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
        if YAML_IMPORT_ERROR:
            self.ansible.fail_json(msg=missing_required_lib("PyYAML"), exception=YAML_IMPORT_ERROR)
        try:
            run_checks(self.params, checks or {})
        except ClusterError as error:
            self.fail(error)

    @property
    def params(self):
        return self.ansible.params

    @property
    def check_mode(self):
        return self.ansible.check_mode

    @property
    def diff_mode(self):
        return self.ansible._diff

    def client(self, connection=None, kubeconfig_from_environment=False):
        """A client for the module's cluster, or for other `connection` options.

        K8S_AUTH_* describe the module's own cluster, so they are not read for other connections, except
        the kubeconfig path with `kubeconfig_from_environment` (a context of that kubeconfig).
        """
        # Imported here so that a missing `kubernetes` is reported by __init__, not as an import error.
        from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient

        if connection is not None:
            environ = dict((name, os.environ[name]) for name in KUBECONFIG_VARIABLES
                           if kubeconfig_from_environment and os.environ.get(name))
            return ClusterClient.from_params(connection, dry_run=self.check_mode, environ=environ)
        return ClusterClient.from_params(self.params, dry_run=self.check_mode)

    def warn(self, message):
        self.ansible.warn(message)

    def exit(self, **result):
        self.ansible.exit_json(**result)

    def fail(self, error, **result):
        """A ClusterError's message is the whole story: no traceback, no request body."""
        self.ansible.fail_json(msg=str(error), **result)
