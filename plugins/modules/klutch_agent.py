#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

DOCUMENTATION = r"""
module: klutch_agent
short_description: Run a konnector or backend agent as a local process, for labs and laptops
version_added: 0.1.0
author:
  - klutch.bind contributors (@klutch-bind)
description:
  - Starts the agent that keeps bound clusters in sync (V(konnector) on an app cluster, V(backend) on
    the control plane) as a process on the host the task runs on, checks its health endpoint, restarts
    it when its arguments, its code or its credentials changed, or when it stopped answering, and stops
    it with O(state=absent).
  - In production run the agents as Deployments instead (the roles C(klutch.bind.konnector) and
    C(klutch.bind.control_plane) do either); this module is what they use for a lab.
  - The process runs from a copy of this collection's code in its run directory, so it keeps running
    after the play and changes only with an upgrade of the collection. Its log is C(agent.log) there,
    JSON lines without object bodies or credentials.
  - With O(service_account) the agent runs with that ServiceAccount's token, so with exactly the rights
    a Deployment would have; otherwise with the connection's kubeconfig.
options:
  role:
    description: V(konnector) on an app cluster, V(backend) on the control plane.
    type: str
    choices: [konnector, backend]
    required: true
  name:
    description: The agent's name on this host; its run directory is O(run_dir)/O(name). Default O(role).
    type: str
  run_dir:
    description: Where the run directories of agents live on this host.
    type: path
    default: ~/.klutch.bind/agents
  state:
    description: V(present) keeps the agent running and healthy, V(absent) stops it and removes the kubeconfig
      written for it.
    type: str
    choices: [present, absent]
    default: present
  service_account:
    description:
      - Run with this ServiceAccount's token, given as C(<namespace>/<name>); the token is read from the
        Secret C(<name>-token) in that namespace with the connection's credentials, and the kubeconfig
        written for the agent keeps the connection's server and that Secret's CA.
      - For the konnector it is also the account the agent grants its claimed-kind rights to in each bound
        namespace (C(--grant-claims-to)).
      - Without it the agent uses the connection's kubeconfig as it is (a path, or inline content written
        to the run directory with mode 0600).
    type: str
  identity:
    description: The agent's identity in its Lease. Default C(<host name>-<name>).
    type: str
  resync:
    description: Seconds between passes when no watch reports a change; at least 1.
    type: float
    default: 30
  concurrency:
    description: Writes a pass sends at once.
    type: int
    default: 8
  consumer_scope:
    description: Backend only, the informer scope of consumers whose exports do not say.
    type: str
    choices: [Namespaced, Cluster]
    default: Namespaced
  health_port:
    description:
      - The port of C(/healthz) (alive) and C(/readyz) (its last pass synced everything) on 127.0.0.1.
        Default a free port, kept across restarts.
      - A port another process listens on is refused before a running agent is stopped.
    type: int
  python:
    description:
      - The interpreter that runs the agent; it needs the C(kubernetes) and C(PyYAML) packages.
        Default the interpreter that runs this module.
      - It is tried (Python 3.9 or later) before a running agent is stopped, so a wrong path leaves the old
        agent running.
    type: path
  wait_timeout:
    description: Seconds to wait for a started agent to report healthy.
    type: int
    default: 60
extends_documentation_fragment:
  - klutch.bind.k8s_auth
  - klutch.bind.attributes
attributes:
  check_mode:
    support: full
    details: Reports whether the agent would be started, restarted or stopped, and touches nothing.
  diff_mode:
    support: full
    details: Shows whether the agent runs and its arguments, never its kubeconfig.
"""

EXAMPLES = r"""
- name: Keep the konnector running for the lab's app cluster, with its own least-privilege account
  klutch.bind.klutch_agent:
    role: konnector
    name: konnector-app
    kubeconfig: ~/.kube/app.kubeconfig
    service_account: klutch-bind/klutch-bind-konnector

- name: Run the backend agent on the control plane
  klutch.bind.klutch_agent:
    role: backend
    kubeconfig: ~/.kube/control-plane.kubeconfig
    service_account: klutch-bind-system/klutch-bind-backend

- name: Stop it
  klutch.bind.klutch_agent:
    role: backend
    state: absent
"""

RETURN = r"""
action:
  description: What the task did to the process.
  returned: always
  type: str
  choices: [started, restarted, unchanged, stopped, absent]
  sample: started
reason:
  description: Why it was started or restarted.
  returned: when the agent was started or restarted
  type: str
  sample: its arguments, code or credentials changed
pid:
  description: The agent's process id.
  returned: when it runs
  type: int
  sample: 41233
health_url:
  description: Its health endpoint; answers JSON with C(healthy), C(leading) and C(passes).
  returned: when it runs
  type: str
  sample: http://127.0.0.1:38211/healthz
log_file:
  description: Its log, JSON lines.
  returned: always
  type: str
  sample: /home/ops/.klutch.bind/agents/konnector-app/agent.log
diff:
  description: Whether the agent ran before and runs after, and its arguments after; never its kubeconfig.
  returned: in diff mode
  type: dict
  sample: {"before": {"running": false}, "after": {"running": true, "arguments": ["--role", "konnector"]}}
"""

from ansible_collections.klutch.bind.plugins.module_utils import arguments, validate
from ansible_collections.klutch.bind.plugins.module_utils.agent import local
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ClusterError
from ansible_collections.klutch.bind.plugins.module_utils.module import KlutchModule


def main():
    module = KlutchModule(
        argument_spec=dict(
            role=dict(type="str", choices=["konnector", "backend"], required=True),
            name=dict(type="str"),
            run_dir=dict(type="path", default="~/.klutch.bind/agents"),
            state=arguments.STATE,
            service_account=dict(type="str"),
            identity=dict(type="str"),
            resync=dict(type="float", default=30),
            concurrency=dict(type="int", default=8),
            consumer_scope=dict(type="str", choices=["Namespaced", "Cluster"], default="Namespaced"),
            health_port=dict(type="int"),
            python=dict(type="path"),
            wait_timeout=arguments.WAIT_TIMEOUT,
        ),
        checks={"name": validate.kubernetes_name("a local agent (its directory under run_dir)", "label"),
                "resync": validate.positive(), "concurrency": validate.positive(unit="workers"),
                "health_port": validate.port, "wait_timeout": validate.positive()},
        supports_check_mode=True,
    )
    agent = local.agent_for(module.check_mode, module.params)
    try:
        result, diff = local.converge(agent, module.check_mode, module.params, module.client,
                                      module.ansible.no_log_values.add)
    except ClusterError as error:
        module.fail(error, log_file=agent.path(local.LOG_FILE))
    if module.diff_mode:
        result["diff"] = diff
    module.exit(**result)


if __name__ == "__main__":
    main()
