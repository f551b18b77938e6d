# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's container images, built on this machine and pushed to a lab registry that mirrors their public names.

No public registry is reachable from the lab, so a node's containerd asks the lab's registry, as a
mirror, for the names the roles and the kubelet use. Two images, one layer each:
  - PYTHON_IMAGE: Debian bookworm's own python3 (3.11) on a debootstrap --variant=minbase root,
    slimmed the way official slim images are; the roles run the agents' bundle with its `python`.
  - PAUSE_IMAGE: a static build of pause.c, the process that holds a Pod sandbox.
Their layer tarballs are built once (root only: debootstrap and chroot) into the cache, under a key
of everything that determines them, and written reproducibly; crane (go-containerregistry) pushes them.
"""

import collections
import fcntl
import fnmatch
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

from klutch_lab import binaries
from klutch_lab.errors import LabError

PYTHON_IMAGE = "docker.io/library/python:3.11-slim-bookworm"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"

# Bump when the recipe below changes what lands in a layer: it is part of every cache key.
RECIPE_VERSION = 1
SUITE = "bookworm"
PACKAGES = ("python3", "python-is-python3", "ca-certificates")
MIRROR_ENV = "KLUTCH_LAB_DEBIAN_MIRROR"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Every mtime in a layer; also given to the package scripts, so Python compiles hash-checked .pyc
# files, which stay valid whatever mtime their source has.
SOURCE_DATE_EPOCH = 0
PAUSE_SOURCE = Path(__file__).with_name("pause.c")
# Debian's and the OCI platform's names agree for these.
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}

# What official slim images leave out; also dpkg's configuration in the image, so packages
# installed on top of it stay slim.
SLIM_DPKG_CONFIG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
"""
# Package lists, downloaded packages and logs of the build, which official images drop too.
BUILD_LEFTOVERS = ("var/lib/apt/lists/*", "var/cache/apt/*.bin", "var/cache/apt/archives/*.deb", "var/log/*",
                   "var/log/apt/*", "var/cache/ldconfig/aux-cache", "var/cache/debconf/*-old", "var/lib/dpkg/*-old",
                   "etc/*-")
# debootstrap copies these from the host; container runtimes mount their own over them.
HOST_FILES = ("etc/hostname", "etc/resolv.conf")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

Image = collections.namedtuple("Image", "layer platform env cmd entrypoint")


def mirror_reference(registry, public_name):
    """Where `registry`, as containerd's mirror for the public name's registry, serves that image.

    containerd asks a mirror for the repository path alone, with Docker Hub's implicit `library/`:
    docker.io/library/python:3.11-slim-bookworm is <registry>/library/python:3.11-slim-bookworm,
    registry.k8s.io/pause:3.10 is <registry>/pause:3.10.
    """
    first, _slash, rest = public_name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = "docker.io", public_name
    if domain in ("docker.io", "index.docker.io") and "/" not in path:
        path = "library/" + path
    return f"{registry}/{path}"


def write_layer(root, output):
    """Write the tree at `root` as a layer tarball: the same tree gives the same bytes.

    Entries sorted by path, every mtime SOURCE_DATE_EPOCH, owners by number only; modes, symlinks
    and hard links kept. Device nodes, fifos and sockets (debootstrap's /dev) are left out: a
    container runtime makes its own /dev.
    """
    root = Path(root)
    entries = []
    for directory, subdirectories, files in os.walk(root):
        relative = Path(directory).relative_to(root)
        entries.extend((relative / name).as_posix() for name in subdirectories + files)
    with tarfile.open(output, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            info = tar.gettarinfo(root / name, arcname=name)
            if info is None or info.ischr() or info.isblk() or info.isfifo():
                continue
            info.mtime = SOURCE_DATE_EPOCH
            info.uname = info.gname = ""
            if info.isreg():
                with open(root / name, "rb") as content:
                    tar.addfile(info, content)
            else:
                tar.addfile(info)


def ensure_images(progress=print):
    """{public name: Image} of the lab's images, building (as root) what the cache lacks."""
    arch = _architecture()
    mirror = os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
    python_key = _key(SUITE, PACKAGES, mirror, arch, SLIM_DPKG_CONFIG, BUILD_LEFTOVERS)
    pause_key = _key(PAUSE_SOURCE.read_text(), arch)
    return {
        PYTHON_IMAGE: _cached("python", python_key, lambda work: _build_python(work, mirror, arch, progress), progress),
        PAUSE_IMAGE: _cached("pause", pause_key, lambda work: _build_pause(work, arch), progress),
    }


def push_lab_images(registry, progress=print):
    """Build what is missing, push both images to `registry` (host:port, plain HTTP) under the names
    containerd asks a mirror for, and return {public name: pushed reference}."""
    images = ensure_images(progress)
    crane = binaries.ensure_crane(progress)
    pushed = {}
    for public_name, image in images.items():
        reference = mirror_reference(registry, public_name)
        started = time.monotonic()
        # An OCI image of the one layer, then its config: platform, Env, Cmd or Entrypoint.
        _crane(crane, "append", "--oci-empty-base", "-f", image.layer, "-t", reference)
        flags = ["--set-platform", image.platform] + [f"--env={name}={value}" for name, value in image.env.items()]
        if image.cmd:
            flags.append("--cmd=" + ",".join(image.cmd))
        if image.entrypoint:
            flags.append("--entrypoint=" + ",".join(image.entrypoint))
        _crane(crane, "mutate", reference, "-t", reference, *flags)
        progress(f"[lab] pushed {public_name} as {reference} in {time.monotonic() - started:.1f} s")
        pushed[public_name] = reference
    return pushed


def _architecture():
    machine = platform.machine()
    if machine not in ARCHITECTURES:
        raise LabError(f"The lab builds its images for {', '.join(ARCHITECTURES)} machines only; this one is {machine}.")
    return ARCHITECTURES[machine]


def _key(*parts):
    return hashlib.sha256(json.dumps([RECIPE_VERSION, *parts]).encode()).hexdigest()[:16]


def _cached(name, key, build, progress):
    """The Image cached under name-key; when missing, build(work directory) makes its root filesystem
    in work/rootfs and returns its config."""
    final = binaries.cache_root() / "images" / f"{name}-{key}"
    if not (final / "image.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(final.parent / f".{name}.lock", "w") as lock:
            # Two labs (or test runs) starting together build once; the second finds the first's result.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (final / "image.json").is_file():
                _build_into(final, build, name, progress)
    config = json.loads((final / "image.json").read_text())
    return Image(layer=final / "layer.tar", **config)


def _build_into(final, build, name, progress):
    _require_root(name)
    work = final.with_name(final.name + f".tmp-{os.getpid()}")
    _remove_tree(work)
    work.mkdir()
    started = time.monotonic()
    try:
        config = build(work)
        write_layer(work / "rootfs", work / "layer.tar")
        _remove_tree(work / "rootfs")
        (work / "image.json").write_text(json.dumps(config, indent=2) + "\n")
        # Only complete builds get the final name.
        os.replace(work, final)
    finally:
        _remove_tree(work)
    size = (final / "layer.tar").stat().st_size / 2**20
    progress(f"[lab] image {name}: built in {time.monotonic() - started:.0f} s, layer {size:.0f} MiB, {final}")


def _require_root(name):
    if os.geteuid() != 0:
        raise LabError(f"Building the lab's {name} image needs root (debootstrap and chroot): "
                       "run `python -m klutch_lab build` as root once, later runs use the cache.")


def _build_python(work, mirror, arch, progress):
    debootstrap = shutil.which("debootstrap")
    if not debootstrap:
        raise LabError("The lab builds its Python image with debootstrap, which is not installed: "
                       "`apt-get install debootstrap` (scripts/setup.sh does).")
    _check_mirror(mirror)
    rootfs = work / "rootfs"
    progress(f"[lab] image python: debootstrap {SUITE} ({', '.join(PACKAGES)}) from {mirror}, about a minute")
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH), DEBIAN_FRONTEND="noninteractive")
    argv = [debootstrap, "--variant=minbase", f"--arch={arch}", "--include=" + ",".join(PACKAGES), SUITE, rootfs,
            mirror]
    result = subprocess.run(argv, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            check=False)
    if result.returncode != 0:
        raise LabError(f"debootstrap of Debian {SUITE} from {mirror} failed (exit {result.returncode}):\n"
                       + binaries._tail(result.stdout)
                       + f"\nCheck that the mirror serves {SUITE} (or set {MIRROR_ENV} to one that does), that "
                         "debian-archive-keyring is installed, and that the disk has room.")
    _slim(rootfs)
    # What the agents' Deployment runs (`python -S -m ...`), and the modules they need.
    version = _chroot(rootfs, "python", "-S", "-c",
                      "import ssl, json, zipimport, http.client, platform; print(platform.python_version())")
    return {"platform": f"linux/{arch}", "env": {"PATH": PATH, "LANG": "C.UTF-8", "PYTHON_VERSION": version},
            "cmd": ["python3"], "entrypoint": None}


def _check_mirror(mirror):
    url = f"{mirror}/dists/{SUITE}/Release"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=20):
            pass
    except OSError as error:
        raise LabError(f"The Debian mirror {mirror} is unreachable ({url}: {error}); the lab builds its Python image "
                       f"from Debian {SUITE} packages. Check the network, or set {MIRROR_ENV} to a Debian mirror "
                       "this machine reaches.") from error


def _slim(rootfs):
    config = rootfs / "etc/dpkg/dpkg.cfg.d/slim"
    config.write_text(SLIM_DPKG_CONFIG)
    rules = [line.split(" ", 1) for line in SLIM_DPKG_CONFIG.splitlines()]
    excluded = [pattern for rule, pattern in rules if rule == "path-exclude"]
    included = [pattern for rule, pattern in rules if rule == "path-include"]
    for pattern in excluded:
        # dpkg's patterns are shell patterns on the whole path, with `*` matching `/` too.
        top = rootfs / pattern.lstrip("/").split("*")[0]
        for path in sorted(top.rglob("*"), reverse=True):
            inside = "/" + path.relative_to(rootfs).as_posix()
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
            elif not any(fnmatch.fnmatchcase(inside, keep) for keep in included):
                path.unlink()
    for pattern in BUILD_LEFTOVERS:
        for path in rootfs.glob(pattern):
            if path.is_symlink() or path.is_file():
                path.unlink()
    for name in HOST_FILES:
        (rootfs / name).write_text("")
        (rootfs / name).chmod(0o644)


def _chroot(rootfs, *argv):
    result = subprocess.run(["chroot", rootfs, *argv], text=True, capture_output=True, check=False,
                            env={"PATH": PATH, "LANG": "C.UTF-8"})
    if result.returncode != 0:
        raise LabError(f"The built image cannot run `{' '.join(argv)}` (exit {result.returncode}):\n"
                       + binaries._tail(result.stderr)
                       + f"\nThe recipe in {__file__} (PACKAGES, _slim) leaves it broken; nothing was cached.")
    return result.stdout.strip()


def _build_pause(work, arch):
    gcc = shutil.which("gcc")
    if not gcc:
        raise LabError("The lab builds its pause image from C and gcc is not installed: "
                       "`apt-get install gcc libc6-dev`.")
    rootfs = work / "rootfs"
    rootfs.mkdir()
    result = subprocess.run([gcc, "-static", "-Os", "-s", "-o", rootfs / "pause", PAUSE_SOURCE],
                            text=True, capture_output=True, check=False)
    if result.returncode != 0:
        raise LabError(f"Compiling {PAUSE_SOURCE} failed (exit {result.returncode}):\n" + binaries._tail(result.stderr)
                       + "\nA static build needs glibc's static library: `apt-get install libc6-dev`.")
    return {"platform": f"linux/{arch}", "env": {"PATH": PATH}, "cmd": None, "entrypoint": ["/pause"]}


def _crane(crane, *argv):
    # The lab's registry speaks plain HTTP on loopback.
    result = subprocess.run([crane, *argv, "--insecure"], text=True, capture_output=True, check=False)
    if result.returncode != 0:
        raise LabError(f"`crane {' '.join(str(arg) for arg in argv)}` failed (exit {result.returncode}):\n"
                       + binaries._tail(result.stderr) + "\nIs the lab's registry running and reachable?")
    return result.stdout


def _remove_tree(path):
    """Remove a build tree, first unmounting what an interrupted debootstrap left mounted in it
    (a bind of the host's /dev, say), so the removal never reaches outside the tree."""
    prefix = str(Path(path).resolve()) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        mounts = [line.split()[4] for line in mountinfo]
    for mount in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)
