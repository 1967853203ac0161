"""A run's new events reach the UI's run page within a quarter of a second while the run goes on.

The run page shows a run live from the webserver's log subscription, which takes a run's new events
from the event-log storage's watcher. dagster-postgres's watcher polls a run every 0.25 s but doubles
its wait after every poll that finds nothing, up to 16 s: a run whose asset step stores nothing for a
second is then polled every 1-2 s, and the page shows Success, or a partition materialized, that much
late (0.9 s after the run's end on average, `scripts/ui_latency.py`, docs/BENCHMARKS.md). This
watcher polls a run every 0.25 s until the run's end event is delivered, then backs off as Dagster's
does: after its end a run stores nothing more, except a retry's or a late engine event.

One thread per watched run, as Dagster's: a run page open in two tabs shares one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dagster import DagsterEventType

from zip_etl.dagster_internals import event_log_cursor, event_log_cursor_storage_id

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25
IDLE_POLL_MAX_SECONDS = 16.0
# Events read per query, as Dagster's watcher (DAGSTER_POLLING_EVENT_WATCHER_BATCH_SIZE' default).
EVENTS_PER_POLL = 1000
RUN_END_EVENTS = frozenset(
    {DagsterEventType.RUN_SUCCESS, DagsterEventType.RUN_FAILURE, DagsterEventType.RUN_CANCELED})

Callback = Callable[..., None]  # (EventLogEntry, cursor string) -> None


class RunEventWatcher:
    """What `EventLogStorage.watch` / `end_watch` / `dispose` need: watch a run's events from a
    cursor, stop a callback, stop everything."""

    def __init__(self, storage) -> None:
        self._storage = storage
        self._lock = threading.Lock()
        self._runs: dict[str, _RunPoller] = {}
        self._closed = False

    def watch_run(self, run_id: str, cursor: str | None, callback: Callback) -> None:
        after = event_log_cursor_storage_id(cursor) if cursor else None
        with self._lock:
            if self._closed:
                raise RuntimeError("the event-log storage was disposed; its watcher takes no new runs")
            poller = self._runs.get(run_id)
            if poller is None:
                poller = self._runs[run_id] = _RunPoller(self._storage, run_id)
                poller.start()
            poller.add(after, callback)

    def unwatch_run(self, run_id: str, callback: Callback) -> None:
        with self._lock:
            poller = self._runs.get(run_id)
            if poller is not None and poller.remove(callback):
                del self._runs[run_id]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pollers, self._runs = list(self._runs.values()), {}
        for poller in pollers:
            poller.stop.set()
        for poller in pollers:  # outside the lock: a callback may be calling unwatch_run
            if poller is not threading.current_thread():
                poller.join()


class _RunPoller(threading.Thread):
    def __init__(self, storage, run_id: str) -> None:
        super().__init__(name=f"zip-etl-run-events-{run_id}", daemon=True)
        self._storage = storage
        self._run_id = run_id
        self._callbacks: list[tuple[int | None, Callback]] = []
        self._callbacks_lock = threading.Lock()
        self.stop = threading.Event()

    def add(self, after: int | None, callback: Callback) -> None:
        with self._callbacks_lock:
            self._callbacks.append((after, callback))

    def remove(self, callback: Callback) -> bool:
        """Stops calling `callback`; True (and the thread ends) when no callback is left."""
        with self._callbacks_lock:
            self._callbacks = [entry for entry in self._callbacks if entry[1] != callback]
            if not self._callbacks:
                self.stop.set()
            return not self._callbacks

    def run(self) -> None:
        cursor, wait, ended = None, POLL_SECONDS, False
        while not self.stop.wait(wait):
            try:
                page = self._storage.get_records_for_run(self._run_id, cursor=cursor, limit=EVENTS_PER_POLL)
            except Exception:  # the storage restarting: the page catches up on a later poll
                logger.warning("reading run %s's new events failed; trying again", self._run_id, exc_info=True)
                wait = min(max(wait, POLL_SECONDS) * 2, IDLE_POLL_MAX_SECONDS)
                continue
            cursor = page.cursor
            with self._callbacks_lock:
                callbacks = list(self._callbacks)
            for record in page.records:
                ended = ended or record.event_log_entry.dagster_event_type in RUN_END_EVENTS
                for after, callback in callbacks:
                    if after is None or after < record.storage_id:
                        callback(record.event_log_entry, event_log_cursor(record.storage_id))
            wait = next_wait(wait, found=bool(page.records), more=page.has_more, run_ended=ended)


def next_wait(wait: float, *, found: bool, more: bool, run_ended: bool) -> float:
    """Seconds until the next poll: none while a page is left, a quarter of a second while the run
    goes on or events come, doubling after the run's end (Dagster's watcher doubles at any lull)."""
    if more:
        return 0.0
    if found or not run_ended:
        return POLL_SECONDS
    return min(max(wait, POLL_SECONDS) * 2, IDLE_POLL_MAX_SECONDS)
