# -*- coding: utf-8 -*-
# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An agent as a local process, for labs and laptops: started, health-checked, restarted on change, stopped.

Everything lives in one run directory: the code the agent runs (a copy of this collection's
module_utils, so it outlives the module's temporary files and changes only on an upgrade), its
kubeconfig (mode 0600), its log, and state.json with the pid and the fingerprint of what it was
started with. A running agent with the same fingerprint that answers /healthz is left alone.
"""

import base64
import hashlib
import importlib
import json
import os
import pkgutil
import signal
import socket
import subprocess
import sys
import time

from http.client import HTTPConnection

from ansible_collections.klutch.bind.plugins.module_utils.agent import cli
from ansible_collections.klutch.bind.plugins.module_utils.k8s.connection import resolve_auth
from ansible_collections.klutch.bind.plugins.module_utils.k8s.errors import ConfigError
from ansible_collections.klutch.bind.plugins.module_utils.k8s.resources import SECRETS
from ansible_collections.klutch.bind.plugins.module_utils.plan.consumers import kubeconfig

try:
    import yaml
except ImportError:  # reported by the module
    yaml = None

PACKAGE = __name__.rsplit(".", 2)[0]  # module_utils, copied whole
ENTRY = cli.__name__  # importing it also brings every module it needs into a module's zip
# The module an agent of this directory runs: ENTRY, or the agent module of release 0.1.0.
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


def service_account_kubeconfig(connect, check_mode, account, wait_timeout, hide_secret):
    """The agent's kubeconfig with the ServiceAccount's token, as YAML text; None in check mode before it exists."""
    namespace, _sep, name = account.partition("/")
    if not namespace or not name:
        raise ConfigError("service_account %r is not <namespace>/<name>: give it as klutch-bind/klutch-bind-konnector, "
                          "for example." % account)
    client = connect()
    secret = client.get(SECRETS, name + "-token", namespace)
    if secret is None and check_mode:
        return None
    if secret is None:
        raise ConfigError("The ServiceAccount %s has no token Secret %s-token in %s on %s: apply the role's RBAC "
                          "first (the roles klutch.bind.konnector and klutch.bind.control_plane create it)."
                          % (account, name, namespace, client.label))
    secret = client.wait(SECRETS, name + "-token", namespace, lambda obj: bool(((obj or {}).get("data") or {}).get(
        "token")), wait_timeout, "issued a token by the token controller")
    token = base64.b64decode(secret["data"]["token"]).decode("utf-8")
    hide_secret(token)
    return yaml.safe_dump(kubeconfig(client.configuration.host, secret["data"].get("ca.crt"), token, namespace),
                          default_flow_style=False)


def agent_kubeconfig(agent, check_mode, params, connect, hide_secret):
    """(kubeconfig argument for the agent, its text to write or None, its text for the fingerprint)."""
    if params["service_account"]:
        text = service_account_kubeconfig(connect, check_mode, params["service_account"], params["wait_timeout"],
                                          hide_secret)
        return agent.path(KUBECONFIG_FILE), text, text
    given = resolve_auth(params)["kubeconfig"]
    if isinstance(given, dict):
        text = yaml.safe_dump(given, default_flow_style=False)
        return agent.path(KUBECONFIG_FILE), text, text
    if given:
        try:
            with open(given) as handle:
                return given, None, handle.read()
        except (OSError, IOError) as error:
            raise ConfigError("kubeconfig %s cannot be read (%s): give an existing file." % (given, error.strerror))
    raise ConfigError("A local agent needs a kubeconfig: set kubeconfig (or K8S_AUTH_KUBECONFIG), or service_account "
                      "to run it with a ServiceAccount's token.")


def agent_arguments(params, kubeconfig_path):
    argv = [params["role"], "--kubeconfig", kubeconfig_path, "--resync", str(params["resync"]),
            "--concurrency", str(params["concurrency"]),
            "--identity", params["identity"] or "%s-%s" % (socket.gethostname(), params["name"])]
    if params["context"] and not params["service_account"]:
        argv += ["--context", params["context"]]
    if params["role"] == "backend":
        argv += ["--consumer-scope", params["consumer_scope"]]
    elif params["service_account"]:
        argv += ["--grant-claims-to", params["service_account"]]
    return argv


def require_start(agent, pid, python, health_port):
    """Check that a new agent can start (its Python, its free health port); its port."""
    port = health_port or agent.state.get("health_port") or free_port()
    # Checked while the old agent still runs: a new one that cannot start must not leave none.
    require_python(python)
    if port != agent.state.get("health_port") or pid is None:
        require_free_port(port)
    return port


def present(agent, check_mode, params, connect, hide_secret):
    """Leave a healthy agent with the same fingerprint alone, else (re)start it: (result, its arguments)."""
    path, text, credentials = agent_kubeconfig(agent, check_mode, params, connect, hide_secret)
    argv = agent_arguments(params, path)
    code = collection_code()
    wanted = fingerprint(argv, code, credentials)
    pid = agent.running()
    if pid and agent.state.get("fingerprint") == wanted and agent.healthy():
        return {"action": "unchanged", "pid": pid}, argv
    reason = ("it was not running" if pid is None else "its arguments, code or credentials changed"
              if agent.state.get("fingerprint") != wanted else "it did not answer its health check")
    action = "started" if pid is None else "restarted"
    python = params["python"] or sys.executable
    port = require_start(agent, pid, python, params["health_port"])
    if check_mode:
        return {"action": action, "reason": reason}, argv
    agent.stop()
    agent.install(code, text)
    process = agent.start(python, argv, wanted, port)
    agent.wait_healthy(process, params["wait_timeout"])
    return {"action": action, "reason": reason, "pid": process.pid}, argv


def agent_for(check_mode, params):
    """The agent of klutch_agent's options, in run_dir/name (created unless in check mode); name defaults to the role."""
    params["name"] = params["name"] or params["role"]
    run_dir = os.path.join(params["run_dir"], params["name"])
    if not check_mode and not os.path.isdir(run_dir):
        os.makedirs(run_dir, 0o700)
    return LocalAgent(run_dir)


def converge(agent, check_mode, params, connect, hide_secret):
    """Run the agent as klutch_agent's options say (state present) or stop it (absent): (result, diff).

    `connect()` returns the client of the module's cluster, for a service_account's token;
    `hide_secret(value)` keeps that token out of the module's output."""
    was_running = agent.running() is not None
    runs = params["state"] == "present"
    argv = None
    if runs:
        result, argv = present(agent, check_mode, params, connect, hide_secret)
    else:
        result = {"action": "stopped" if was_running else "absent"}
        if not check_mode:
            agent.stop()
            agent.forget()  # with the kubeconfig it was given: no token stays on disk
    if runs and agent.state.get("health_port"):
        result["health_url"] = "http://127.0.0.1:%d/healthz" % agent.state["health_port"]
    result.update(changed=result["action"] not in ("unchanged", "absent"), log_file=agent.path(LOG_FILE))
    return result, {"before": {"running": was_running}, "after": {"running": runs, "arguments": argv}}
