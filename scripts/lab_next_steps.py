# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What scripts/demo.sh prints at the end: the connection Secret on the app cluster, where things are, what next."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / ".venv" / "collections")]

# pylint: disable=wrong-import-position
from ansible_collections.klutch.bind.plugins.module_utils.k8s.client import ClusterClient
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import PODS, SECRETS
from klutch_lab import Lab  # noqa: E402


def agent_pods(lab):
    """The agents' Pods on each cluster, as `kubectl get pods` shows them; a line when they run as processes."""
    lines = []
    for name, namespace in zip(lab.state["clusters"], ("klutch-bind-system", "klutch-bind")):
        cluster = lab.cluster(name)
        if "node" not in cluster.record:
            continue
        client = ClusterClient.from_params({"kubeconfig": str(cluster.admin_kubeconfig)}, environ={})
        lines.append(f"\nkubectl get pods -n {namespace}  ({name}):\n{'NAME':<44} {'READY':<6} {'STATUS':<10} RESTARTS")
        for pod in client.list(PODS, namespace)[0]:
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            ready = sum(1 for status in statuses if status.get("ready"))
            restarts = sum(status.get("restartCount", 0) for status in statuses)
            lines.append(f"{pod['metadata']['name']:<44} {ready}/{len(pod['spec']['containers']):<4} "
                         f"{pod['status'].get('phase', ''):<10} {restarts}")
    return "\n".join(lines) if lines else "\nThe agents run as local processes (the lab has no nodes)."


def main():
    lab = Lab()
    app = lab.cluster(list(lab.state["clusters"])[1])
    client = ClusterClient.from_params({"kubeconfig": str(app.admin_kubeconfig)}, environ={})
    secret = client.get(SECRETS, "orders-creds", "demo")
    if secret is None:
        print(f"The connection Secret demo/orders-creds is not on app cluster {app.name} yet: see the agents' logs.")
        return 1
    print(f"""
The connection Secret demo/orders-creds arrived on app cluster {app.name} from the control plane,
with the keys {', '.join(sorted(secret.get("data") or {}))} (values not shown).
{agent_pods(lab)}
Kubeconfigs: {lab.kubeconfig} (one context per cluster), and {lab.dir}/<cluster>/admin.kubeconfig
Inventory:   {lab.inventory}
Agent logs:  kubectl logs -n klutch-bind deploy/klutch-bind-konnector (Pods), or
             {lab.agents_dir}/*/agent.log (local processes; JSON lines; they stop with the lab)
Next:        create another PostgresqlInstance on {app.name} and watch it appear on the control plane
             in the consumer's namespace; run scripts/demo.sh again (changed=0); add app clusters with
             `.venv/bin/python -m klutch_lab up --clusters control-plane,app,app2` and run it again;
             stop it all with `.venv/bin/python -m klutch_lab down`.""")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
