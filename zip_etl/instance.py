"""Dagster's run, event and schedule storage on PostgreSQL (dagster-postgres), with zip_etl's defaults.

dagster.yaml names these classes so that `dagster dev`, the daemon, run workers and the CLI all
share one PostgreSQL-backed instance with nothing to set first: the URL comes from
``ZIP_ETL_DAGSTER_DATABASE_URL`` / ``ZIP_ETL_DATABASE_URL``, else from the embedded server, which
is started on demand. Credentials never appear in dagster.yaml.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster import DagsterEventType, Field, StringSource
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from zip_etl import settings
from zip_etl.dagster_internals import (
    CheckRunHealthResult,
    WorkerStatus,
    instance_from_folder,
    store_planned_events_batch,
)
from zip_etl.db.connection import (
    DagsterStorageError,
    DatabaseError,
    check_dagster_storage,
    dagster_database_url,
    sqlalchemy_url,
)
from zip_etl.run_liveness import Liveness, dead_process_message, liveness, run_process, this_process_tag

logger = logging.getLogger(__name__)

# Dagster's per-partition bookkeeping, not our data work, dominates a backfill of 41,749 small
# partitions (docs/BENCHMARKS.md). Dagster stores the events a run writes per partition (its planned
# materializations at run creation, its materializations, zip_etl's provenance observations) in
# batches only when DAGSTER_EVENT_BATCH_SIZE is set, and dagster-postgres batches only
# materializations and observations. Every process that loads this instance (webserver, daemon, run
# workers, CLI) builds its event-log storage first, so that is where the switch is set (unless the
# environment sets it) and where planned materializations are batched too (ZipEtlEventLogStorage).
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
        return cls(postgres_url=_storage_url(config_value), inst_data=inst_data)

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
        return CheckRunHealthResult(WorkerStatus.FAILED, dead_process_message(run, process))
    return CheckRunHealthResult(WorkerStatus.RUNNING, f"{process.describe()} is {state.value}")


class ZipEtlRunLauncher(dg.DefaultRunLauncher):
    """Dagster's DefaultRunLauncher (runs in local processes started by the code server), which
    also answers run monitoring for every run on this machine, including those it did not launch
    (`dagster asset materialize`, the zip-etl CLI's pool): see `local_run_health`."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        return local_run_health(run)


class ZipEtlEventLogStorage(PostgresEventLogStorage):
    """PostgresEventLogStorage that also stores a run's planned materializations in one batch.

    Dagster plans one materialization per partition of a run; the UI derives a partition's
    "materializing" and "failed" status from them. dagster-postgres stores them one connection each
    (a 2,000-partition run spent most of its creation there), so zip_etl stores them the way
    dagster-postgres stores a batch of materializations (zip_etl/dagster_internals.py).
    """

    @classmethod
    def config_type(cls):
        return _CONFIG

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        use_batched_event_writes()
        return cls(postgres_url=_storage_url(config_value), inst_data=inst_data)

    def store_event_batch(self, events) -> None:
        if not store_planned_events_batch(self, events):
            super().store_event_batch(events)


class ZipEtlScheduleStorage(PostgresScheduleStorage):
    @classmethod
    def config_type(cls):
        return _CONFIG

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(postgres_url=_storage_url(config_value), inst_data=inst_data)


def get_instance():
    """The zip_etl Dagster instance: dagster.yaml from the project root, local files in ZIP_ETL_HOME.

    The CLI uses this so that its runs land in the same storage `dagster dev` shows.
    """
    if os.environ.get("DAGSTER_HOME"):
        return dg.DagsterInstance.get()
    home = settings.home() / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    return instance_from_folder(str(home), config_dir=str(settings.project_root()))
