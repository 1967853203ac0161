"""The Dagster internals zip_etl relies on, all in this one module.

Dagster's public API does not cover these needs; each use below says why it is needed, and
`zip_etl_tests/test_dagster_internals.py` holds a contract test per use that fails loudly when a
Dagster upgrade changes what zip_etl relies on (and, where zip_etl takes a faster path than
Dagster's public one, proves that both paths store the same thing).

1. Tag names Dagster reads and writes (partition, partition range, backfill, data provenance). The
   strings are Dagster's documented run and event tags; the constants are private.
2. Data provenance per partition: Dagster records one provenance for all partitions of a multi-
   partition Output, and derives a partition's stale status from the data-version tags on its latest
   materialization. zip_etl computes each partition's tags as Dagster does (`compute_logical_data_version`)
   and puts them on the partition's own materialization; the step's Output then carries none
   (`output_without_asset_events`), so that the steps after it (the checks) still run.
3. Asset events in one batch: `context.log_event` stores one event per INSERT; an Output's events
   are batched by Dagster, but carry the same tags for every partition. `batched_events` builds the
   DagsterEvents as `execute_step` does for an Output, with batch metadata.
4. An asset's events stored in order and its partition status read from one moment: dagster-postgres
   stores planned materializations one connection each (~2,000 per 2,000-partition run), and
   stores an event and its asset's record in two transactions with no order between writers, which
   Dagster's partition status cache needs (issue 27). `store_asset_events` stores a batch of one
   asset's events and its record in one transaction under the asset's lock; records carry the
   latest planned materialization read with them; `settled_asset_status` computes an asset's
   partition status while none of its events is being written.
5. Run monitoring's answer types (`CheckRunHealthResult`, `WorkerStatus`): no public export.
6. An instance from a folder of our choosing (`InstanceRef.from_dir`), for the zip-etl CLI.
7. The error of a failure event, from the structured metadata Dagster attaches to its log records
   (`dagster_meta`), so the terminal can show a Failure's one line (zip_etl/console_logger.py).
8. A run executed in an already-started process, as `dagster api execute_run` executes it (the
   arguments Dagster's launchers pass their run worker, and that command's body, which dagster-celery
   calls the same way), and what a warm process needs to know first: the module and folder of the
   run's code location, and the id of the code server it was launched from (zip_etl/warm_runs.py).
9. dagster-postgres's connection retries: it retries a failed connection to its storage
   (`retry_pg_connection_fn`) and reports each retry only as a root-logger warning, which
   zip_etl/storage_retries.py recognises to tell it in the run's event log; and its pooled engine
   (`_engine` after `optimize_for_webserver`), whose connections zip_etl checks before use.
10. Event-log cursors (`EventLogCursor`): the run page's live view hands the storage's watcher a
   cursor string and takes one back with each event; zip_etl's watcher (zip_etl/run_event_watch.py)
   reads and writes them as Dagster's does.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import cast

import dagster as dg
import psycopg2
import sqlalchemy
import sqlalchemy.event
import sqlalchemy.exc
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    INPUT_DATA_VERSION_TAG_PREFIX,
    NULL_EVENT_POINTER,
    compute_logical_data_version,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)
from dagster._core.definitions.source_asset import SYSTEM_METADATA_KEY_SOURCE_ASSET_OBSERVATION
from dagster._core.event_api import EventLogCursor
from dagster._core.events import DagsterEvent, DagsterEventBatchMetadata, generate_event_batch_id
from dagster._core.instance.ref import InstanceRef
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    BACKFILL_ID_TAG,
    PARTITION_NAME_TAG,
)
from dagster_shared.record import copy as record_copy
from sqlalchemy import text

__all__ = [
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "BACKFILL_ID_TAG",
    "CODE_VERSION_TAG",
    "DATA_VERSION_TAG",
    "PARTITION_NAME_TAG",
    "RUN_EXECUTION_MODULES",
    "STORED_IN_ORDER",
    "CheckRunHealthResult",
    "WorkerStatus",
    "asset_event_groups",
    "asset_events_settled",
    "batched_events",
    "code_server_id",
    "execute_run_args",
    "execute_run_in_this_process",
    "failure_description",
    "import_run_execution",
    "instance_from_folder",
    "logical_data_version",
    "output_without_asset_events",
    "pool_storage_connections",
    "provenance_tags",
    "run_code_location",
    "settled_asset_status",
    "storage_connection_retry_cause",
    "store_asset_events",
    "with_latest_planned_materialization",
]


# --- 2. data provenance ---


def logical_data_version(code_version: str, inputs: Mapping[dg.AssetKey, str]) -> str:
    """The data version Dagster gives an asset built by `code_version` from inputs of these versions."""
    return compute_logical_data_version(code_version, {k: dg.DataVersion(v) for k, v in inputs.items()}).value


def provenance_tags(input_key: dg.AssetKey, input_version: str, code_version: str,
                    input_event: int | None = None) -> dict[str, str]:
    """The data-provenance tags Dagster writes on a materialization built by `code_version` from
    `input_version` of `input_key`, whose latest event then was `input_event` (its storage id; None:
    it had none). Dagster's stale status takes a partition's input as changed when an event of the
    input's partition after that one has another data version."""
    return {
        DATA_VERSION_TAG: logical_data_version(code_version, {input_key: input_version}),
        CODE_VERSION_TAG: code_version,
        get_input_data_version_tag(input_key, INPUT_DATA_VERSION_TAG_PREFIX): input_version,
        get_input_event_pointer_tag(input_key): str(input_event) if input_event is not None else NULL_EVENT_POINTER,
    }


# --- 3. asset events in one batch ---


def batched_events(
    context: dg.OpExecutionContext | dg.AssetExecutionContext,
    events: Sequence[dg.AssetMaterialization | dg.AssetObservation],
) -> list[DagsterEvent]:
    """`events` as DagsterEvents of one batch (one INSERT per DAGSTER_EVENT_BATCH_SIZE events).

    Yield them from the compute function: Dagster passes DagsterEvents yielded by a compute function
    through to the run's event stream. (Creating them also logs them to the instance; a compute
    function that cannot yield, an observable source asset's, relies on that: see the contract test.)
    """
    op_context = context.op_execution_context if isinstance(context, dg.AssetExecutionContext) else context
    step_context = op_context.get_step_execution_context()
    batch_id = generate_event_batch_id()
    last = len(events) - 1
    out = []
    for i, event in enumerate(events):
        batch = DagsterEventBatchMetadata(batch_id, i == last)
        if isinstance(event, dg.AssetMaterialization):
            out.append(DagsterEvent.asset_materialization(step_context, event, batch))
        else:
            out.append(DagsterEvent.asset_observation(step_context, event, batch))
    return out


def output_without_asset_events() -> dg.MaterializeResult:
    """The step's output, for the steps that depend on it (the checks: without it Dagster skips them),
    with none of the materializations Dagster would make of it: the step has yielded each partition's
    own (`batched_events`), with its provenance, which an Output would overwrite with one for all.

    Dagster makes no asset events of an Output whose metadata has this key: its auto-converted
    observable source assets log their events from their body, as this step does
    (`_log_materialization_or_observation_events_for_asset`). The run's log shows the key on the
    step's output event."""
    return dg.MaterializeResult(metadata={SYSTEM_METADATA_KEY_SOURCE_ASSET_OBSERVATION: True})


# --- 4. an asset's events stored in order, its partition status read from one moment ---

# The advisory lock of one asset's events in Dagster's storage: (hashtext of this, hashtext of the key).
ASSET_EVENTS_LOCK = "zip_etl: asset events"
# A lock that cannot be had in this long fails the statement instead of waiting forever.
ASSET_EVENTS_LOCK_TIMEOUT = "60s"
# The events zip_etl stores itself (dagster-postgres stores planned materializations one INSERT each).
STORED_IN_ORDER = frozenset({
    dg.DagsterEventType.ASSET_MATERIALIZATION,
    dg.DagsterEventType.ASSET_OBSERVATION,
    dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
})
# The asset keys whose lock this thread holds (shared) while it reads their status.
_settled: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar("zip_etl_settled_assets", default=frozenset())


def asset_event_groups(events: Sequence) -> tuple[list[list], list]:
    """`events` (EventLogEntry) split into the groups zip_etl stores itself, one per asset key in the
    order they came, and the rest (left to dagster-postgres)."""
    groups: dict[dg.AssetKey, list] = {}
    rest = []
    for event in events:
        dagster_event = event.dagster_event
        if dagster_event is not None and dagster_event.event_type in STORED_IN_ORDER and dagster_event.asset_key:
            groups.setdefault(dagster_event.asset_key, []).append(event)
        else:
            rest.append(event)
    return list(groups.values()), rest


def _lock_asset_events(conn, keys: Sequence[str], *, shared: bool) -> None:
    """Take the advisory locks of `keys`' events in this transaction, in one order for every caller
    (so that two of them never wait on each other)."""
    function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(text(f"SET LOCAL lock_timeout = '{ASSET_EVENTS_LOCK_TIMEOUT}'"))
    conn.execute(
        text(f"SELECT {function}(hashtext(:namespace), hashtext(k)) FROM unnest(CAST(:keys AS text[])) AS k ORDER BY k"),
        {"namespace": ASSET_EVENTS_LOCK, "keys": sorted(set(keys))},
    )


def store_asset_events(storage, events: Sequence) -> list[int]:
    """Store events of ONE asset (materializations, observations, planned materializations) as
    dagster-postgres stores a batch of materializations (one INSERT, the indexed tags, the asset's
    record from the latest event of each kind), in ONE transaction that holds the asset's lock.

    Dagster's partition status cache (`get_and_update_asset_status_cache_value`) reads an asset's
    record, then its events after a cursor; it is exact only if the asset's events become visible in
    storage-id order, each with its record. dagster-postgres inserts the events, then updates the
    record in a second transaction, with no order between writers: a reader could see a run's planned
    events (later ids) while the record still lacked another run's materializations (earlier ids),
    move its cursor past them and never count those partitions materialized (issue 27)."""
    key = events[0].get_dagster_event().asset_key.to_string()
    insert = storage.prepare_insert_event_batch(events)
    with storage.index_transaction() as conn:
        _lock_asset_events(conn, [key], shared=False)
        ids = [cast("int", row[0]) for row in conn.execute(insert.returning(SqlEventLogStorageTable.c.id)).fetchall()]
        storage._store_asset_event_tags(conn, events, ids)  # noqa: SLF001
        latest = {event.get_dagster_event().event_type: (event, event_id) for event, event_id in zip(events, ids)}
        for event, event_id in sorted(latest.values(), key=lambda pair: pair[1]):
            storage._store_asset_event(conn, event, event_id)  # noqa: SLF001
    return ids


@contextlib.contextmanager
def asset_events_settled(storage, keys: Sequence[str]) -> Iterator[None]:
    """Inside, no write of `keys`' events is in flight and none begins (their locks, shared, on a
    connection of their own). A thread that holds them already does not ask again: its request would
    queue behind a waiting writer that waits on this very thread."""
    wanted = frozenset(keys) - _settled.get()
    if not wanted:
        yield
        return
    with storage.index_transaction() as conn:
        _lock_asset_events(conn, list(wanted), shared=True)
        token = _settled.set(_settled.get() | wanted)
        try:
            yield
        finally:
            _settled.reset(token)


def with_latest_planned_materialization(record, planned):
    """`record` (an AssetRecord) carrying its asset's latest planned materialization (storage id and run),
    as Dagster's status cache reads it when the storage says its records have it."""
    entry = record_copy(
        record.asset_entry,
        last_planned_materialization_storage_id=planned.storage_id if planned else None,
        last_planned_materialization_run_id=planned.run_id if planned else None,
    )
    return record_copy(record, asset_entry=entry)


def settled_asset_status(storage, key: dg.AssetKey, partitions_def, context):
    """Dagster's partition status of `key` (its AssetStatusCacheValue, updated in storage), computed
    while none of the asset's events is being written, from its record read then: every query of the
    computation sees the same events. (Through the webserver's loading context the record may have
    been read earlier in the request: events written since would count as done in one query and not
    yet in another, and the partition would show as missing.)"""
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
    from dagster._core.workspace.context import BaseWorkspaceRequestContext

    loader = context.dynamic_partitions_loader if isinstance(context, BaseWorkspaceRequestContext) else None
    with asset_events_settled(storage, [key.to_string()]):
        return get_and_update_asset_status_cache_value(
            storage._instance, key, partitions_def, dynamic_partitions_loader=loader  # noqa: SLF001
        )


# --- 6. an instance from a folder ---


def instance_from_folder(home: str, config_dir: str) -> dg.DagsterInstance:
    """The instance whose dagster.yaml is in `config_dir` and whose local files go to `home`."""
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(home, config_dir=config_dir))


# --- 7. a failure event's error, from a log record ---


def failure_description(record: logging.LogRecord) -> str | None:
    """The description of the `dg.Failure` a failure event's log record carries, if it carries one."""
    meta = getattr(record, "dagster_meta", None)
    event = meta.get("dagster_event") if isinstance(meta, dict) else None
    error = getattr(getattr(event, "event_specific_data", None), "error", None)
    if error is None or getattr(error, "cls_name", None) != "Failure" or not error.message:
        return None
    first, _, rest = error.message.strip().partition(": ")  # "dagster...Failure: <description>"
    return (rest or first).strip()


# --- 8. a run executed in an already-started process ---


def execute_run_args(run: dg.DagsterRun, instance: dg.DagsterInstance) -> str:
    """The serialized argument of `dagster api execute_run` for `run`: what Dagster's launchers that
    start a process per run (docker, k8s, celery) hand their run worker."""
    from dagster._grpc.types import ExecuteRunArgs

    return dg.serialize_value(ExecuteRunArgs(
        job_origin=run.job_code_origin, run_id=run.run_id, instance_ref=instance.get_ref(),
        set_exit_code_on_failure=True,
    ))


# What `dagster api execute_run` imports on first use, beyond `import dagster` (the modules a run
# worker forked from a process that had imported only Dagster and the code location imported itself,
# Dagster 1.13.27): a warm process imports them once instead of every run.
RUN_EXECUTION_MODULES = (
    "dagster._cli.api",
    "dagster._core.definitions.external_asset",
    "dagster._core.definitions.repository_definition.repository_data_builder",
    "dagster._core.execution.plan.active",
    "dagster._core.executor.in_process",
    "dagster._core.instance.factory",
    "dagster._core.storage.legacy_storage",
    "dagster._core.storage.local_compute_log_manager",
    "dagster._core.storage.root",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.system_config.composite_descent",
    "dagster._core.utility_ops",
    "dagster._core.workspace.autodiscovery",
    "dagster._utils.temp_file",
    "dagster._utils.test.definitions",  # read by the code pointer when it loads the definitions
    "upath.implementations.local",  # the instance's state storage path
    "watchdog.observers.polling",  # the compute log manager
)


def import_run_execution() -> None:
    """Import what executing a run imports on first use (so that a warm process holds it)."""
    for name in RUN_EXECUTION_MODULES:
        importlib.import_module(name)


def execute_run_in_this_process(serialized_args: str) -> int:
    """Execute a run in this process exactly as `dagster api execute_run ARGS` does (its interrupt
    handling, its instance from the arguments' instance ref, its engine events); the exit code."""
    from dagster._cli.api import execute_run_command

    try:
        execute_run_command.main(args=[serialized_args], prog_name="dagster api execute_run", standalone_mode=False)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    return 0


def run_code_location(run: dg.DagsterRun) -> tuple[str | None, str | None, str | None]:
    """(module, working directory, Python executable) of the code location that `run` executes: the
    module is None for code loaded from a file; all None for a run without a Python origin."""
    origin = run.job_code_origin
    if origin is None:
        return None, None, None
    repository = origin.repository_origin
    pointer = repository.code_pointer
    return getattr(pointer, "module", None), getattr(pointer, "working_directory", None), repository.executable_path


def code_server_id(workspace, location_name: str) -> str | None:
    """The id of the code server that serves `location_name` in `workspace` (a run launcher's
    LaunchRunContext.workspace); it changes when the location is reloaded. None if not served by one."""
    from dagster._core.remote_representation.code_location import GrpcServerCodeLocation

    if workspace is None:
        return None
    try:
        location = workspace.get_code_location(location_name)
    except Exception:  # noqa: BLE001 - a location that fails to load has no server id
        return None
    return location.server_id if isinstance(location, GrpcServerCodeLocation) else None


# --- 9. dagster-postgres's connection retries ---

# What dagster_postgres.utils.retry_pg_connection_fn logs (through the root logger) before each retry.
STORAGE_RETRY_MESSAGE = "Retrying failed database connection: %s"


def storage_connection_retry_cause(record: logging.LogRecord) -> str | None:
    """The first line of the error if `record` is dagster-postgres's warning that it retries a
    failed connection to its storage; None for any other record."""
    if record.funcName != "retry_pg_connection_fn" or record.msg != STORAGE_RETRY_MESSAGE or not record.args:
        return None
    error = record.args[0] if isinstance(record.args, tuple) else record.args
    message = str(error).strip()
    return message.splitlines()[0] if message else type(error).__name__


def pool_storage_connections(storage) -> None:
    """dagster-postgres's storage keeping its connections open (`optimize_for_webserver`, as in the
    webserver) with each connection checked as it is taken from the pool: one that the server closed
    (a restart, a failover) is replaced by a new one, and a new one that cannot be had fails inside
    dagster-postgres's connection retry. dagster-postgres's pool has no such check: after a restart
    the next call failed at once ("server closed the connection unexpectedly"), with no retry."""
    storage.optimize_for_webserver(statement_timeout=0, pool_recycle=-1, max_overflow=4)
    sqlalchemy.event.listen(storage._engine, "checkout", _ping_pooled_connection)  # noqa: SLF001


def _ping_pooled_connection(dbapi_connection, _record, _proxy) -> None:
    """SQLAlchemy's pool discards a connection whose checkout raises DisconnectionError and takes a new one."""
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        if not dbapi_connection.autocommit:
            dbapi_connection.rollback()
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
        raise sqlalchemy.exc.DisconnectionError(str(error).strip()) from error


# --- 10. Event-log cursors ---


def event_log_cursor(storage_id: int) -> str:
    """The cursor string Dagster gives the run page's live view with the event stored as `storage_id`."""
    return str(EventLogCursor.from_storage_id(storage_id))


def event_log_cursor_storage_id(cursor: str) -> int:
    """The storage id a cursor string points after; Dagster's watchers refuse offset cursors too."""
    parsed = EventLogCursor.parse(cursor)
    if parsed.is_offset_cursor():
        raise ValueError(f"an offset cursor cannot be watched: {cursor}")
    return parsed.storage_id()
