# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An agent as a local process, for labs and laptops: started, health-checked, restarted on change, stopped.

Everything lives in one run directory: the code the agent runs (a copy of this collection's
module_utils, so it outlives the module's temporary files and changes only on an upgrade), its
kubeconfig (mode 0600), its log, and state.json with the pid and the fingerprint of what it was
started with. A running agent with the same fingerprint that answers /healthz is left alone.
"""

import hashlib
import importlib
import json
import os
import pkgutil
import signal
import socket
import subprocess
import time

from http.client import HTTPConnection

from ansible_collections.klutch.bind.plugins.module_utils.agent import cli
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError

PACKAGE = __name__.rpartition(".")[0]  # module_utils, copied whole
# Importing the agent's command line also brings every module it needs into a module's zip, which holds
# only what is imported: the agent package's __main__.py is not there, so the agent runs as cli.
ENTRY = cli.__name__
# The module an agent of this directory runs: ENTRY, or the agent package for one started before it
# became a package with a command line of its own.
AGENT_MODULES = (ENTRY.encode("utf-8"), ENTRY.rpartition(".")[0].encode("utf-8"))
STATE_FILE = "state.json"
LOG_FILE = "agent.log"
KUBECONFIG_FILE = "kubeconfig"


def collection_code(package_name=PACKAGE, prefix=""):
    """{path: bytes} of every module_utils file ("agent.py", "k8s/client.py"), read through the loader (works
    from a module's zip)."""
    package = importlib.import_module(package_name)
    code = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:
            subpackage = "%s.%s" % (package_name, info.name)
            code[prefix + info.name + "/__init__.py"] = pkgutil.get_data(subpackage, "__init__.py")
            code.update(collection_code(subpackage, prefix + info.name + "/"))
        else:
            code[prefix + info.name + ".py"] = pkgutil.get_data(package_name, info.name + ".py")
    return code


def fingerprint(argv, code, kubeconfig_text):
    """What a running agent must match to be left alone: its arguments, its code and its credentials."""
    digest = hashlib.sha256(json.dumps(argv).encode("utf-8"))
    for name in sorted(code):
        digest.update(name.encode("utf-8") + b"\0" + code[name])
    digest.update((kubeconfig_text or "").encode("utf-8"))
    return digest.hexdigest()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalAgent:
    """The agent process of one run directory."""

    def __init__(self, directory):
        self.directory = directory
        self.state = self._read_state()

    def path(self, name):
        return os.path.join(self.directory, name)

    def _read_state(self):
        try:
            with open(self.path(STATE_FILE)) as handle:
                return json.load(handle)
        except (OSError, IOError, ValueError):
            return {}

    def running(self):
        """The pid of this directory's agent if it is alive, else None (a reused pid does not count)."""
        pid = self.state.get("pid")
        if not pid:
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as handle:
                command = handle.read().split(b"\0")
            directory = os.readlink("/proc/%d/cwd" % pid)
        except (OSError, IOError):
            return pid  # no /proc: trust the pid
        ours = any(module in command for module in AGENT_MODULES)
        return pid if ours and directory == os.path.realpath(self.directory) else None

    def healthy(self, timeout=2):
        port = self.state.get("health_port")
        if not port:
            return False
        connection = HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            connection.request("GET", "/healthz")
            return bool(json.loads(connection.getresponse().read()).get("healthy"))
        except (OSError, ValueError):
            return False
        finally:
            connection.close()

    def stop(self, timeout=30):
        """SIGTERM, then SIGKILL after `timeout` seconds; True when a process was stopped."""
        pid = self.running()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running():
            time.sleep(0.1)
        if self.running():
            os.kill(pid, signal.SIGKILL)
        self._reap(pid)
        return True

    @staticmethod
    def _reap(pid):
        try:
            os.waitpid(pid, os.WNOHANG)
        except OSError:
            pass  # not our child: init reaps it

    def install(self, code, kubeconfig_text):
        """Write the code and the kubeconfig the agent will run with."""
        target = os.path.join(self.directory, "code", *PACKAGE.split("."))
        for name, content in code.items():
            path = os.path.join(target, *name.split("/"))
            if not os.path.isdir(os.path.dirname(path)):
                os.makedirs(os.path.dirname(path))
            with open(path, "wb") as handle:
                handle.write(content)
        if kubeconfig_text is not None:
            descriptor = os.open(self.path(KUBECONFIG_FILE), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.fchmod(descriptor, 0o600)  # also when the file was there before, with whatever mode
            with os.fdopen(descriptor, "w") as handle:
                handle.write(kubeconfig_text)

    def start(self, python, argv, print_fingerprint, health_port):
        """Start the agent detached from this process, in its own session, logging to agent.log."""
        # K8S_AUTH_* describe the controller's cluster: inherited, an API key would override the agent's own credentials.
        environ = dict((name, value) for name, value in os.environ.items() if not name.startswith("K8S_AUTH_"))
        environ.update(PYTHONPATH=os.path.join(self.directory, "code"), PYTHONUNBUFFERED="1")
        with open(self.path(LOG_FILE), "ab") as log:
            process = subprocess.Popen(
                [python, "-m", ENTRY] + argv + ["--health-port", str(health_port), "--health-local"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=environ, cwd=self.directory,
                start_new_session=True, close_fds=True)
        self.state = {"pid": process.pid, "fingerprint": print_fingerprint, "health_port": health_port,
                      "started": time.time()}
        with open(self.path(STATE_FILE), "w") as handle:
            json.dump(self.state, handle)
        return process

    def wait_healthy(self, process, timeout):
        """Wait until /healthz says healthy; ConfigError with the log's last lines when it dies or stays sick."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ConfigError("The agent in %s exited with code %s at start: %s" % (
                    self.directory, process.returncode, self.log_tail()))
            if self.healthy():
                return
            time.sleep(0.2)
        raise ConfigError("The agent in %s did not report healthy within %d s; its log ends: %s" % (
            self.directory, timeout, self.log_tail()))

    def log_tail(self, lines=2, width=400):
        """The last log lines, shortened; the agent logs no object bodies or credentials."""
        try:
            with open(self.path(LOG_FILE), "rb") as handle:
                return " | ".join(line.decode("utf-8", "replace").strip()[:width]
                                  for line in handle.read().splitlines()[-lines:]) or "(empty)"
        except (OSError, IOError):
            return "(no log)"

    def forget(self):
        """Remove what the stopped agent leaves: its state and the kubeconfig it was given (the log stays)."""
        for name in (STATE_FILE, KUBECONFIG_FILE):
            if os.path.exists(self.path(name)):
                os.remove(self.path(name))


def require_python(python):
    """ConfigError unless `python` runs Python 3.9 or later, which the agent needs."""
    try:
        found = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)
    except OSError as error:
        raise ConfigError("python %s cannot be run (%s): give the path of a Python 3.9+ interpreter, or leave python "
                          "out to use the one running Ansible's module." % (python, error.strerror))
    version = found.stdout.decode("ascii", "replace").strip()
    if found.returncode != 0 or tuple(int(part) for part in version.split(".") if part.isdigit()) < (3, 9):
        raise ConfigError("python %s is not Python 3.9 or later (it says %r): give a Python 3.9+ interpreter." % (
            python, version or found.stderr.decode("utf-8", "replace").strip()[-200:]))


def require_free_port(port):
    """ConfigError when something already listens on the local health port."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As the agent's server binds: connections of a stopped agent waiting out TIME_WAIT do not count.
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind(("127.0.0.1", port))
    except OSError:
        raise ConfigError("health_port %d is in use by another process on this host: choose a free port, or leave "
                          "health_port out to pick one." % port)
    finally:
        probe.close()
