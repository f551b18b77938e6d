# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

"""Runs klutch_export_request and hides its result from output when it carries the consumer's kubeconfig.

A module cannot mark its own result as secret (Ansible drops a module's ``_ansible_no_log``), and a
kubeconfig must stay usable in the registered variable, so masking the token inside it is no answer:
the action marks the whole result ``no_log``, as if the task said ``no_log: true``."""

from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):

    _supports_check_mode = True
    _supports_async = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        result.update(self._execute_module(task_vars=task_vars, wrap_async=self._task.async_val))
        if result.get("kubeconfig"):
            result["_ansible_no_log"] = True
        return result
