#!/usr/bin/env bash
# Sets up this checkout and runs every test: ansible-test sanity, ansible-lint, galaxy-importer, the
# unit and integration suites (pytest, against a lab of real clusters it starts and stops itself),
# then the molecule scenarios (on a lab of their own).
# Extra arguments go to pytest, e.g. `scripts/test.sh -k connection`.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${KLUTCH_VENV:-$root/.venv}
"$root/scripts/setup.sh"
export PATH="$venv/bin:$venv/pythons:$PATH"

step() { printf '\n==> %s\n' "$*"; }

step "ansible-test sanity (no ignore file)"
# ansible-test wants the collection at ansible_collections/<namespace>/<name>: test a copy of the
# files git tracks or would track (not ignored ones), as they are in the working tree.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
copy="$work/ansible_collections/klutch/bind"
mkdir -p "$copy"
(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$copy")
(cd "$copy" && git init -q && git add -A && ansible-test sanity --venv --color no)

step "ansible-lint (production profile)"
(cd "$root" && ANSIBLE_COLLECTIONS_PATH="$venv/collections" ansible-lint --offline --profile production)

step "galaxy-importer on the built collection"
(cd "$root" && ansible-galaxy collection build --output-path "$work/build" . >/dev/null)
imported=$(cd "$work/build" && PATH="$venv/importer/bin:$PATH" \
  "$venv/importer/bin/python" -m galaxy_importer.main ./*.tar.gz 2>&1) || { echo "$imported"; exit 1; }
echo "$imported" | tail -n 2
# Galaxy accepts a collection with warnings; we take none (lint, docs, changelog).
if echo "$imported" | grep -E '^(WARNING|ERROR)'; then exit 1; fi

step "pytest: unit and integration"
cd "$root"
python -m pytest "$@"

# With pytest arguments (a focused run) the molecule scenarios are left out.
if [ $# -eq 0 ]; then
  step "molecule test --all (extensions/molecule, on a lab of its own)"
  # A run that was cut short leaves its lab and molecule's state ("created"): start from neither.
  python -m klutch_lab --dir "$HOME/.cache/klutch-bind/molecule-lab" down
  ANSIBLE_COLLECTIONS_PATH="$venv/collections" molecule reset
  ANSIBLE_COLLECTIONS_PATH="$venv/collections" molecule test --all
fi
