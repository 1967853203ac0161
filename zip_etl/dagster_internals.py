"""The Dagster internals zip_etl relies on, all in this one module.

Dagster's public API does not cover these needs; each use below says why it is needed, and
`zip_etl_tests/test_dagster_internals.py` holds a contract test per use that fails loudly when a
Dagster upgrade changes what zip_etl relies on (and, where zip_etl takes a faster path than
Dagster's public one, proves that both paths store the same thing).

1. Tag names Dagster reads and writes (partition, partition range, backfill, data provenance). The
   strings are Dagster's documented run and event tags; the constants are private.
2. Data provenance per partition: Dagster records one provenance for all partitions of a multi-
   partition Output, and derives a partition's stale status from the data-version tags on its latest
   event. zip_etl computes each partition's tags as Dagster does (`compute_logical_data_version`).
3. Asset events in one batch: `context.log_event` stores one event per INSERT; an Output's events
   are batched by Dagster, but carry the same tags for every partition. `batched_events` builds the
   DagsterEvents as `execute_step` does for an Output, with batch metadata.
4. Planned materializations stored in batches: dagster-postgres batches materializations and
   observations but stores ASSET_MATERIALIZATION_PLANNED events one connection each (~2,000 per
   2,000-partition run). `store_planned_events_batch` stores them the way dagster-postgres stores a
   batch of materializations, so the UI can show a run's partitions as materializing, then failed
   or materialized, at the cost of one INSERT.
5. Run monitoring's answer types (`CheckRunHealthResult`, `WorkerStatus`): no public export.
6. An instance from a folder of our choosing (`InstanceRef.from_dir`), for the zip-etl CLI.
7. The error of a failure event, from the structured metadata Dagster attaches to its log records
   (`dagster_meta`), so the terminal can show a Failure's one line (zip_etl/console_logger.py).
8. A run executed in an already-started process, as `dagster api execute_run` executes it (the
   arguments Dagster's launchers pass their run worker, and that command's body, which dagster-celery
   calls the same way), and what a warm process needs to know first: the module and folder of the
   run's code location, and the id of the code server it was launched from (zip_etl/warm_runs.py).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from typing import cast

import dagster as dg
from dagster._core.definitions.data_version import (
    CODE_VERSION_TAG,
    DATA_VERSION_TAG,
    INPUT_DATA_VERSION_TAG_PREFIX,
    NULL_EVENT_POINTER,
    compute_logical_data_version,
    get_input_data_version_tag,
    get_input_event_pointer_tag,
)
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

__all__ = [
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "BACKFILL_ID_TAG",
    "CODE_VERSION_TAG",
    "DATA_VERSION_TAG",
    "PARTITION_NAME_TAG",
    "RUN_EXECUTION_MODULES",
    "CheckRunHealthResult",
    "WorkerStatus",
    "batched_events",
    "code_server_id",
    "execute_run_args",
    "execute_run_in_this_process",
    "failure_description",
    "import_run_execution",
    "instance_from_folder",
    "logical_data_version",
    "provenance_tags",
    "run_code_location",
    "store_planned_events_batch",
]


# --- 2. data provenance ---


def logical_data_version(code_version: str, inputs: Mapping[dg.AssetKey, str]) -> str:
    """The data version Dagster gives an asset built by `code_version` from inputs of these versions."""
    return compute_logical_data_version(code_version, {k: dg.DataVersion(v) for k, v in inputs.items()}).value


def provenance_tags(input_key: dg.AssetKey, input_version: str, code_version: str) -> dict[str, str]:
    """The data-provenance tags Dagster writes on a materialization built by `code_version` from
    `input_version` of `input_key` (no event pointer: the input is an observed source)."""
    return {
        DATA_VERSION_TAG: logical_data_version(code_version, {input_key: input_version}),
        CODE_VERSION_TAG: code_version,
        get_input_data_version_tag(input_key, INPUT_DATA_VERSION_TAG_PREFIX): input_version,
        get_input_event_pointer_tag(input_key): NULL_EVENT_POINTER,
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


# --- 4. planned materializations stored in batches ---


def store_planned_events_batch(storage, events: Sequence) -> bool:
    """Store a batch of ASSET_MATERIALIZATION_PLANNED events of one asset as dagster-postgres stores a
    batch of materializations (one INSERT, the asset's index updated from the last event); False,
    storing nothing, for any other batch."""
    if not events:
        return False
    kinds = {event.get_dagster_event().event_type for event in events}
    keys = {event.get_dagster_event().asset_key for event in events}
    if kinds != {dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED} or len(keys) != 1:
        return False
    insert = storage.prepare_insert_event_batch(events)
    with storage._connect() as conn:  # noqa: SLF001
        ids = [cast("int", row[0]) for row in conn.execute(insert.returning(SqlEventLogStorageTable.c.id)).fetchall()]
    with storage.index_transaction() as conn:
        storage._store_asset_event_tags(conn, events, ids)  # noqa: SLF001
        storage._store_asset_event(conn, events[-1], ids[-1])  # noqa: SLF001
    return True


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
