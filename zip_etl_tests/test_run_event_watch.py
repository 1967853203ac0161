"""The run page's live view: a run's events reach the UI's subscription from the real storage, once each,
in order, after the page's cursor; polling stays at a quarter of a second until the run has ended."""

import queue
import threading
import time
import uuid

import dagster as dg
import pytest

from zip_etl.dagster_internals import event_log_cursor_storage_id
from zip_etl.instance import get_instance
from zip_etl.run_event_watch import IDLE_POLL_MAX_SECONDS, POLL_SECONDS, next_wait

WAIT = 30  # seconds for an event to arrive, however loaded the machine


def _watcher_threads(run_id: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"zip-etl-run-events-{run_id}" and t.is_alive()]


def _receive(events: queue.Queue, count: int) -> list[tuple[str, int, str]]:
    """(message, storage id, cursor) of the next `count` events handed to a page."""
    received = []
    for _ in range(count):
        entry, cursor = events.get(timeout=WAIT)
        received.append((entry.message, event_log_cursor_storage_id(cursor), cursor))
    return received


def test_the_run_page_gets_each_event_once_in_order_after_its_cursor(zip_etl_environment):
    with get_instance() as instance:
        run = instance.add_run(dg.DagsterRun(job_name="watched", run_id=str(uuid.uuid4())))
        instance.report_engine_event("before the page opened", run)
        first, second = queue.Queue(), queue.Queue()

        def on_first(entry, cursor):
            first.put((entry, cursor))

        def on_second(entry, cursor):
            second.put((entry, cursor))

        instance.watch_event_logs(run.run_id, None, on_first)
        assert len(_watcher_threads(run.run_id)) == 1
        (before,) = _receive(first, 1)
        assert before[0] == "before the page opened"

        # A second tab opened at the first event's cursor shares the thread and gets only what follows.
        instance.watch_event_logs(run.run_id, before[2], on_second)
        assert len(_watcher_threads(run.run_id)) == 1
        time.sleep(3 * POLL_SECONDS)  # quiet mid-run: Dagster's watcher would back off here
        instance.report_engine_event("mid-run", run)
        instance.report_run_failed(run)
        after_first = _receive(first, 2)
        after_second = _receive(second, 2)
        assert after_first == after_second
        assert after_first[0][0] == "mid-run"
        assert before[1] < after_first[0][1] < after_first[1][1]
        assert first.empty() and second.empty()

        instance.end_watch_event_logs(run.run_id, on_first)
        assert _watcher_threads(run.run_id)  # the second tab still watches
        instance.end_watch_event_logs(run.run_id, on_second)
        deadline = time.monotonic() + WAIT
        while _watcher_threads(run.run_id) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _watcher_threads(run.run_id)


def test_disposing_the_instance_stops_its_watch_threads(zip_etl_environment):
    with get_instance() as instance:
        run = instance.add_run(dg.DagsterRun(job_name="watched", run_id=str(uuid.uuid4())))
        instance.watch_event_logs(run.run_id, None, lambda *_: None)
        assert _watcher_threads(run.run_id)
    assert not _watcher_threads(run.run_id)


@pytest.mark.parametrize(
    ("wait", "found", "more", "run_ended", "expected"),
    [
        (POLL_SECONDS, False, False, False, POLL_SECONDS),  # a quiet run: keep polling
        (POLL_SECONDS * 8, False, False, False, POLL_SECONDS),
        (POLL_SECONDS, True, True, False, 0.0),  # a page left: read it now
        (POLL_SECONDS, True, False, True, POLL_SECONDS),  # events after the end still come fast
        (POLL_SECONDS, False, False, True, POLL_SECONDS * 2),  # after the end, back off
        (0.0, False, False, True, POLL_SECONDS * 2),
        (IDLE_POLL_MAX_SECONDS, False, False, True, IDLE_POLL_MAX_SECONDS),
    ],
)
def test_polling_slows_only_after_the_run_ended(wait, found, more, run_ended, expected):
    assert next_wait(wait, found=found, more=more, run_ended=run_ended) == expected
