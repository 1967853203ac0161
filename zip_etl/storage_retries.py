"""A retried connection to Dagster's storage, told in the event log of the run it was storing for.

dagster-postgres retries a connection that fails (a server restarting, a failover) up to five times,
about 11 s in all, and says so only as a warning of Python's root logger: on the stderr of whichever
process stored the event. A run whose events waited that long looked slow in the UI for no reason
it showed. Here each of those warnings is counted while an event store of zip_etl's event-log
storage runs (zip_etl/instance.py); once the store has succeeded, the storage answers again, and one
WARNING message per run is stored in that run's event log: how many connection attempts failed, over
how long, and why (the first line of each distinct error). A store that fails for good (the retries
ran out) raises as before, and its retries are told with the run's next stored event. The message is
stored by the storage itself, not through a logger, so it can never set off another retry report.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import dagster as dg

from zip_etl.dagster_internals import storage_connection_retry_cause

_watching = threading.local()  # the retries seen by this thread's innermost store: a list, or absent


class _RetryWatch(logging.Filter):
    """On the root logger, where dagster-postgres logs its retries: notes each one for the store that
    this thread is running, and lets every record through (a filter, not a handler: a handler on the
    root logger would stop `logging.warning` from configuring stderr output where nothing else has)."""

    def filter(self, record: logging.LogRecord) -> bool:
        seen = getattr(_watching, "seen", None)
        if seen is not None:
            cause = storage_connection_retry_cause(record)
            if cause is not None:
                seen.append((record.created, cause))
        return True


_WATCH = _RetryWatch()


def watch_storage_retries() -> None:
    """Install the root logger's filter once per process."""
    root = logging.getLogger()
    if _WATCH not in root.filters:
        root.addFilter(_WATCH)


@dataclass(frozen=True)
class _Untold:
    """Retries of one run's stores not told yet: failed attempts, since when, their distinct causes."""

    attempts: int
    since: float
    causes: tuple[str, ...]

    @classmethod
    def of(cls, seen: Sequence[tuple[float, str]]) -> _Untold:
        return cls(len(seen), seen[0][0], tuple(dict.fromkeys(cause for _, cause in seen)))

    def merged(self, other: _Untold | None) -> _Untold:
        if other is None:
            return self
        return _Untold(self.attempts + other.attempts, min(self.since, other.since),
                       tuple(dict.fromkeys((*other.causes, *self.causes))))


def retry_message(untold: _Untold, seconds: float) -> str:
    causes = "; then ".join(" ".join(cause.split()) for cause in untold.causes[:3])
    return (
        f"Storing this run's events waited {seconds:.1f} s for Dagster's storage (PostgreSQL): dagster-postgres "
        f"retried the connection {untold.attempts} time(s) (it gives up after 5 retries, about 11 s). Cause: {causes}"
    )


@contextmanager
def _collecting() -> Iterator[list[tuple[float, str]]]:
    """The connection retries this thread sees inside the block (an enclosing block sees none of them)."""
    outer = getattr(_watching, "seen", None)
    _watching.seen = seen = []
    try:
        yield seen
    finally:
        _watching.seen = outer


class RunLogRetries:
    """One event-log storage's untold retries, per run, and the store that tells them."""

    def __init__(self, store: Callable[[dg.EventLogEntry], None]):
        self._store = store  # stores one entry as the storage does, without telling anything
        self._untold: dict[str, _Untold] = {}
        self._lock = threading.Lock()

    @contextmanager
    def told_for(self, events: Sequence[dg.EventLogEntry]) -> Iterator[None]:
        """Around a store of `events`: the storage's connection retries inside it are told in the
        events' runs' logs once it has succeeded, or with those runs' next stored event if it fails."""
        runs = list(dict.fromkeys(e.run_id for e in events if e.run_id))
        with _collecting() as seen:
            try:
                yield
            finally:
                if seen:
                    for run_id in runs:
                        self._keep(run_id, _Untold.of(seen))
        if self._untold:
            for run_id in runs:
                self._tell(run_id, next(e for e in events if e.run_id == run_id))

    def _keep(self, run_id: str, untold: _Untold) -> None:
        with self._lock:
            self._untold[run_id] = untold.merged(self._untold.get(run_id))

    def _tell(self, run_id: str, event: dg.EventLogEntry) -> None:
        with self._lock:
            untold = self._untold.pop(run_id, None)
        if untold is None:
            return
        now = time.time()
        entry = dg.EventLogEntry(
            error_info=None, level=logging.WARNING, user_message=retry_message(untold, now - untold.since),
            run_id=run_id, timestamp=now, step_key=event.step_key, job_name=event.job_name, dagster_event=None,
        )
        with _collecting() as seen:  # its own retries are told with the run's next event, not now
            try:
                self._store(entry)
            except Exception:  # noqa: BLE001 - the storage went away again: told with the next event
                self._keep(run_id, untold)
        if seen:
            self._keep(run_id, _Untold.of(seen))
