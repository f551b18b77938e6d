#!/usr/bin/env bash
# Prepares this checkout for the demo and the tests; safe to run again (it skips what is done).
#  - a virtualenv (.venv) with requirements.txt and test-requirements.txt, and .venv/importer with
#    galaxy-importer
#  - the collection linked at .venv/collections/ansible_collections/klutch/bind
#  - the lab's binaries (Kubernetes, etcd, Crossplane, a node's) and its container images, built once
#    into ~/.cache/klutch-bind
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${KLUTCH_VENV:-$root/.venv}
python=${PYTHON:-python3}

step() { printf '\n==> %s\n' "$*"; }

if [ ! -x "$venv/bin/python" ]; then
  step "creating virtualenv $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.requirements.sha256"
wanted=$(cat "$root/requirements.txt" "$root/test-requirements.txt" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  step "installing Python requirements"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$root/requirements.txt" -r "$root/test-requirements.txt"
  echo "$wanted" > "$stamp"
fi

# Older ansible-core releases the collection supports get a small venv each, with the Python
# requirements the file names (the oldest one with our minimum versions), for the compatibility
# test (tests/integration/test_ansible_core_versions.py).
while read -r core core_requirements; do
  [ -n "$core" ] || continue
  core_venv="$venv/cores/$core"
  core_wanted=$(printf "%s %s" "$core" "$(sha256sum < "$root/$core_requirements")" | sha256sum | cut -d" " -f1)
  if [ "$(cat "$core_venv/.stamp" 2>/dev/null)" != "$core_wanted" ]; then
    step "installing ansible-core $core with $core_requirements for the compatibility test"
    rm -rf "$core_venv"
    "$python" -m venv "$core_venv"
    "$core_venv/bin/python" -m pip install --quiet "ansible-core==$core.*" -r "$root/$core_requirements"
    echo "$core_wanted" > "$core_venv/.stamp"
  fi
done < "$root/tests/ansible-core-versions.txt"

# galaxy-importer, the check Galaxy runs on an uploaded collection, in a venv of its own.
importer_venv="$venv/importer"
importer_wanted=$(sha256sum "$root/tests/importer-requirements.txt" | cut -d' ' -f1)
if [ "$(cat "$importer_venv/.stamp" 2>/dev/null)" != "$importer_wanted" ]; then
  step "installing galaxy-importer"
  rm -rf "$importer_venv"
  "$python" -m venv "$importer_venv"
  "$importer_venv/bin/python" -m pip install --quiet -r "$root/tests/importer-requirements.txt"
  echo "$importer_wanted" > "$importer_venv/.stamp"
fi

# Ansible finds the collection by its FQCN through this path.
mkdir -p "$venv/collections/ansible_collections/klutch"
ln -sfn "$root" "$venv/collections/ansible_collections/klutch/bind"

# ansible-test seeds pip into its venvs with a script it downloads from outside the package
# registries; where that cannot be fetched, this stand-in does the same job with ensurepip and the
# configured index. It is put into ansible-test's own cache only when that has no script yet.
getpip="$HOME/.ansible/test/cache/get_pip_24_2.py"
if [ ! -f "$getpip" ]; then
  mkdir -p "$(dirname "$getpip")"
  cp "$root/scripts/get_pip_standin.py" "$getpip"
fi

# ansible-test checks modules on every Python 3.8+ it finds as python3.X on PATH; pyenv's shims
# hide inactive versions, so link the real interpreters where scripts/test.sh puts them on PATH.
mkdir -p "$venv/pythons"
if command -v pyenv >/dev/null 2>&1; then
  for version in $(pyenv versions --bare | grep -E '^3\.([89]|1[0-9])\.[0-9]+$'); do
    minor=${version%.*}
    ln -sfn "$(pyenv prefix "$version")/bin/python$minor" "$venv/pythons/python$minor"
  done
fi

if ! command -v shellcheck >/dev/null 2>&1; then
  echo "note: shellcheck is not installed, so ansible-test sanity skips it (Debian: apt-get install shellcheck)"
fi

# Debian packages the lab needs: debootstrap builds its Python image from Debian's packages,
# libseccomp-dev lets runc build with seccomp (without it every Pod sandbox fails), and a node's
# bridge, masquerading and Service rule use iptables and iproute2.
missing=()
for package in debootstrap libseccomp-dev iptables iproute2; do
  [ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" = "install ok installed" ] || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]} for the lab's images and nodes"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ "${KLUTCH_SKIP_LAB_BUILD:-}" != 1 ]; then
  step "lab binaries and images"
  (cd "$root" && "$venv/bin/python" -m klutch_lab build)
fi
