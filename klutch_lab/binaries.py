# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's binaries: taken from a prebuilt directory, else built once from the Go module proxy.

Kubernetes' own module replaces its staging modules with local paths, so it cannot be
`go install`ed; a small wrapper module that pins those staging modules to their published
versions builds it. Builds land in a cache keyed by version, outside any checkout.
"""

import json
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

from klutch_lab.errors import LabError

KUBERNETES_VERSION = "v1.34.2"
ETCD_VERSION = "v3.6.5"
KUBERNETES_BINARIES = ("kube-apiserver", "kube-controller-manager", "kubectl")
NODE_KUBERNETES_BINARIES = ("kubelet", "kube-scheduler")
ALL_BINARIES = KUBERNETES_BINARIES + ("etcd",)
MINIMUM_GO = (1, 24)

BIN_DIR_ENV = "KLUTCH_LAB_BIN_DIR"
CACHE_ENV = "KLUTCH_LAB_CACHE"


def cache_root():
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "klutch-bind"


def kubernetes_dir():
    return cache_root() / "bin" / ("kubernetes-" + KUBERNETES_VERSION)


def etcd_dir():
    return cache_root() / "bin" / ("etcd-" + ETCD_VERSION)


def _executable(path):
    return path.is_file() and os.access(path, os.X_OK)


def ensure_binaries(progress=print):
    """Return {name: path} for every binary the lab runs, building what is missing."""
    found = {}
    prebuilt = os.environ.get(BIN_DIR_ENV)
    if prebuilt:
        prebuilt_dir = Path(prebuilt).expanduser()
        if not prebuilt_dir.is_dir():
            raise LabError(
                f"{BIN_DIR_ENV}={prebuilt} is not a directory. Point it at a directory holding "
                f"{', '.join(ALL_BINARIES)} (setup-envtest's assets hold all but "
                "kube-controller-manager), or unset it to build them with Go."
            )
        found = {name: prebuilt_dir / name for name in ALL_BINARIES if _executable(prebuilt_dir / name)}
    for name in KUBERNETES_BINARIES:
        if name not in found and _executable(kubernetes_dir() / name):
            found[name] = kubernetes_dir() / name
    if "etcd" not in found and _executable(etcd_dir() / "etcd"):
        found["etcd"] = etcd_dir() / "etcd"

    missing = [name for name in ALL_BINARIES if name not in found]
    if not missing:
        return found
    go = _go_toolchain(missing, prebuilt)
    kube_missing = [name for name in missing if name in KUBERNETES_BINARIES]
    if kube_missing:
        _build_kubernetes(go, kube_missing, progress)
        found.update({name: kubernetes_dir() / name for name in kube_missing})
    if "etcd" in missing:
        _build_etcd(go, progress)
        found["etcd"] = etcd_dir() / "etcd"
    return found


def _go_toolchain(missing, prebuilt):
    go = shutil.which("go")
    where = f"in {BIN_DIR_ENV}={prebuilt}" if prebuilt else f"in the cache {cache_root() / 'bin'}"
    if not go:
        raise LabError(
            f"The lab needs {', '.join(missing)}, which are not {where}, and there is no Go "
            f"toolchain on PATH to build them. Install Go {MINIMUM_GO[0]}.{MINIMUM_GO[1]} or newer, "
            f"or set {BIN_DIR_ENV} to a directory with {', '.join(ALL_BINARIES)}."
        )
    version = _run([go, "env", "GOVERSION"], capture=True).strip()
    match = re.match(r"go(\d+)\.(\d+)", version)
    if match and tuple(int(part) for part in match.groups()) < MINIMUM_GO:
        raise LabError(
            f"{go} is {version}; building Kubernetes {KUBERNETES_VERSION} needs Go "
            f"{MINIMUM_GO[0]}.{MINIMUM_GO[1]} or newer. Install a newer Go or set {BIN_DIR_ENV}."
        )
    return go


def _run(argv, cwd=None, capture=False, env=None):
    result = subprocess.run(
        argv, cwd=cwd, env=env, text=True, check=False,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    if result.returncode != 0:
        raise LabError(
            f"`{' '.join(str(a) for a in argv)}` failed (exit {result.returncode}):\n"
            + _tail(result.stderr)
            + "\nCheck that the Go module proxy is reachable (GOPROXY) and the disk has room."
        )
    return result.stdout


def _tail(text, lines=20):
    return "\n".join(text.strip().splitlines()[-lines:])


def _build_env(cgo=False):
    env = dict(os.environ, CGO_ENABLED="1" if cgo else "0")
    # -mod=mod lets the wrapper module's go.sum grow as `go build` resolves packages.
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -mod=mod").strip()
    return env


def _go_build(go, packages, output, ldflags, cwd, label, progress, tags=(), cgo=False):
    """`go build -v` with a heartbeat: the count of compiled packages every 15 seconds."""
    argv = [go, "build", "-v", "-trimpath", "-ldflags", ldflags, "-tags", ",".join(tags), "-o", output] + packages
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=cwd, env=_build_env(cgo), text=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lines = []

    def read():
        for line in process.stderr:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while True:
        try:
            process.wait(timeout=15)
            break
        except subprocess.TimeoutExpired:
            progress(f"[lab] {label}: {len(lines)} packages compiled, {time.monotonic() - started:.0f} s")
    reader.join()
    if process.returncode != 0:
        raise LabError(f"Building {label} failed (exit {process.returncode}):\n" + _tail("".join(lines)))
    progress(f"[lab] {label}: built in {time.monotonic() - started:.0f} s")


def _install(tmp_dir, final_dir, names):
    """Move finished binaries into place, so an interrupted build never looks complete."""
    final_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        os.replace(tmp_dir / name, final_dir / name)
    shutil.rmtree(tmp_dir, ignore_errors=True)


def _wrapper_module(path, name):
    path.mkdir(parents=True, exist_ok=True)
    # A go directive of 1.17 or later prunes the module graph; without it Go would fetch the go.mod
    # of every module ever required, some of which the module proxy no longer serves.
    (path / "go.mod").write_text(f"module {name}\n\ngo {MINIMUM_GO[0]}.{MINIMUM_GO[1]}\n")
    return path


def _build_kubernetes(go, names, progress):
    started = time.monotonic()
    progress(
        f"[lab] building Kubernetes {KUBERNETES_VERSION} ({', '.join(names)}) into {kubernetes_dir()}; "
        "a cold build downloads about 0.8 GB of modules and takes about 5 minutes, later ones reuse it"
    )
    src = _wrapper_module(cache_root() / "src" / ("kubernetes-" + KUBERNETES_VERSION), "klutchlab/kubernetes")
    info = json.loads(_run([go, "mod", "download", "-json", "k8s.io/kubernetes@" + KUBERNETES_VERSION],
                           cwd=src, capture=True))
    upstream = Path(info["GoMod"]).read_text()
    staging_version = "v0" + KUBERNETES_VERSION[2:]
    directives = [line for line in upstream.splitlines() if re.match(r"^(go|godebug) ", line)]
    replaces = [
        f"replace {module} => {module} {staging_version}"
        for module in re.findall(r"^\s*(k8s\.io/\S+)\s+=>\s+\./staging/", upstream, re.MULTILINE)
    ]
    (src / "go.mod").write_text("\n".join(["module klutchlab/kubernetes", ""] + directives + replaces) + "\n")
    packages = ["k8s.io/kubernetes/cmd/" + name for name in names]
    progress("[lab] resolving Kubernetes modules")
    _run([go, "get"] + [package + "@" + KUBERNETES_VERSION for package in packages], cwd=src, env=_build_env())
    major, minor = KUBERNETES_VERSION[1:].split(".")[:2]
    stamps = {
        "gitVersion": KUBERNETES_VERSION, "gitMajor": major, "gitMinor": minor,
        "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
    }
    ldflags = "-s -w " + " ".join(
        f"-X {package}.{key}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for key, value in stamps.items()
    )
    tmp_dir = kubernetes_dir().with_name(kubernetes_dir().name + f".tmp-{os.getpid()}")
    _go_build(go, packages, str(tmp_dir) + "/", ldflags, src, "Kubernetes " + KUBERNETES_VERSION, progress)
    _install(tmp_dir, kubernetes_dir(), names)
    progress(f"[lab] Kubernetes {KUBERNETES_VERSION} ready after {time.monotonic() - started:.0f} s")


def _build_module(go, build, progress):
    """Build the packages of one Go module at a pinned version into its cache directory.

    `build` names the module, version, {binary: package}, ldflags, build tags, whether it needs cgo,
    and {directory: path in the module} of data to keep next to the binaries (CRDs, say), so the lab
    needs no Go at run time.
    """
    label = f"{build['name']} {build['version']}"
    final = cache_root() / "bin" / f"{build['name']}-{build['version']}"
    progress(f"[lab] building {label} into {final}")
    src = _wrapper_module(cache_root() / "src" / f"{build['name']}-{build['version']}", "klutchlab/" + build["name"])
    # `go get` asks the proxy for the version list, which it refuses for some modules; a require does not.
    _run([go, "mod", "edit", f"-require={build['module']}@{build['version']}"], cwd=src)
    tmp_dir = final.with_name(final.name + f".tmp-{os.getpid()}")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for binary, package in build["packages"].items():
        _go_build(go, [package], str(tmp_dir / binary), build.get("ldflags", "-s -w"), src, f"{label} {binary}",
                  progress, tags=build.get("tags", ()), cgo=build.get("cgo", False))
    kept = list(build["packages"])
    if build.get("data"):
        info = json.loads(_run([go, "mod", "download", "-json", f"{build['module']}@{build['version']}"],
                               cwd=src, capture=True))
        for directory, inside in build["data"].items():
            shutil.copytree(Path(info["Dir"]) / inside, tmp_dir / directory)
            (tmp_dir / directory).chmod(0o755)
            kept.append(directory)
    _install(tmp_dir, final, kept)
    return final


ETCD_BUILD = {"name": "etcd", "module": "go.etcd.io/etcd/server/v3", "version": ETCD_VERSION,
              "packages": {"etcd": "go.etcd.io/etcd/server/v3"}}


def _build_etcd(go, progress):
    _build_module(go, ETCD_BUILD, progress)


def build_dir(build):
    return cache_root() / "bin" / f"{build['name']}-{build['version']}"


def _ensure_builds(builds, progress):
    """{name: directory} of module builds (binaries and data), building what is missing."""
    found = {}
    for build in builds:
        final = build_dir(build)
        complete = all(_executable(final / binary) for binary in build["packages"]) and all(
            (final / directory).is_dir() for directory in build.get("data", {}))
        if not complete:
            started = time.monotonic()
            check = build.get("check")
            if check:
                check()
            _build_module(_go_toolchain([build["name"]], None), build, progress)
            progress(f"[lab] {build['name']} {build['version']} ready after {time.monotonic() - started:.0f} s")
        found[build["name"]] = final
    return found


# go-containerregistry: its in-memory OCI registry (Crossplane's package source, a node's image
# mirror) and crane, which pushes the lab's images; the version Crossplane v1.20.1 requires.
GO_CONTAINERREGISTRY_VERSION = "v0.19.2"
GO_CONTAINERREGISTRY_BUILD = {
    "name": "go-containerregistry", "module": "github.com/google/go-containerregistry",
    "version": GO_CONTAINERREGISTRY_VERSION,
    "packages": {name: "github.com/google/go-containerregistry/cmd/" + name for name in ("registry", "crane")}}


def ensure_crane(progress=print):
    """The path of the lab's crane, building it when missing."""
    return _ensure_builds([GO_CONTAINERREGISTRY_BUILD], progress)["go-containerregistry"] / "crane"


def ensure_registry(progress=print):
    """The path of the lab's registry, building it when missing."""
    return _ensure_builds([GO_CONTAINERREGISTRY_BUILD], progress)["go-containerregistry"] / "registry"


# Crossplane and the provider that lets it compose objects in the cluster, both run as processes.
CROSSPLANE_VERSION = "v1.20.1"
PROVIDER_KUBERNETES_VERSION = "v0.17.1"
CROSSPLANE_BUILDS = (
    {"name": "crossplane", "module": "github.com/crossplane/crossplane", "version": CROSSPLANE_VERSION,
     "packages": {"crossplane": "github.com/crossplane/crossplane/cmd/crossplane",
                  "crank": "github.com/crossplane/crossplane/cmd/crank"},
     # Without the version stamp every package with a Crossplane version constraint is refused.
     "ldflags": f"-s -w -X github.com/crossplane/crossplane/internal/version.version={CROSSPLANE_VERSION}",
     "data": {"crds": "cluster/crds"}},
    {"name": "provider-kubernetes", "module": "github.com/crossplane-contrib/provider-kubernetes",
     "version": PROVIDER_KUBERNETES_VERSION,
     "packages": {"provider-kubernetes": "github.com/crossplane-contrib/provider-kubernetes/cmd/provider"},
     "data": {"crds": "package/crds"}},
    GO_CONTAINERREGISTRY_BUILD,
)


def crank_path():
    """Where the lab's build of Crossplane's package CLI lives."""
    return cache_root() / "bin" / f"crossplane-{CROSSPLANE_VERSION}" / "crank"


def ensure_crossplane(progress=print):
    """{name: directory} of the Crossplane builds (binaries and CRDs) and the registry, building what is missing."""
    return _ensure_builds(CROSSPLANE_BUILDS, progress)


def _check_libseccomp():
    if not Path("/usr/include/seccomp.h").is_file():
        raise LabError(
            "Building runc with seccomp needs libseccomp's headers, which are not installed (without seccomp "
            "every Pod sandbox fails). Install them (Debian: apt-get install libseccomp-dev; scripts/setup.sh "
            "does), or start the lab without nodes (leave out --nodes)."
        )


# What a node runs besides the kubelet: containerd, runc and the CNI plugins that wire Pods to a bridge.
CONTAINERD_VERSION = "v2.4.2"
RUNC_VERSION = "v1.5.3"
CNI_PLUGINS_VERSION = "v1.10.0"
NODE_BUILDS = (
    {"name": "containerd", "module": "github.com/containerd/containerd/v2", "version": CONTAINERD_VERSION,
     "packages": {name: "github.com/containerd/containerd/v2/cmd/" + name
                  for name in ("containerd", "containerd-shim-runc-v2", "ctr")},
     "ldflags": f"-s -w -X github.com/containerd/containerd/v2/version.Version={CONTAINERD_VERSION}",
     # Snapshotters the lab does not use need C libraries; overlayfs and native need none.
     "tags": ("no_btrfs", "no_devmapper", "no_zfs")},
    {"name": "runc", "module": "github.com/opencontainers/runc", "version": RUNC_VERSION,
     "packages": {"runc": "github.com/opencontainers/runc"},
     "tags": ("seccomp",), "cgo": True, "check": _check_libseccomp},
    {"name": "cni-plugins", "module": "github.com/containernetworking/plugins", "version": CNI_PLUGINS_VERSION,
     "packages": {name: f"github.com/containernetworking/plugins/plugins/{kind}/{name}"
                  for kind, name in (("main", "bridge"), ("ipam", "host-local"), ("main", "loopback"),
                                     ("meta", "portmap"))}},
    GO_CONTAINERREGISTRY_BUILD,
)


def ensure_node(progress=print):
    """{name: path} of what a node runs: kubelet, kube-scheduler, containerd, shim, ctr, runc, registry, and
    cni-plugins (a directory), building what is missing."""
    missing = [name for name in NODE_KUBERNETES_BINARIES if not _executable(kubernetes_dir() / name)]
    if missing:
        _build_kubernetes(_go_toolchain(missing, None), missing, progress)
    found = {name: kubernetes_dir() / name for name in NODE_KUBERNETES_BINARIES}
    builds = _ensure_builds(NODE_BUILDS, progress)
    for build in NODE_BUILDS:
        if build["name"] != "cni-plugins":
            found.update({binary: builds[build["name"]] / binary for binary in build["packages"]})
    found["cni-plugins"] = builds["cni-plugins"]
    return found
