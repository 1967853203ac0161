"""Which process runs each run, and whether it is still alive: so a run whose process was killed
(SIGKILL, the OOM killer) is marked failed instead of staying STARTED forever.

A Dagster run is STARTED until its own process records how it ended. A process killed outright
records nothing, and a STARTED run counts against the run queue's `max_concurrent_runs` and makes
the refresh sensor wait, forever. A dead run worker is noticed only where something launched it: the
warm process that forked a daemon-launched run (zip_etl/warm_runs.py), or the code server that
started one in a fresh process, reports its exit and the run is marked failed, and run monitoring
asks the run launcher about runs whose launcher can tell. Runs started by
`dagster asset materialize` or by the zip-etl CLI's pool (`execute_in_process`) have no launcher
behind them.

So every run records its process when it starts: the `zip_etl/process` tag (host, machine, pid and
the process's start time), written by zip_etl's run storage when the run's own process stores the
run's start event (`zip_etl.instance.ZipEtlRunStorage`). zip_etl's run launchers answer run
monitoring from it (`zip_etl.instance.ZipEtlRunLauncher`, and the Celery launcher for runs without a
Celery task): a run whose recorded process is gone from this machine (no such pid, a zombie, or the
pid now belongs to a later process) is reported FAILED and Dagster marks it failed. A run recorded
on another machine is never judged from here: its process cannot be seen, and it may be alive.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import psutil

PROCESS_TAG = "zip_etl/process"


def _machine_id() -> str:
    """A stable id of this machine (hashed: the raw id is meant to stay private), or '' if none."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            raw = Path(path).read_text().strip()
        except OSError:
            continue
        if raw:
            return hashlib.sha256(f"zip_etl:{raw}".encode()).hexdigest()[:12]
    return ""


@dataclass(frozen=True)
class RunProcess:
    """The process that executes a run, as recorded in the run's `zip_etl/process` tag."""

    host: str
    machine: str
    pid: int
    started: float  # the process's start time (seconds since the epoch), to tell a reused pid apart

    def tag_value(self) -> str:
        return f"host={self.host} machine={self.machine or '-'} pid={self.pid} started={self.started:.2f}"

    @classmethod
    def parse(cls, value: str | None) -> RunProcess | None:
        try:
            fields = dict(part.split("=", 1) for part in (value or "").split())
            return cls(fields["host"], "" if fields["machine"] == "-" else fields["machine"],
                       int(fields["pid"]), float(fields["started"]))
        except (KeyError, ValueError):
            return None

    @classmethod
    def of(cls, pid: int) -> RunProcess:
        return cls.here(pid, psutil.Process(pid).create_time())

    @classmethod
    def here(cls, pid: int, started: float) -> RunProcess:
        """Process `pid` of this machine, started at `started` (for a process that may be gone)."""
        return cls(socket.gethostname(), _machine_id(), pid, started)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


class Liveness(Enum):
    ALIVE = "alive"
    DEAD = "dead"
    ELSEWHERE = "on another machine"  # cannot be seen from here: never judged


def liveness(process: RunProcess) -> Liveness:
    if process.host != socket.gethostname() or process.machine != _machine_id():
        return Liveness.ELSEWHERE
    try:
        found = psutil.Process(process.pid)
        if found.status() == psutil.STATUS_ZOMBIE:  # exited, not yet reaped by its parent
            return Liveness.DEAD
        if abs(found.create_time() - process.started) > 1.0:  # the pid was reused by a later process
            return Liveness.DEAD
    except psutil.NoSuchProcess:
        return Liveness.DEAD
    except psutil.AccessDenied:  # it exists; another user's process
        return Liveness.ALIVE
    return Liveness.ALIVE


def run_process(run) -> RunProcess | None:
    """The process recorded for `run` (a DagsterRun), if one was."""
    return RunProcess.parse(run.tags.get(PROCESS_TAG))


def how_it_ended(exit_code: int | None) -> str:
    """A process's end from its exit code (negative: the signal that killed it), as a verb phrase."""
    if exit_code is not None and exit_code < 0:
        try:
            return f"was killed by signal {-exit_code} ({signal.Signals(-exit_code).name})"
        except ValueError:
            return f"was killed by signal {-exit_code}"
    return f"exited with code {exit_code}"


def dead_process_message(process: str, ended: str = "was killed or crashed") -> str:
    """Why a run whose `process` ("pid 123 on host") is gone failed, and what its zip codes show in
    the UI: the one wording of the failure message and the docs."""
    return (
        f"The process that ran this run ({process}) is gone: it {ended} without recording how the run "
        f"ended. Its zip codes keep their previous rows (a partition write commits whole or not at all) and "
        f"show as failed until they are materialized again: by the automatic retry if the run is tagged "
        f"dagster/will_retry=true, else by materializing them again."
    )


def this_process_tag() -> dict[str, str]:
    return {PROCESS_TAG: RunProcess.of(os.getpid()).tag_value()}
