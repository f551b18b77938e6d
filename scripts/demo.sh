#!/usr/bin/env bash
# The main job: playbooks/bind-app-cluster.yml.
#   scripts/demo.sh                  starts a local lab (control-plane + app) and runs it there
#   scripts/demo.sh -i INVENTORY     runs it against your clusters; no lab is started
# Further arguments go to ansible-playbook. Stop the lab with `.venv/bin/python -m klutch_lab down`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${KLUTCH_VENV:-$root/.venv}
"$root/scripts/setup.sh"
export ANSIBLE_COLLECTIONS_PATH="$venv/collections"

inventory_given=false
for arg in "$@"; do
  case "$arg" in -i|--inventory|-i*|--inventory=*) inventory_given=true ;; esac
done
if ! $inventory_given; then
  (cd "$root" && "$venv/bin/python" -m klutch_lab up)
  lab_inventory=$(cd "$root" && "$venv/bin/python" -c 'from klutch_lab import Lab; print(Lab().inventory)')
  set -- -i "$lab_inventory" "$@"
fi
exec "$venv/bin/ansible-playbook" "$root/playbooks/bind-app-cluster.yml" "$@"
