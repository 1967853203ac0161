"""CPU seconds of a measurement, split between the processes that run it (this one and its children)
and the PostgreSQL server (its whole process tree), so a report can say who pays for each row.

The server's CPU is read from /proc through psutil, so it is known only when the server runs on
this machine (the embedded one does); otherwise it is reported as unknown. It covers everything the
server does meanwhile, Dagster's storage included when it lives on the same server (the default).
"""

from __future__ import annotations

import contextlib
import resource
from dataclasses import dataclass


@dataclass(frozen=True)
class CpuSeconds:
    client: float
    server: float | None

    def __sub__(self, other: CpuSeconds) -> CpuSeconds:
        server = None if self.server is None or other.server is None else self.server - other.server
        return CpuSeconds(self.client - other.client, server)


def client_cpu() -> float:
    """User + system seconds of this process and of its children that have ended (and been waited for)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def postmaster_pid(url: str) -> int | None:
    """The PostgreSQL server's main process, if it runs on this machine: the parent of our backend."""
    import psutil

    from zip_etl.db.connection import connect

    conn = connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend = cursor.fetchone()[0]
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(backend)
            parent = process.parent()
            if parent is not None and "postgres" in " ".join(parent.cmdline() or [parent.name()]):
                return parent.pid
    finally:
        conn.close()
    return None


def process_tree_cpu(pid: int | None) -> float | None:
    """User + system seconds of a process and its live descendants, each with what it collected from
    the children it has waited for (a PostgreSQL server's ended backends, a Celery worker's ended run
    processes); None if the process is gone or not on this machine."""
    if pid is None:
        return None
    import psutil

    try:
        main = psutil.Process(pid)
        total = 0.0
        for process in [main, *main.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total
    except psutil.Error:
        return None


class CpuMeter:
    """`with meter.measure() as cpu:` ... then `cpu.seconds` holds the CpuSeconds spent inside."""

    def __init__(self, url: str):
        self.pid = postmaster_pid(url)

    def now(self) -> CpuSeconds:
        return CpuSeconds(client_cpu(), process_tree_cpu(self.pid))

    @contextlib.contextmanager
    def measure(self):
        box = _Box()
        before = self.now()
        try:
            yield box
        finally:
            box.seconds = self.now() - before


class _Box:
    seconds: CpuSeconds = CpuSeconds(0.0, None)
