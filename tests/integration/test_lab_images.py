"""The lab's images are real: built here from Debian's packages and C, pushed with crane to the lab's
registry under the names a containerd mirror serves, and they run what the roles and a kubelet run."""

import hashlib
import json
import os
import platform
import signal
import stat
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile

import pytest

from klutch_lab import binaries, images, process
from klutch_lab.cluster import free_port

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="building and chrooting into the images needs root")


def progress(line):
    print(line, file=sys.stderr)


# -- pure parts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("public_name, path", [
    ("docker.io/library/python:3.11-slim-bookworm", "library/python:3.11-slim-bookworm"),
    ("registry.k8s.io/pause:3.10", "pause:3.10"),
    ("python:3.11", "library/python:3.11"),
    ("docker.io/python:3.11", "library/python:3.11"),
    ("bitnami/redis:7", "bitnami/redis:7"),
    ("ghcr.io/org/agent@sha256:" + "0" * 64, "org/agent@sha256:" + "0" * 64),
    ("localhost:5000/agent:1", "agent:1"),
])
def test_mirror_reference_is_the_path_containerd_asks_a_mirror_for(public_name, path):
    assert images.mirror_reference("127.0.0.1:5000", public_name) == "127.0.0.1:5000/" + path


def tree(root, mtime):
    """A small root filesystem with every kind of entry, all at the given mtime."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/tool").write_text("#!/bin/sh\n")
    (root / "usr/bin/tool").chmod(0o755)
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-again")
    (root / "usr/bin/link").symlink_to("tool")
    (root / "bin").symlink_to("usr/bin")
    (root / "etc").mkdir()
    (root / "etc/secret").write_text("x")
    (root / "etc/secret").chmod(0o600)
    os.mkfifo(root / "fifo")
    if os.geteuid() == 0:
        os.mknod(root / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    for path in [root, *root.rglob("*")]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)


def test_a_layer_is_the_same_bytes_for_the_same_tree_and_keeps_links_and_modes(tmp_path):
    digests = []
    for run, mtime in ((1, 1_000_000), (2, 2_000_000)):
        tree(tmp_path / f"root{run}", mtime)
        images.write_layer(tmp_path / f"root{run}", tmp_path / f"layer{run}.tar")
        digests.append(hashlib.sha256((tmp_path / f"layer{run}.tar").read_bytes()).hexdigest())
    assert digests[0] == digests[1]

    with tarfile.open(tmp_path / "layer1.tar") as layer:
        members = {member.name: member for member in layer.getmembers()}
    assert list(members) == sorted(members) == [
        "bin", "etc", "etc/secret", "usr", "usr/bin", "usr/bin/link", "usr/bin/tool", "usr/bin/tool-again"]
    assert {(member.mtime, member.uname, member.gname) for member in members.values()} == {(images.SOURCE_DATE_EPOCH, "", "")}
    assert members["bin"].issym() and members["bin"].linkname == "usr/bin"
    assert members["usr/bin/link"].issym() and members["usr/bin/link"].linkname == "tool"
    assert members["usr/bin/tool-again"].islnk() and members["usr/bin/tool-again"].linkname == "usr/bin/tool"
    assert members["usr/bin/tool"].mode == 0o755 and members["etc/secret"].mode == 0o600


# -- built, pushed and run -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def built():
    return images.ensure_images(progress)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry process as the lab starts one, on a free loopback port of its own."""
    port = free_port()
    record = process.spawn([binaries.ensure_registry(progress), "-port", port],
                           tmp_path_factory.mktemp("registry") / "registry.log")
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2):
                break
        except OSError:
            assert time.monotonic() < deadline, "the registry did not answer: " + process.log_tail(record)
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    process.stop(record)


@pytest.fixture(scope="module")
def pushed(built, registry):
    started = time.monotonic()
    references = images.push_lab_images(registry, progress)
    progress(f"pushed both images in {time.monotonic() - started:.1f} s")
    return references


def crane(*argv):
    return subprocess.run([binaries.ensure_crane(progress), *argv, "--insecure"], check=True, capture_output=True,
                          text=True).stdout


def pulled(reference, directory):
    """The image's file system as crane pulls it from the registry, unpacked with owners and modes."""
    crane("export", reference, str(directory.with_suffix(".tar")))
    directory.mkdir()
    subprocess.run(["tar", "-xpf", directory.with_suffix(".tar"), "-C", directory, "--numeric-owner"], check=True)
    return directory


@needs_root
def test_a_second_build_comes_from_the_cache(built):
    started = time.monotonic()
    again = images.ensure_images(progress)
    assert again == built and time.monotonic() - started < 5


@needs_root
def test_both_images_are_pushed_under_the_paths_a_mirror_serves(pushed, registry):
    assert pushed == {images.PYTHON_IMAGE: f"{registry}/library/python:3.11-slim-bookworm",
                      images.PAUSE_IMAGE: f"{registry}/pause:3.10"}


@needs_root
@pytest.mark.parametrize("public_name", [images.PYTHON_IMAGE, images.PAUSE_IMAGE])
def test_each_image_is_one_oci_layer_the_cached_tarball_for_this_platform(public_name, built, pushed):
    manifest = json.loads(crane("manifest", pushed[public_name]))
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert [layer["mediaType"] for layer in manifest["layers"]] == ["application/vnd.oci.image.layer.v1.tar+gzip"]
    config = json.loads(crane("config", pushed[public_name]))
    assert (config["os"], config["architecture"]) == ("linux", images.ARCHITECTURES[platform.machine()])
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(built[public_name].layer.read_bytes()).hexdigest()]
    assert "PATH=" + images.PATH in config["config"]["Env"]


@needs_root
def test_the_python_image_is_configured_like_the_official_one(pushed):
    config = json.loads(crane("config", pushed[images.PYTHON_IMAGE]))["config"]
    assert config["Cmd"] == ["python3"]
    assert "LANG=C.UTF-8" in config["Env"]
    assert any(env.startswith("PYTHON_VERSION=3.11.") for env in config["Env"])


@needs_root
def test_the_python_image_runs_a_bundle_as_the_agent_deployment_does(pushed, tmp_path):
    root = pulled(pushed[images.PYTHON_IMAGE], tmp_path / "python")
    assert os.readlink(root / "usr/bin/python") == "python3"
    # Slim: no downloaded packages or package lists, no manuals or translations, of the docs only copyrights.
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_Packages", "usr/share/man/**/*.gz",
                    "usr/share/locale/**/*.mo"):
        assert not list(root.glob(pattern)), pattern
    assert {path.name for path in root.glob("usr/share/doc/**/*") if not path.is_dir()} == {"copyright"}
    # The Deployment's command, user and environment, with the bundle as a zip on PYTHONPATH.
    (root / "tmp/bundle").mkdir()
    with zipfile.ZipFile(root / "tmp/bundle/agent.zip", "w") as bundle:
        bundle.writestr("probe.py", "import ssl, json, zipimport, http.client, sys\n"
                                    "print(json.dumps({'version': sys.version_info[:2], 'flags_no_site': sys.flags.no_site,\n"
                                    "                  'cas': ssl.create_default_context().cert_store_stats()['x509_ca']}))\n")
    result = subprocess.run(
        ["chroot", "--userspec=65532:65532", root, "python", "-S", "-m", "probe"], capture_output=True, text=True, check=False,
        env={"PATH": images.PATH, "LANG": "C.UTF-8", "PYTHONPATH": "/tmp/bundle/agent.zip", "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["version"] == [3, 11] and report["flags_no_site"] == 1
    assert report["cas"] > 100, "ca-certificates' bundle is missing"


@needs_root
def test_the_pause_image_exits_zero_on_sigterm_and_sigint(pushed, tmp_path):
    root = pulled(pushed[images.PAUSE_IMAGE], tmp_path / "pause")
    for signum in (signal.SIGTERM, signal.SIGINT):
        pause = subprocess.Popen([root / "pause"])
        time.sleep(0.2)
        assert pause.poll() is None, "pause did not wait for a signal"
        pause.send_signal(signum)
        assert pause.wait(timeout=1) == 0
