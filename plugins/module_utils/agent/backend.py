# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The backend's side of the agent, on the control plane: every consumer served with lifecycle/serve.py, as
klutch_export_request serves one, each on its own, and the watches that wake it."""

import datetime

from ansible_collections.klutch.bind.plugins.module_utils.agent.runtime import log
from ansible_collections.klutch.bind.plugins.module_utils.k8s.apply import LeadershipLost, Recorder
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import CUSTOM_RESOURCE_DEFINITIONS
from ansible_collections.klutch.bind.plugins.module_utils.kinds import (
    API_SERVICE_EXPORTS,
    API_SERVICE_EXPORT_REQUESTS,
    API_SERVICE_NAMESPACES,
    EXPORT_TEMPLATES,
)
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import serve


class Backend:
    """On the control plane: the backend controllers for every consumer namespace."""

    WATCHED = (API_SERVICE_EXPORT_REQUESTS, API_SERVICE_EXPORTS, API_SERVICE_NAMESPACES, CUSTOM_RESOURCE_DEFINITIONS,
               EXPORT_TEMPLATES)

    @classmethod
    def sync(cls, control_plane, options, proceed):
        """One pass over every consumer namespace; each is read and reconciled on its own, so whatever one
        consumer wrote (an odd heartbeat, a namespace the server refuses) holds up no other. Every write
        asks `proceed()` first: once this replica no longer leads, the pass ends."""
        catalog = serve.Catalog(control_plane)
        moment = datetime.datetime.now(datetime.timezone.utc)
        written, failed = 0, 0
        for consumer in serve.Consumer.all(control_plane):
            recorder = Recorder(control_plane, check_mode=False, proceed=proceed)
            try:
                serve.reconcile(recorder, consumer.read(control_plane), catalog, options.consumer_scope, moment)
            except LeadershipLost:
                log("warning", "no longer leading; pass stopped", namespace=consumer.namespace)
                break
            except Exception as error:  # pylint: disable=broad-exception-caught
                failed += 1
                log("error", "consumer cannot be reconciled", namespace=consumer.namespace,
                    error=str(error) if isinstance(error, ClusterError) else error.__class__.__name__)
            finally:
                changes = [entry for entry in recorder.results if entry["action"] != "unchanged"]
                if changes:
                    log("info", "reconciled", namespace=consumer.namespace,
                        writes=["%s %s %s" % (entry["action"], entry["kind"], entry["name"]) for entry in changes])
                written += len(changes)
        wanted = dict((("control-plane", resource.plural), (control_plane, resource, None)) for resource in cls.WATCHED)
        return wanted, written, failed
