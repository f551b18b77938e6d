# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The agents' command line: the konnector on an app cluster and the backend on the control plane, as
long-running processes.

    python -m ansible_collections.klutch.bind.plugins.module_utils.agent.cli konnector --kubeconfig app.kubeconfig
    python -m ansible_collections.klutch.bind.plugins.module_utils.agent.cli backend --kubeconfig cp.kubeconfig

Every change that a watch reports, and a periodic resync, triggers one pass: the konnector runs
klutch_claim_sync's pass for every binding and keeps each binding's CRD like its export; the
backend runs klutch_export_request's reconcile for every consumer namespace (requests made by
anyone, export drift, namespace mapping, RBAC). A Lease elects one leader among replicas, the
konnector heartbeats on its ClusterBinding, /healthz answers on the health port, logs are JSON
lines without object bodies, and SIGTERM stops it cleanly.
"""

import argparse
import os
import signal
import socket
import sys

from ansible_collections.klutch.bind.plugins.module_utils.agent.backend import Backend
from ansible_collections.klutch.bind.plugins.module_utils.agent.konnector import Konnector
from ansible_collections.klutch.bind.plugins.module_utils.agent.runtime import Agent, log, serve_health
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import AGENT_RETRY_BUDGET, ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.lifecycle import sync
from ansible_collections.klutch.bind.plugins.module_utils.plan import bindings

ROLES = {"konnector": (Konnector, bindings.BIND_NAMESPACE), "backend": (Backend, "klutch-bind-system")}


def parse(argv):
    parser = argparse.ArgumentParser(prog="klutch-agent", description=__doc__.partition("\n\n")[0])
    parser.add_argument("role", choices=sorted(ROLES), help="konnector on an app cluster, backend on the control plane")
    parser.add_argument("--kubeconfig", help="the cluster's kubeconfig; default K8S_AUTH_* or ~/.kube/config")
    parser.add_argument("--context", help="its context")
    parser.add_argument("--resync", type=float, default=30.0, help="seconds between passes without changes")
    parser.add_argument("--concurrency", type=int, default=sync.CONCURRENCY)
    parser.add_argument("--consumer-scope", choices=["Namespaced", "Cluster"], default="Namespaced",
                        help="backend: the scope of consumers whose exports do not say")
    parser.add_argument("--health-port", type=int, default=8081)
    parser.add_argument("--health-local", action="store_true", help="listen on 127.0.0.1 only")
    parser.add_argument("--lease-namespace", help="default klutch-bind (konnector) or klutch-bind-system (backend)")
    parser.add_argument("--lease-name", help="default klutch-bind (konnector) or klutch-bind-backend (backend)")
    parser.add_argument("--grant-claims-to", metavar="NAMESPACE/SERVICEACCOUNT",
                        help="konnector: bind klutch-bind-konnector-claims to this account in each bound namespace")
    parser.add_argument("--identity", default="%s-%d" % (socket.gethostname(), os.getpid()))
    options = parser.parse_args(argv)
    options.lease_namespace = options.lease_namespace or ROLES[options.role][1]
    options.lease_name = options.lease_name or ("klutch-bind" if options.role == "konnector" else "klutch-bind-backend")
    return options


def main(argv=None):
    options = parse(sys.argv[1:] if argv is None else argv)
    params = {"kubeconfig": options.kubeconfig, "context": options.context}
    client = ClusterClient.from_params(dict((key, value) for key, value in params.items() if value),
                                       retry_budget=AGENT_RETRY_BUDGET)
    agent = Agent(client, options, ROLES[options.role][0]())
    signal.signal(signal.SIGTERM, lambda signum, frame: agent.stop())
    signal.signal(signal.SIGINT, lambda signum, frame: agent.stop())
    server = serve_health(agent, options.health_port)
    log("info", "%s started" % options.role, cluster=client.label, identity=options.identity)
    agent.run()
    server.shutdown()
    log("info", "%s stopped" % options.role)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
