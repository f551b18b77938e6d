#!/usr/bin/env bash
# The main job: playbooks/bind_app_cluster.yml.
#   scripts/demo.sh                  starts a local lab (control-plane with Crossplane + app, each with a
#                                    node), publishes the sample data services, binds the app cluster
#                                    with both agents as Deployments, creates a sample instance there
#                                    and shows its connection Secret arriving and the agents' Pods
#   scripts/demo.sh --local-agents   the same on a lab without nodes: the agents run as local processes
#   scripts/demo.sh -i INVENTORY     runs it against your clusters; no lab is started
# Further arguments go to ansible-playbook. Stop the lab with `.venv/bin/python -m klutch_lab down`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${KLUTCH_VENV:-$root/.venv}
"$root/scripts/setup.sh"
export ANSIBLE_COLLECTIONS_PATH="$venv/collections"

inventory_given=false
nodes=control-plane,app
playbook_args=()
for arg in "$@"; do
  case "$arg" in
    --local-agents) nodes="" ; continue ;;
    -i|--inventory|-i*|--inventory=*) inventory_given=true ;;
  esac
  playbook_args+=("$arg")
done
set -- ${playbook_args[@]+"${playbook_args[@]}"}
if $inventory_given; then
  exec "$venv/bin/ansible-playbook" "$root/playbooks/bind_app_cluster.yml" "$@"
fi

# No inventory: the lab, with Crossplane on its control plane and the sample data services.
(cd "$root" && "$venv/bin/python" -m klutch_lab up --nodes "$nodes")
lab_inventory=$(cd "$root" && "$venv/bin/python" -c 'from klutch_lab import Lab; print(Lab().inventory)')
"$venv/bin/ansible-playbook" -i "$lab_inventory" -e "@$root/playbooks/vars/lab.yml" \
  "$root/playbooks/bind_app_cluster.yml" "$@"
"$venv/bin/ansible-playbook" -i "$lab_inventory" "$root/playbooks/lab_sample_instance.yml"
"$venv/bin/python" "$root/scripts/lab_next_steps.py"
