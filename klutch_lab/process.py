# Copyright: klutch.bind contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Processes the lab starts: each in its own session, recorded by pid and start time.

The start time (from /proc) guards against pid reuse: `down` only signals a pid whose start
time still matches what `up` recorded, so it never ends a process it did not start.
"""

import os
import signal
import subprocess
import time
from pathlib import Path

from klutch_lab.errors import LabError


def start_time(pid):
    """The kernel's start time of `pid` in clock ticks, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces; the fields after its closing parenthesis are fixed.
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def spawn(argv, log_path, env=None):
    """Start argv in a new session with output to log_path; return its record."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [str(arg) for arg in argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=env, start_new_session=True, close_fds=True,
        )
    return {"pid": process.pid, "start_time": start_time(process.pid), "log": str(log_path),
            "argv": [str(arg) for arg in argv]}


def alive(record):
    return record.get("start_time") is not None and start_time(record["pid"]) == record["start_time"]


def stop(record, grace=10.0):
    """End the process group a record names, if it is still the one we started."""
    if not alive(record):
        return
    pid = record["pid"]
    for signal_number in (signal.SIGTERM, signal.SIGKILL):  # KILL only for a group that outlived TERM's grace
        try:
            os.killpg(pid, signal_number)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while alive(record) and time.monotonic() < deadline:
            reap(pid)
            time.sleep(0.05)
        if not alive(record):
            break
    reap(pid)
    if alive(record):
        raise LabError(f"pid {pid} ({record['argv'][0]}) survived SIGKILL for {grace:.0f} s (stuck in the kernel?): "
                       "check it with `ps` and end it by hand.")


def reap(pid):
    """Collect our own child's exit status so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def log_tail(record, lines=20):
    try:
        text = Path(record["log"]).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(log is empty)"
