"""Contract tests for zip_etl/dagster_internals.py: each fails loudly when a Dagster upgrade changes what
zip_etl relies on, and where zip_etl takes a faster path than Dagster's public one, each shows that
both paths store the same thing."""

import logging
import os
import uuid

import dagster as dg
import pytest

from zip_etl import dagster_internals as internals
from zip_etl.partitions import ZIP_CODES, zip_code_partitions


def test_tag_names_are_the_documented_strings():
    assert internals.PARTITION_NAME_TAG == "dagster/partition"
    assert internals.ASSET_PARTITION_RANGE_START_TAG == "dagster/asset_partition_range_start"
    assert internals.ASSET_PARTITION_RANGE_END_TAG == "dagster/asset_partition_range_end"
    assert internals.BACKFILL_ID_TAG == "dagster/backfill"
    assert internals.DATA_VERSION_TAG == "dagster/data_version"
    assert internals.CODE_VERSION_TAG == "dagster/code_version"


def test_provenance_tags_are_the_ones_dagster_writes_for_a_materialization():
    """Dagster's own path, on an asset with one observed source: the same tags, the data version
    zip_etl computes from the same code version and input version and the pointer at the input's
    observation included."""

    @dg.observable_source_asset(name="upstream")
    def upstream():
        return dg.DataVersion("12-abc")

    @dg.asset(deps=[upstream], code_version="v7")
    def built():
        return None

    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(
        dg.AssetObservation(asset_key=upstream.key, tags={internals.DATA_VERSION_TAG: "12-abc"}))
    result = dg.materialize([upstream, built], selection=[built], instance=instance)
    tags = result.get_asset_materialization_events()[0].materialization.tags
    source_version = tags["dagster/input_data_version/upstream"]
    assert source_version == "12-abc"
    observation = instance.fetch_observations(upstream.key, limit=1).records[0].storage_id
    ours = internals.provenance_tags(upstream.key, source_version, "v7", observation)
    assert ours == {k: v for k, v in tags.items() if k.startswith("dagster/") and k != "dagster/data_version_is_user_provided"}
    assert internals.provenance_tags(upstream.key, source_version, "v7")["dagster/input_event_pointer/upstream"] == "NULL"
    assert ours[internals.CODE_VERSION_TAG] == tags[internals.CODE_VERSION_TAG] == "v7"
    assert internals.logical_data_version("v8", {upstream.key: source_version}) != ours[internals.DATA_VERSION_TAG]


PARTITIONS = dg.StaticPartitionsDefinition(["a", "b", "c"])


def _stored(instance, key, event_type):
    records = instance.fetch_materializations(key, limit=100) if event_type == "m" else \
        instance.fetch_observations(key, limit=100)
    return sorted(
        (r.partition_key, dict(r.event_log_entry.dagster_event.event_specific_data.__getattribute__(
            "materialization" if event_type == "m" else "asset_observation").tags or {}),
         {k: v.value for k, v in (r.asset_materialization or r.asset_observation).metadata.items()})
        for r in records.records
    )


def test_batched_events_store_what_log_event_stores(monkeypatch):
    """The same events, one asset logging them one by one (public), the other in one batch."""
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "1000")
    events = lambda key: [  # noqa: E731
        dg.AssetMaterialization(asset_key=key, partition=p, metadata={"rows": i}, tags={"zip_etl/k": p})
        for i, p in enumerate(PARTITIONS.get_partition_keys())
    ] + [dg.AssetObservation(asset_key=key, partition=p, tags={internals.DATA_VERSION_TAG: f"v-{p}"})
         for p in PARTITIONS.get_partition_keys()]

    @dg.asset(partitions_def=PARTITIONS, output_required=False)
    def one_by_one(context: dg.AssetExecutionContext):
        yield from events(context.asset_key)  # what context.log_event does, one event per INSERT

    @dg.asset(partitions_def=PARTITIONS, output_required=False)
    def batched(context: dg.AssetExecutionContext):
        yield from internals.batched_events(context, events(context.asset_key))

    instance = dg.DagsterInstance.ephemeral()
    for asset in (one_by_one, batched):
        dg.materialize([asset], instance=instance, tags={internals.ASSET_PARTITION_RANGE_START_TAG: "a",
                                                         internals.ASSET_PARTITION_RANGE_END_TAG: "c"})
    for kind in ("m", "o"):
        assert _stored(instance, one_by_one.key, kind) == _stored(instance, batched.key, kind) != []
    assert instance.get_materialized_partitions(batched.key) == {"a", "b", "c"}


def test_an_output_without_asset_events_adds_none_and_the_checks_after_it_run():
    """cleaned_companies yields each partition's materialization with its own provenance, then an
    output without asset events: Dagster must store exactly those materializations (an Output's
    would carry one provenance for every partition, and come after ours), and still run the step
    that checks the asset (a step whose input was never output is skipped)."""

    @dg.asset(partitions_def=PARTITIONS, output_required=False)
    def built(context: dg.AssetExecutionContext):
        yield from internals.batched_events(context, [
            dg.AssetMaterialization(asset_key=context.asset_key, partition=p, metadata={"rows": i},
                                    tags={internals.DATA_VERSION_TAG: f"v-{p}"})
            for i, p in enumerate(context.partition_keys)
        ])
        yield internals.output_without_asset_events()

    @dg.asset_check(asset=built)
    def looked_at() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=True)

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([built, looked_at], instance=instance, tags={
        internals.ASSET_PARTITION_RANGE_START_TAG: "a", internals.ASSET_PARTITION_RANGE_END_TAG: "c"})
    assert result.success
    assert _stored(instance, built.key, "m") == [
        (p, {internals.DATA_VERSION_TAG: f"v-{p}"}, {"rows": i}) for i, p in enumerate(("a", "b", "c"))]
    assert [e.check_name for e in result.get_asset_check_evaluations()] == ["looked_at"]
    assert instance.get_materialized_partitions(built.key) == {"a", "b", "c"}


def test_batched_events_are_stored_when_built_without_being_yielded():
    """An observable source asset's function cannot yield events: raw_companies relies on Dagster
    logging a DagsterEvent when it is built. If that stops, its observations would vanish silently."""

    @dg.observable_source_asset(partitions_def=PARTITIONS)
    def observed(context: dg.OpExecutionContext):
        internals.batched_events(context, [
            dg.AssetObservation(asset_key=context.asset_key, partition=p, tags={internals.DATA_VERSION_TAG: f"v-{p}"})
            for p in ("a", "c")
        ])
        return dg.DataVersionsByPartition({})

    instance = dg.DagsterInstance.ephemeral()
    job = dg.Definitions(assets=[observed]).resolve_implicit_global_asset_job_def()
    job.execute_in_process(instance=instance, partition_key="a")
    assert {r.partition_key for r in instance.fetch_observations(observed.key, limit=10).records} == {"a", "c"}


def test_planned_events_in_one_batch_are_stored_as_dagster_stores_them_one_by_one(fresh_dagster_storage, monkeypatch):
    """ZipEtlEventLogStorage stores a run's planned materializations in one batch, also when Dagster's
    batch mixes them with the planned evaluations of the asset's checks (a run of fewer partitions
    than DAGSTER_EVENT_BATCH_SIZE); the rows are those dagster-postgres writes one event at a time, and
    the UI's partition status reads them: in progress while the run executes, failed for the
    partitions a failed run did not write."""
    from sqlalchemy import text

    from zip_etl.instance import ZipEtlEventLogStorage, get_instance

    statements = []
    real = internals.store_asset_events

    def spy(storage, events):
        statements.append({e.get_dagster_event().event_type_value for e in events} | {len(events)})
        return real(storage, events)

    monkeypatch.setattr("zip_etl.instance.store_asset_events", spy)
    keys = ZIP_CODES[:300]
    seen_in_progress = []

    @dg.asset(name="planned", partitions_def=zip_code_partitions, output_required=False)
    def planned(context: dg.AssetExecutionContext):
        seen_in_progress.append(_status(context.instance, context.asset_key)[2])
        good = list(context.partition_keys)[:100]
        yield from internals.batched_events(context, [dg.AssetMaterialization(asset_key=context.asset_key, partition=p)
                                                      for p in good])
        raise dg.Failure("the other 200 failed", allow_retries=False)

    @dg.asset_check(asset=planned)
    def planned_check():
        return dg.AssetCheckResult(passed=True)

    with get_instance() as instance:
        assert isinstance(instance.event_log_storage, ZipEtlEventLogStorage)
        result = dg.materialize([planned, planned_check], instance=instance, raise_on_error=False,
                                tags={internals.ASSET_PARTITION_RANGE_START_TAG: keys[0],
                                      internals.ASSET_PARTITION_RANGE_END_TAG: keys[-1]})
        assert not result.success
        assert {"ASSET_MATERIALIZATION_PLANNED", 300} in statements  # one statement for the 300
        assert seen_in_progress == [set(keys)]
        materialized, failed, in_progress = _status(instance, planned.key)
        assert materialized == set(keys[:100]) and failed == set(keys[100:]) and not in_progress

        # The rows as Dagster's own one-by-one path writes them, for the same kind of event.
        with instance.event_log_storage.index_connection() as conn:
            ours = conn.execute(text(
                "SELECT dagster_event_type, asset_key, partition, run_id FROM event_logs "
                "WHERE dagster_event_type = 'ASSET_MATERIALIZATION_PLANNED' AND partition IS NOT NULL ORDER BY partition"
            )).fetchall()
        event = next(e for e in instance.all_logs(result.run_id) if e.dagster_event and
                     e.dagster_event.event_type_value == "ASSET_MATERIALIZATION_PLANNED")
        super(ZipEtlEventLogStorage, instance.event_log_storage).store_event(event)  # Dagster's own path
        with instance.event_log_storage.index_connection() as conn:
            theirs = conn.execute(text(
                "SELECT dagster_event_type, asset_key, partition, run_id FROM event_logs "
                "WHERE dagster_event_type = 'ASSET_MATERIALIZATION_PLANNED' AND partition = :p ORDER BY id DESC LIMIT 1"
            ), {"p": event.dagster_event.event_specific_data.partition}).fetchall()
        assert len(ours) == 300 and theirs[0] in ours
        checks = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED)
        assert len(checks) == 1  # left to dagster-postgres, stored all the same


def _status(instance, key, partitions_def=zip_code_partitions):
    from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value

    return _subsets(get_and_update_asset_status_cache_value(instance, key, partitions_def), partitions_def)


def _subsets(value, partitions_def):
    return tuple(
        set(subset.get_partition_keys()) for subset in (
            value.deserialize_materialized_partition_subsets(partitions_def),
            value.deserialize_failed_partition_subsets(partitions_def),
            value.deserialize_in_progress_partition_subsets(partitions_def),
        )
    )


def test_asset_event_groups_keep_each_assets_events_in_order_and_leave_the_rest():
    from dagster._core.events import AssetMaterializationPlannedData, DagsterEvent, EngineEventData
    from dagster._core.events.log import EventLogEntry

    def entry(asset, partition=None):
        event = (DagsterEvent.build_asset_materialization_planned_event(
            "job", "step", AssetMaterializationPlannedData(dg.AssetKey(asset), partition=partition))
            if asset else DagsterEvent(dg.DagsterEventType.ENGINE_EVENT.value, "job",
                                       event_specific_data=EngineEventData()))
        return EventLogEntry(user_message="", level=10, job_name="job", run_id="r", error_info=None,
                             timestamp=0.0, dagster_event=event)

    events = [entry("a", "1"), entry("b", "1"), entry(None), entry("a", "2")]
    groups, rest = internals.asset_event_groups(events)
    assert groups == [[events[0], events[3]], [events[1]]] and rest == [events[2]]


def _plain_dagster_instance(pg_server_url, tmp_path, name):
    """An instance on dagster-postgres's own storage, in a database of its own."""
    from zip_etl.db.connection import ensure_database, sqlalchemy_url

    url = ensure_database(pg_server_url, name)
    (tmp_path / "dagster.yaml").write_text(f"storage:\n  postgres:\n    postgres_url: \"{sqlalchemy_url(url)}\"\n"
                                           "telemetry:\n  enabled: false\n")
    return internals.instance_from_folder(str(tmp_path), config_dir=str(tmp_path))


def _drop_database(pg_server_url, name):
    import psycopg2
    from psycopg2 import sql

    conn = psycopg2.connect(pg_server_url)
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    conn.close()


def test_dagsters_status_cache_loses_partitions_read_past_an_older_record_and_ours_does_not(
        fresh_dagster_storage, pg_server_url, tmp_path):
    """Dagster's partition status cache reads the asset's record (through a loading context: maybe
    earlier in the webserver's request, or in the daemon's tick), then the latest planned
    materialization, then the events after its cursor. When a run's materializations and another
    run's planned materializations are written between the first read and the rest, dagster-postgres
    loses the materialized partitions for good: the cursor moves past them, and the record's older
    materialization says there was none (issue 27: partitions of a finished run shown as missing).
    With ZipEtlEventLogStorage the webserver's status is computed from one moment (the partitions are
    materialized, the other run's in progress), and a status computed from an older record (the
    daemon's) is older, never wrong for good."""
    import uuid

    from dagster._core.loader import LoadingContext
    from dagster._core.storage.event_log.base import AssetRecord
    from dagster._core.storage.partition_status_cache import (
        AssetStatusCacheValue,
        get_and_update_asset_status_cache_value,
    )

    from zip_etl.instance import get_instance

    class RequestContext(LoadingContext):
        """What a webserver request or a daemon tick holds: records once loaded stay as they were read."""

        def __init__(self, instance):
            self._instance, self._loaders = instance, {}

        @property
        def instance(self):
            return self._instance

        @property
        def loaders(self):
            return self._loaders

    letters = dg.StaticPartitionsDefinition(["a", "b", "c", "d"])

    @dg.asset(partitions_def=letters)
    def lettered():
        return None

    job = dg.Definitions(assets=[lettered]).resolve_implicit_global_asset_job_def()

    def webserver(context):  # what the UI's partition statuses call
        return _subsets(AssetStatusCacheValue.blocking_get(context, (lettered.key, letters)), letters)

    def daemon(context):  # what the backfill daemon's queryer calls
        return _subsets(get_and_update_asset_status_cache_value(
            context.instance, lettered.key, letters, loading_context=context), letters)

    def race(instance, reader):
        """The status read by `reader` from a record read before the writes, and the status after."""
        def run_of(first, last):  # created as a backfill creates it: its partitions planned, not started
            return instance.create_run_for_job(job, tags={internals.ASSET_PARTITION_RANGE_START_TAG: first,
                                                          internals.ASSET_PARTITION_RANGE_END_TAG: last})

        instance.wipe_assets([lettered.key])
        run_of("a", "b")
        assert webserver(RequestContext(instance)) == (set(), set(), {"a", "b"})
        context = RequestContext(instance)
        AssetRecord.blocking_get(context, lettered.key)  # the record, read first
        for partition in ("a", "b"):  # the first run's materializations, then the second run is created
            instance.report_runless_asset_event(dg.AssetMaterialization(lettered.key, partition=partition))
        run_of("c", "d")
        return reader(context), webserver(RequestContext(instance))

    name = f"dagster_plain_{uuid.uuid4().hex[:12]}"
    try:
        with _plain_dagster_instance(pg_server_url, tmp_path, name) as plain:
            for reader in (webserver, daemon):
                during, after = race(plain, reader)
                assert during == after == (set(), set(), {"c", "d"})  # "a" and "b": missing, for good
    finally:
        _drop_database(pg_server_url, name)
    with get_instance() as instance:
        assert race(instance, webserver) == (({"a", "b"}, set(), {"c", "d"}),) * 2
        assert race(instance, daemon)[1] == ({"a", "b"}, set(), {"c", "d"})


def test_an_assets_events_are_written_one_writer_at_a_time_and_never_while_its_status_is_read(fresh_dagster_storage):
    """What makes the status exact: a write of an asset's events waits while another transaction
    writes that asset's events or reads its status (its lock), and does not wait for other assets."""
    import threading

    from zip_etl.instance import get_instance

    with get_instance() as instance:
        storage = instance.event_log_storage
        written = []

        def write(key):
            instance.report_runless_asset_event(dg.AssetMaterialization(dg.AssetKey(key), partition="a"))
            written.append(key)

        def writer(key):
            thread = threading.Thread(target=write, args=(key,))
            thread.start()
            return thread

        with internals.asset_events_settled(storage, [dg.AssetKey("locked").to_string()]):
            blocked, free = writer("locked"), writer("other")
            free.join(30)
            blocked.join(1.0)
            assert written == ["other"] and blocked.is_alive()
        blocked.join(30)
        assert written == ["other", "locked"]
        assert {r.asset_entry.asset_key.to_string() for r in storage.get_asset_records()} >= {
            dg.AssetKey("locked").to_string(), dg.AssetKey("other").to_string()}


def test_dagster_postgres_connection_retry_warnings_are_recognised_and_nothing_else(caplog):
    """zip_etl tells a run about its storage retries from the warning dagster-postgres logs per retry."""
    import sqlalchemy.exc
    from dagster_postgres.utils import retry_pg_connection_fn

    failures = ["the database system is shutting down\nmore detail", "Connection refused"]

    def connect():
        if failures:
            raise sqlalchemy.exc.OperationalError("connect", {}, Exception(failures.pop(0)))
        return "connected"

    with caplog.at_level(logging.WARNING):
        logging.warning("Retrying failed database connection: %s", "not dagster-postgres")
        assert retry_pg_connection_fn(connect, retry_wait=0.01) == "connected"
    causes = [internals.storage_connection_retry_cause(record) for record in caplog.records]
    assert causes == [None, "(builtins.Exception) the database system is shutting down",
                      "(builtins.Exception) Connection refused"]


def test_a_pooled_storage_checks_each_connection_it_hands_out(fresh_dagster_storage, monkeypatch):
    """A warm run worker's storage connects through the engine whose connections zip_etl pings."""
    import sqlalchemy.event

    from zip_etl import warm_runs
    from zip_etl.instance import get_instance

    monkeypatch.setattr(warm_runs, "_in_run_worker", True)
    with get_instance() as instance:
        for storage, connect in ((instance.event_log_storage, instance.event_log_storage.index_connection),
                                 (instance.run_storage, instance.run_storage.connect)):
            with connect() as conn:
                assert conn.engine is storage._engine  # noqa: SLF001
            assert sqlalchemy.event.contains(storage._engine, "checkout", internals._ping_pooled_connection)  # noqa: SLF001


def test_run_health_answer_types():
    for status in ("RUNNING", "FAILED", "UNKNOWN", "SUCCESS"):
        assert hasattr(internals.WorkerStatus, status)
    result = internals.CheckRunHealthResult(internals.WorkerStatus.FAILED, "gone")
    assert result.status == internals.WorkerStatus.FAILED and result.msg == "gone"
    assert "check_run_worker_health" in dir(dg.DefaultRunLauncher)


def test_instance_from_folder_reads_its_dagster_yaml(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with internals.instance_from_folder(str(tmp_path / "home"), config_dir=str(tmp_path / "config")) as instance:
        assert instance.root_directory == str(tmp_path / "home")
        assert instance.get_settings("telemetry") == {"enabled": False}


def test_failure_description_from_dagsters_log_records():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    @dg.op
    def fails():
        raise dg.Failure(description="The raw table x lacks the column(s) ['phone']", allow_retries=False)

    @dg.job(logger_defs={"keep": dg.logger(lambda _: _keep_logger(Keep()))})
    def job():
        fails()

    job.execute_in_process(raise_on_error=False, run_config={"loggers": {"keep": {}}})
    described = [internals.failure_description(r) for r in records]
    assert "The raw table x lacks the column(s) ['phone']" in described
    assert all(d is None for d, r in zip(described, records) if "STEP_FAILURE" not in r.getMessage()
               and "RUN_FAILURE" not in r.getMessage())


def _keep_logger(handler):
    logger = logging.getLogger(f"zip_etl_contract_{os.getpid()}")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger


@pytest.mark.parametrize("key", ["00501", "99950", "10016", "501", "ABCDE", ""])
def test_zip_code_partitions_answer_as_the_plain_static_partitions_the_webserver_builds(key):
    """The webserver rebuilds a plain StaticPartitionsDefinition from the snapshot; ours must be
    indistinguishable from it except in speed."""
    plain = dg.StaticPartitionsDefinition(ZIP_CODES)
    assert zip_code_partitions == plain and plain == zip_code_partitions
    assert zip_code_partitions.get_partition_keys() == plain.get_partition_keys()
    assert zip_code_partitions.get_serializable_unique_identifier() == plain.get_serializable_unique_identifier()
    assert zip_code_partitions.has_partition_key(key) == plain.has_partition_key(key)
    for start, end in [(key, "00544"), ("00501", key), (key, key), ("10001", "10016")]:
        ours = theirs = None
        try:
            ours = zip_code_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
        except dg.DagsterInvalidInvocationError:
            ours = "invalid"
        try:
            theirs = plain.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
        except dg.DagsterInvalidInvocationError:
            theirs = "invalid"
        assert list(ours) == list(theirs) if ours != "invalid" else theirs == "invalid"


# --- 8. a run executed in an already-started process ---

PROBE_LOCATION = '''
import dagster as dg

@dg.asset
def probe_asset():
    return 1

@dg.asset_check(asset=probe_asset)
def probe_check():
    return dg.AssetCheckResult(passed=True)

defs = dg.Definitions(assets=[probe_asset], asset_checks=[probe_check], executor=dg.in_process_executor)
'''

EXECUTE_IN_A_STARTED_PROCESS = '''
import json, os, sys
import dagster
import zip_etl.instance
from zip_etl.dagster_internals import execute_run_in_this_process, import_run_execution
import_run_execution()
import probe_location
before = set(sys.modules)
code = execute_run_in_this_process(sys.argv[1])
print(json.dumps({"code": code, "pid": os.getpid(),
                  "imported": sorted(m for m in set(sys.modules) - before if m.startswith("dagster"))}))
'''


def test_a_run_executes_in_a_started_process_as_dagster_api_execute_run_executes_it(fresh_dagster_storage, tmp_path):
    """What a run worker forked from a warm process does (zip_etl/warm_runs.py): the run, created with
    its code origin as Dagster's launchers create it, executes to success in a process that had
    imported its code beforehand, with the engine events `dagster api execute_run` writes; and
    executing it imports no Dagster module that `import_run_execution` had not imported (if an
    upgrade adds one, list it in RUN_EXECUTION_MODULES: every warm run would import it again)."""
    import json
    import subprocess
    import sys

    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin

    from zip_etl.instance import get_instance

    (tmp_path / "probe_location.py").write_text(PROBE_LOCATION)
    origin = JobPythonOrigin("__ASSET_JOB", RepositoryPythonOrigin(
        sys.executable, ModuleCodePointer("probe_location", "defs", str(tmp_path))))
    sys.path.insert(0, str(tmp_path))
    try:
        import probe_location
    finally:
        sys.path.remove(str(tmp_path))
    job = probe_location.defs.resolve_implicit_global_asset_job_def()
    with get_instance() as instance:
        run = instance.create_run_for_job(job, job_code_origin=origin, status=dg.DagsterRunStatus.STARTING)
        assert internals.run_code_location(run) == ("probe_location", str(tmp_path), sys.executable)
        done = subprocess.run([sys.executable, "-c", EXECUTE_IN_A_STARTED_PROCESS,
                               internals.execute_run_args(run, instance)],
                              cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["code"] == 0 and result["imported"] == [], result
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
        messages = [e.message for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]
        assert f"Started process for run (pid: {result['pid']})." in messages
        assert f"Process for run exited (pid: {result['pid']})." in messages
        checks = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        assert len(checks) == 1


def test_a_run_without_a_python_origin_has_no_code_location():
    assert internals.run_code_location(dg.DagsterRun(job_name="j", run_id="r")) == (None, None, None)


def test_the_code_server_id_is_the_grpc_locations_property():
    """The id changes when a code location is reloaded (test_warm_runs.py reloads one under `dagster dev`
    and sees a new warm process); here: where it is read, and no id without a workspace or location."""
    from dagster._core.remote_representation.code_location import GrpcServerCodeLocation

    assert isinstance(GrpcServerCodeLocation.server_id, property)

    class NoLocations:
        def get_code_location(self, name):
            raise KeyError(name)

    assert internals.code_server_id(None, "zip_etl") is None
    assert internals.code_server_id(NoLocations(), "zip_etl") is None


def test_run_retry_tags_are_the_documented_strings():
    """zip_etl tags runs no daemon can re-launch `dagster/max_retries: 0` (zip_etl.instance) and the
    tests read `dagster/will_retry`: Dagster's own names for them."""
    from dagster._core.storage.tags import MAX_RETRIES_TAG, WILL_RETRY_TAG

    from zip_etl.instance import MAX_RETRIES_TAG as ours

    assert MAX_RETRIES_TAG == ours == "dagster/max_retries"
    assert WILL_RETRY_TAG == "dagster/will_retry"


def test_event_log_cursors_are_the_ones_dagster_reads(zip_etl_environment):
    """The cursor zip_etl's run-event watcher hands the run page is one Dagster's storage reads back
    as "after this event", and an offset cursor is refused as Dagster's watcher refuses it."""
    from dagster._core.event_api import EventLogCursor

    from zip_etl.instance import get_instance

    with get_instance() as instance:
        run = instance.add_run(dg.DagsterRun(job_name="cursors", run_id=str(uuid.uuid4())))
        for message in ("one", "two", "three"):
            instance.report_engine_event(message, run)
        records = instance.get_records_for_run(run.run_id).records
        cursor = internals.event_log_cursor(records[0].storage_id)
        assert internals.event_log_cursor_storage_id(cursor) == records[0].storage_id
        after = instance.get_records_for_run(run.run_id, cursor=cursor).records
        assert [r.event_log_entry.message for r in after] == ["two", "three"]
    with pytest.raises(ValueError, match="offset cursor"):
        internals.event_log_cursor_storage_id(str(EventLogCursor.from_offset(10)))


def test_the_run_queue_is_checked_twice_a_second(zip_etl_environment):
    """The queue daemon `dagster dev` starts takes its interval from the coordinator's
    `dequeue_interval_seconds`, so the committed dagster.yaml's half second reaches it (Dagster's own
    coordinator takes whole seconds only); a bad value is one clear error."""
    from dagster._daemon.controller import create_daemon_of_type

    from zip_etl.instance import ZipEtlRunCoordinator, get_instance

    with get_instance() as instance:
        assert isinstance(instance.run_coordinator, ZipEtlRunCoordinator)
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 2
        daemon = create_daemon_of_type("QUEUED_RUN_COORDINATOR", instance)
        assert daemon.interval_seconds == 0.5
    with pytest.raises(dg.DagsterInvalidConfigError, match="dequeue_interval_seconds .* above 0"):
        ZipEtlRunCoordinator(dequeue_interval_seconds=0)
