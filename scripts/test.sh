#!/usr/bin/env bash
# Sets up this checkout and runs every test: ansible-test sanity, ansible-lint, then the unit and
# integration suites (pytest, against a lab of real clusters it starts and stops itself).
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

step "pytest: unit and integration"
cd "$root"
python -m pytest "$@"
