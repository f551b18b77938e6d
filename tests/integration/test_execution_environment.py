"""The AWX execution environment's definition, checked without a container engine: ansible-builder's
create step writes the build context from the collection tarball, and the image's collection install
step, run in that context as the Containerfile runs it, installs klutch.bind from the tarball."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEFINITION = ROOT / "extensions" / "awx" / "execution-environment.yml"


def run(*argv, cwd, home):
    """A command with a clean environment, as in an image build: no collections path of the test run, and a
    home of its own (no user's collections)."""
    environment = {"PATH": os.environ["PATH"], "HOME": str(home), "LC_ALL": "C.UTF-8"}
    completed = subprocess.run(argv, cwd=cwd, env=environment, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def test_the_execution_environment_installs_the_collection_from_the_local_tarball(tmp_path):
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    definition = yaml.safe_load(DEFINITION.read_text())
    tarball = f"klutch-bind-{version}.tar.gz"
    assert definition["additional_build_files"] == [{"src": f"build/{tarball}", "dest": "collections"}]
    assert definition["dependencies"]["galaxy"]["collections"] == [{"name": f"collections/{tarball}", "type": "file"}]

    # The two commands of extensions/awx/README.md, on a copy of the definition's directory.
    awx = tmp_path / "awx"
    shutil.copytree(DEFINITION.parent, awx, ignore=shutil.ignore_patterns("build"))
    bin_dir = Path(sys.executable).parent
    run(str(bin_dir / "ansible-galaxy"), "collection", "build", "--output-path", str(awx / "build"), str(ROOT), cwd=ROOT,
        home=tmp_path)
    run(str(bin_dir / "ansible-builder"), "create", "-f", str(awx / DEFINITION.name), "--context", str(tmp_path / "context"),
        "--output-filename", "Containerfile", cwd=awx, home=tmp_path)
    build = tmp_path / "context" / "_build"
    assert (build / "collections" / tarball).read_bytes() == (awx / "build" / tarball).read_bytes()
    containerfile = (tmp_path / "context" / "Containerfile").read_text()
    assert "COPY _build /build" in containerfile and "collection install" in containerfile

    # The galaxy stage: in /build (the context's _build), install what requirements.yml names.
    installed = tmp_path / "collections"
    run(str(bin_dir / "ansible-galaxy"), "collection", "install", "-r", "requirements.yml", "--collections-path",
        str(installed), cwd=build, home=tmp_path)
    manifest = installed / "ansible_collections" / "klutch" / "bind" / "MANIFEST.json"
    assert yaml.safe_load(manifest.read_text())["collection_info"]["version"] == version
    assert (installed / "ansible_collections" / "klutch" / "bind" / "meta" / "execution-environment.yml").exists()
