"""Dagster's run, event and schedule storage on PostgreSQL (dagster-postgres), with zip_etl's defaults.

dagster.yaml names these classes so that `dagster dev`, the daemon, run workers and the CLI all
share one PostgreSQL-backed instance with nothing to set first: the URL comes from
``ZIP_ETL_DAGSTER_DATABASE_URL`` / ``ZIP_ETL_DATABASE_URL``, else from the embedded server, which
is started on demand. Credentials never appear in dagster.yaml.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import DagsterEventType, Field, StringSource
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from zip_etl import settings
from zip_etl.dagster_internals import (
    CheckRunHealthResult,
    WorkerStatus,
    asset_event_groups,
    asset_events_settled,
    code_server_id,
    execute_run_args,
    instance_from_folder,
    pool_storage_connections,
    run_code_location,
    settled_asset_status,
    store_asset_events,
    with_latest_planned_materialization,
)
from zip_etl.db.connection import (
    DagsterStorageError,
    DatabaseError,
    check_dagster_storage,
    dagster_database_url,
    sqlalchemy_url,
)
from zip_etl.run_event_watch import RunEventWatcher
from zip_etl.run_liveness import (
    Liveness,
    RunProcess,
    dead_process_message,
    how_it_ended,
    liveness,
    run_process,
    this_process_tag,
)
from zip_etl.storage_retries import RunLogRetries, watch_storage_retries
from zip_etl.warm_runs import Forked, WarmProcessError, WarmProcesses, WarmTarget, in_warm_run_worker

logger = logging.getLogger(__name__)

# Dagster's per-partition bookkeeping, not our data work, dominates a backfill of 41,749 small
# partitions (docs/BENCHMARKS.md). Dagster stores the events a run writes per partition (its planned
# materializations at run creation, its materializations) in batches only when
# DAGSTER_EVENT_BATCH_SIZE is set, and dagster-postgres batches only materializations and
# observations. Every process that loads this instance (webserver, daemon, run workers, CLI) builds
# its event-log storage first, so that is where the switch is set (unless the environment sets it)
# and where planned materializations are batched too (ZipEtlEventLogStorage).
EVENT_BATCH_SIZE = "1000"


def use_batched_event_writes() -> None:
    """Dagster's documented switch for batched event writes, on unless the environment sets it."""
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)


_CONFIG = {
    "postgres_url": Field(
        StringSource,
        is_required=False,
        description="Override the storage URL (prefer ZIP_ETL_DAGSTER_DATABASE_URL).",
    )
}


def _storage_url(config_value: Mapping[str, Any]) -> str:
    """The storage URL for dagster-postgres, after one quick connection that fails in one line
    naming the setting to fix (dagster-postgres would retry for ~14 s and end in a traceback)."""
    configured = config_value.get("postgres_url")
    setting = "postgres_url of the storage in dagster.yaml" if configured else settings.dagster_database_setting()
    try:
        url = configured or dagster_database_url()
    except DatabaseError as error:  # the embedded server could not be started or reached
        raise DagsterStorageError(str(error), retriable=error.retriable) from None
    check_dagster_storage(url, setting)
    return sqlalchemy_url(url)


_one_run_process = False


def this_process_runs_one_run() -> None:
    """Say that this process executes one run and exits (a pool worker of the zip-etl CLI, whose
    parent created Dagster's tables): its storages then keep their connections, as in a warm run worker."""
    global _one_run_process
    _one_run_process = True


def _storage(cls, config_value: Mapping[str, Any], inst_data):
    """One of dagster-postgres's storages at the configured URL.

    In a process that executes one run (a run worker forked from a warm process, a pool worker of
    the CLI) the storage keeps one connection for the run instead of opening one per call:
    dagster-postgres opens a connection per call (NullPool) so that processes creating many
    instances hold none, and here each costs ~5 ms and a server backend, dozens of times per run
    (docs/BENCHMARKS.md). The tables exist already (the daemon or the CLI that launched the run
    uses them), so the worker does not inspect them either. Each pooled connection is checked
    before use, so that one a server restart closed is replaced.
    """
    if not (in_warm_run_worker() or _one_run_process):
        return cls(postgres_url=_storage_url(config_value), inst_data=inst_data)
    storage = cls(postgres_url=_storage_url(config_value), inst_data=inst_data, should_autocreate_tables=False)
    pool_storage_connections(storage)
    return storage


# Dagster's documented run tag for the number of automatic retries of a run (docs: "Run retries").
MAX_RETRIES_TAG = "dagster/max_retries"


class ZipEtlRunStorage(PostgresRunStorage):
    """PostgresRunStorage that records, when a run starts, which process runs it (zip_etl/run_liveness.py).

    The run's start event is stored by the run's own process (the CLI's, a pool worker, the run
    worker a daemon or a Celery worker started), so that process names itself in the
    `zip_etl/process` tag; the tag is written before the status turns STARTED, so every STARTED run
    that has a process has its tag.
    """

    @classmethod
    def config_type(cls):
        return _CONFIG

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return _storage(cls, config_value, inst_data)

    def add_run(self, dagster_run):
        """A run that Dagster's run retries cannot re-launch is created with `dagster/max_retries: 0`,
        so that when it fails Dagster tags it `dagster/will_retry: false`, which is what happens.

        The retry daemon re-launches a failed run from its code location (its remote origin); a run of
        `dagster asset materialize` or of the zip-etl CLI has none, so the daemon only logs "Run does
        not have an external job origin, unable to retry the run", while Dagster had tagged the run
        `will_retry: true` from the instance's `max_retries` alone. Such a run is re-run by running its
        command again (the write is idempotent). A run that sets `dagster/max_retries` keeps its own.
        """
        if dagster_run.remote_job_origin is None and MAX_RETRIES_TAG not in dagster_run.tags:
            dagster_run = dagster_run.with_tags({**dagster_run.tags, MAX_RETRIES_TAG: "0"})
        return super().add_run(dagster_run)

    def handle_run_event(self, run_id, event, update_timestamp=None):
        if event.event_type == DagsterEventType.RUN_START and event.pid in (None, os.getpid()):
            try:
                self.add_run_tags(run_id, this_process_tag())
            except Exception:  # noqa: BLE001 - bookkeeping must never fail the run itself
                logger.warning("could not record the process of run %s", run_id, exc_info=True)
        super().handle_run_event(run_id, event, update_timestamp)


def local_run_health(run) -> CheckRunHealthResult:
    """Run monitoring's question, answered from the run's recorded process (zip_etl/run_liveness.py).

    FAILED only when the process is known dead on this machine. A run with no recorded process, or
    one on another machine, is reported RUNNING, i.e. "not known to be dead": Dagster's run
    monitoring marks a run failed on any other answer, and a live run must never be failed.
    """
    process = run_process(run)
    if process is None:
        return CheckRunHealthResult(WorkerStatus.RUNNING, "no process recorded for this run")
    state = liveness(process)
    if state is Liveness.DEAD:
        return CheckRunHealthResult(WorkerStatus.FAILED, dead_process_message(process.describe()))
    return CheckRunHealthResult(WorkerStatus.RUNNING, f"{process.describe()} is {state.value}")


# Set on a run before its process is forked from a warm process: terminate() signals that process.
RUN_WORKER_TAG = "zip_etl/run_worker"
WARM = "warm"
FRESH = "fresh"
# terminate() waits this long for a warm run's process to record itself (it does when the run starts).
TERMINATE_FIND_PROCESS_SECONDS = 10.0
# A terminated run whose process still runs after this long is killed (see ZipEtlRunLauncher.terminate).
TERMINATE_GRACE_SECONDS = 10.0


def warm_start_message(forked: Forked) -> str:
    """What the run's log says about where its process came from (and why it waited, if it did)."""
    warm = forked.parent
    imported_at = datetime.fromtimestamp(warm.started_at).strftime("%H:%M:%S")
    message = (f"Run worker pid {forked.pid} forked from the warm process of code location {warm.target.location} "
               f"(pid {warm.process.pid}, code imported at {imported_at}).")
    if warm.forked == 1:
        message += f" That warm process was started for this run: {warm.why}."
        if warm.failed_imports:
            message += " It could not import " + "; ".join(
                f"{name} ({error})" for name, error in warm.failed_imports.items()) + ": the run imports it itself."
    return message


class ZipEtlRunCoordinator(dg.QueuedRunCoordinator):
    """Dagster's run queue, with `dequeue_interval_seconds` in fractions of a second.

    Dagster's queue daemon takes its loop's interval from this setting, which QueuedRunCoordinator
    reads as whole seconds, and sleeps in steps of 0.5 s: at 1 s (the least it allows) a run
    launched from the UI waits in the queue 0-1 s before the daemon starts it; at 0.5 s, 0-0.5 s.
    A shorter interval changes nothing more, and costs one query on the runs table per loop.
    """

    def __init__(self, *args, dequeue_interval_seconds: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if dequeue_interval_seconds is not None:
            if dequeue_interval_seconds <= 0:
                raise dg.DagsterInvalidConfigError(
                    f"run_coordinator dequeue_interval_seconds in dagster.yaml must be above 0, not "
                    f"{dequeue_interval_seconds}", [], None)
            self._fractional_dequeue_interval = float(dequeue_interval_seconds)
        else:
            self._fractional_dequeue_interval = float(super().dequeue_interval_seconds)

    @classmethod
    def config_type(cls):
        fields = dict(super().config_type())
        fields["dequeue_interval_seconds"] = Field(
            float, is_required=False,
            description="Seconds between the queue daemon's checks for queued runs (Dagster's default: 5).")
        return fields

    @property
    def dequeue_interval_seconds(self) -> float:  # the daemon reads it; Dagster's returns an int
        return self._fractional_dequeue_interval


class ZipEtlRunLauncher(dg.DefaultRunLauncher):
    """Starts each run in a process forked from a warm process that has already imported Dagster,
    pandas, pyarrow and the run's code location (zip_etl/warm_runs.py); Dagster's DefaultRunLauncher
    (a fresh process started by the code server) when that cannot be done, with an engine event that
    says why. Answers run monitoring for every run on this machine, including those it did not launch
    (`dagster asset materialize`, the zip-etl CLI's pool): see `local_run_health`."""

    def __init__(self, inst_data=None, warm_processes: bool = True, preload_modules: Sequence[str] = ()):
        super().__init__(inst_data=inst_data)
        self._use_warm_processes = warm_processes
        self._preload_modules = tuple(preload_modules)
        self._warm: WarmProcesses | None = None
        self._warm_lock = threading.Lock()

    @classmethod
    def config_type(cls):
        return {
            "warm_processes": Field(
                bool, is_required=False, default_value=True,
                description="Fork runs from a warm process per code location (false: a fresh process per "
                            "run, Dagster's DefaultRunLauncher).",
            ),
            "preload_modules": Field(
                [str], is_required=False, default_value=[],
                description="Modules a warm process imports besides Dagster, the instance's storage and the "
                            "code location: what a run would otherwise import on first use.",
            ),
        }

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        return local_run_health(run)

    # -- launching ----------------------------------------------------------------------------
    def launch_run(self, context) -> None:
        run = context.dagster_run
        target = self._warm_target(run)
        if target is not None:
            try:
                self._launch_warm(run, target, context.workspace)
                return
            except WarmProcessError as error:
                self._instance.add_run_tags(run.run_id, {RUN_WORKER_TAG: FRESH})
                self._instance.report_engine_event(
                    f"Not started in a warm process: {error}. Starting the run in a fresh process, as "
                    "Dagster does.", run, cls=type(self))
        super().launch_run(context)

    def _warm_target(self, run) -> WarmTarget | None:
        """What to preload for `run`, or None when it cannot start warm: warm processes are off, the
        run has no code location, or its code location runs another Python environment."""
        if not self._use_warm_processes or run.remote_job_origin is None:
            return None
        module, working_directory, executable = run_code_location(run)
        if not executable or Path(executable).absolute().parent != Path(sys.executable).absolute().parent:
            return None
        storages = (self._instance.run_storage, self._instance.event_log_storage)
        return WarmTarget(
            location=run.remote_job_origin.location_name,
            module=module,
            preload_modules=tuple(dict.fromkeys([*(type(storage).__module__ for storage in storages),
                                                 *self._preload_modules])),
            working_directory=working_directory,
        )

    def _warm_processes(self) -> WarmProcesses:
        with self._warm_lock:
            if self._warm is None:
                self._warm = WarmProcesses(on_exit=self._run_worker_exited)
            return self._warm

    def _launch_warm(self, run, target: WarmTarget, workspace) -> None:
        self._instance.add_run_tags(run.run_id, {RUN_WORKER_TAG: WARM})
        forked = self._warm_processes().fork(
            target, code_server_id(workspace, target.location), run.run_id, execute_run_args(run, self._instance))
        self._run_ids.add(run.run_id)
        self._instance.report_engine_event(warm_start_message(forked), run, cls=type(self))

    def _run_worker_exited(self, run_id: str, pid: int, started: float, code: int) -> None:
        """A run worker forked from a warm process exited: if its run has not ended, it never will."""
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return
        process = run_process(run) or RunProcess.here(pid, started)
        message = dead_process_message(process.describe(), how_it_ended(code))
        if run.status == dg.DagsterRunStatus.CANCELING:
            self._instance.report_run_canceled(run, message)
        else:
            self._instance.report_run_failed(run, message)

    # -- terminating -----------------------------------------------------------------------------
    def terminate(self, run_id: str) -> bool:
        """A warm run's process gets SIGTERM, which `dagster api execute_run` turns into Dagster's
        interrupt: the run is canceled. Other runs go through the code server, as Dagster does.

        Dagster turns an interrupt that lands inside a step with a RetryPolicy into a retry of that
        step (`op_execution_error_boundary`: "respect retry policy when interrupts occur"), and
        cleaned_companies has one, so a run interrupted mid-step may go on. The signal is repeated
        every second (one landing between steps or during the retry's wait cancels the run), and a
        process still there after TERMINATE_GRACE_SECONDS is killed: the launcher that forked it then
        marks the run canceled, and its zip codes keep their previous rows (a write commits whole or
        not at all)."""
        run = self._instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            return False
        if run.tags.get(RUN_WORKER_TAG) != WARM:
            return super().terminate(run_id)
        self._instance.report_run_canceling(run)
        process = self._recorded_process(run_id)
        if process is None or liveness(process) is not Liveness.ALIVE:
            self._instance.report_engine_event(
                f"The run's process ({process.describe() if process else 'not recorded'}) cannot be signalled "
                f"from this machine; run monitoring marks the run canceled after its cancel timeout.",
                run, cls=type(self))
            return False
        os.kill(process.pid, signal.SIGTERM)
        threading.Thread(target=self._end_terminated_run, args=(run_id, process), daemon=True,
                         name=f"terminate-{run_id[:8]}").start()
        return True

    def _end_terminated_run(self, run_id: str, process: RunProcess) -> None:
        deadline = time.monotonic() + TERMINATE_GRACE_SECONDS
        while time.monotonic() < deadline:
            time.sleep(1.0)
            run = self._instance.get_run_by_id(run_id)
            if run is None or run.is_finished or liveness(process) is not Liveness.ALIVE:
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        self._instance.report_engine_event(
            f"The run's process ({process.describe()}) was still running {TERMINATE_GRACE_SECONDS:.0f} s after "
            "Terminate: killed.", run, cls=type(self))
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)

    def _recorded_process(self, run_id: str) -> RunProcess | None:
        """The run's process, once it has recorded itself (when the run starts), waiting a bounded time."""
        deadline = time.monotonic() + TERMINATE_FIND_PROCESS_SECONDS
        while True:
            run = self._instance.get_run_by_id(run_id)
            process = run_process(run) if run else None
            if process is not None or run is None or run.is_finished or time.monotonic() > deadline:
                return process
            time.sleep(0.2)

    def dispose(self) -> None:
        with self._warm_lock:
            if self._warm is not None:
                self._warm.close()
                self._warm = None
        super().dispose()


class ZipEtlEventLogStorage(PostgresEventLogStorage):
    """PostgresEventLogStorage that stores an asset's events in order, and reads an asset's partition
    status from one moment, so that the UI's partition statuses stay true while runs write (issue 27).

    - A batch of one asset's materializations, observations or planned materializations (Dagster
      plans one per partition when it creates a run) is stored in one INSERT and one transaction
      with the asset's record, under the asset's lock: the asset's events become visible in the
      order of their ids, each with its record. (dagster-postgres stores planned materializations one
      connection each, and an event and its record in two transactions.)
    - An asset's record carries its latest planned materialization, read with it (Dagster otherwise
      reads it later, from a newer state of the storage than the record's).
    - The partition status of an asset is computed while none of its events is being written.
    zip_etl/dagster_internals.py has the details; the contract tests show what Dagster relies on.

    A store that dagster-postgres had to retry (the server restarting) is told in the run's event
    log once it succeeds (zip_etl/storage_retries.py), not only on the process's stderr.

    The run page's live view gets a run's new events within 0.25 s until the run ends
    (zip_etl/run_event_watch.py); dagster-postgres's watcher slows to 1-2 s polls mid-run.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        watch_storage_retries()
        self._retries = RunLogRetries(super().store_event)
        self._run_event_watcher = RunEventWatcher(self)

    @classmethod
    def config_type(cls):
        return _CONFIG

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        use_batched_event_writes()
        return _storage(cls, config_value, inst_data)

    def store_event(self, event) -> None:
        with self._retries.told_for([event]):
            groups, _ = asset_event_groups([event])
            if groups:
                store_asset_events(self, [event])
            else:
                super().store_event(event)

    def store_event_batch(self, events) -> None:
        with self._retries.told_for(events):
            groups, rest = asset_event_groups(events)
            for group in groups:
                store_asset_events(self, group)
            if rest:
                super().store_event_batch(rest)

    def watch(self, run_id, cursor, callback) -> None:
        self._run_event_watcher.watch_run(run_id, cursor, callback)

    def end_watch(self, run_id, handler) -> None:
        self._run_event_watcher.unwatch_run(run_id, handler)

    def dispose(self) -> None:
        # As dagster-postgres's: its threads stop; a later watch starts a new watcher.
        self._run_event_watcher.close()
        self._run_event_watcher = RunEventWatcher(self)
        super().dispose()

    @property
    def asset_records_have_last_planned_and_failed_materializations(self) -> bool:
        return True

    def get_asset_records(self, asset_keys=None):
        keys = list(asset_keys) if asset_keys is not None else self.get_asset_keys()
        with asset_events_settled(self, [key.to_string() for key in keys]):
            planned = {key: self.get_latest_planned_materialization_info(key) for key in keys}
            records = super().get_asset_records(asset_keys)
        return [with_latest_planned_materialization(r, planned.get(r.asset_entry.asset_key)) for r in records]

    def get_asset_status_cache_values(self, partitions_defs_by_key, context):
        return [settled_asset_status(self, key, partitions_def, context) for key, partitions_def in partitions_defs_by_key]


class ZipEtlScheduleStorage(PostgresScheduleStorage):
    @classmethod
    def config_type(cls):
        return _CONFIG

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return _storage(cls, config_value, inst_data)


def get_instance():
    """The zip_etl Dagster instance: dagster.yaml from the project root, local files in ZIP_ETL_HOME.

    The CLI uses this so that its runs land in the same storage `dagster dev` shows.
    """
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    home = settings.home() / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    return instance_from_folder(str(home), config_dir=str(settings.project_root()))
