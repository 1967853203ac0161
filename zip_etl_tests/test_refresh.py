"""The refresh cycle on real PostgreSQL: raw data versions, change sets, and rebuilding exactly the
zip codes that changed."""

import dagster as dg
import pytest
from psycopg2 import sql

from zip_etl.cli.local_runs import Target
from zip_etl.cli.refresh import refresh
from zip_etl.db.connection import transaction
from zip_etl.definitions import defs
from zip_etl.demo_data import apply_change_set, generate_raw_companies, write_raw_companies
from zip_etl.instance import get_instance
from zip_etl.partitions import ZIP_CODES
from zip_etl.refresh import CLEANED_KEY, REFRESH_TAG, contiguous_ranges
from zip_etl.resources import PostgresResource
from zip_etl.tables import EMPTY_RAW_VERSION, RAW_COMPANIES
from zip_etl.transform import clean_companies
from zip_etl_tests.helpers import seed_raw
from zip_etl_tools.stale_status import StaleStatus, dagster_stale_status_resolver

BLOCK = ZIP_CODES[1000:1030]  # 30 neighbouring zip codes


def raw_table(schema):
    return RAW_COMPANIES.with_name(schema, "raw_companies")


def target_for(schema) -> Target:
    return Target(resources=(("postgres", (("raw_schema", schema),)), ("postgres_writer", (("target_schema", schema),))))


def zip_codes_with_rows(query, schema):
    return [r[0] for r in query(sql.SQL("SELECT DISTINCT zip_code FROM {} ORDER BY 1").format(
        sql.Identifier(schema, "raw_companies")))]


def cleaned_by_zip(query, schema):
    rows = query(sql.SQL("SELECT * FROM {} ORDER BY zip_code, record_id").format(sql.Identifier(schema, "cleaned_companies")))
    by_zip = {}
    for row in rows:
        by_zip.setdefault(row[0], []).append(row)
    return by_zip


def test_contiguous_ranges_never_include_unselected_keys():
    keys = [f"{i:05d}" for i in range(10)]
    assert contiguous_ranges(keys, ["00001", "00002", "00003", "00005", "00009"], 2) == [
        ["00001", "00002"], ["00003"], ["00005"], ["00009"]
    ]
    assert contiguous_ranges(keys, [], 5) == []


def test_raw_versions_see_inserts_updates_deletes_and_vanished_zip_codes(schema, etl_url):
    seed_raw(etl_url, schema, rows=800, zip_codes=BLOCK[:10], seed=3)
    postgres = PostgresResource(raw_schema=schema)
    before = postgres.raw_data_versions()
    with_rows = sorted(before)
    changed, emptied, untouched = with_rows[:3], with_rows[3], with_rows[4:]
    with transaction(etl_url) as cursor:
        changes = apply_change_set(cursor, changed, delete_all=[emptied], seed=9, table=raw_table(schema))
    assert [c.zip_code for c in changes] == sorted([*changed, emptied])
    assert all(c.inserted and c.updated for c in changes if c.zip_code in changed)
    after = postgres.raw_data_versions()
    assert all(after[z] != before[z] for z in changed)
    assert emptied not in after
    assert postgres.raw_data_versions([emptied]) == {emptied: EMPTY_RAW_VERSION}
    assert {z: after[z] for z in untouched} == {z: before[z] for z in untouched}

    # A pure delete, and a pure update that bumps updated_at, each change the version.
    zip_code = untouched[0]
    table = sql.Identifier(schema, "raw_companies")
    with transaction(etl_url) as cursor:
        cursor.execute(sql.SQL("DELETE FROM {} WHERE raw_id = (SELECT max(raw_id) FROM {} WHERE zip_code = %s)").format(
            table, table), (zip_code,))
    deleted = postgres.raw_data_versions([zip_code])[zip_code]
    assert deleted != before[zip_code]
    with transaction(etl_url) as cursor:
        cursor.execute(sql.SQL("UPDATE {} SET updated_at = updated_at + interval '1 second' WHERE raw_id = "
                               "(SELECT min(raw_id) FROM {} WHERE zip_code = %s)").format(table, table), (zip_code,))
    assert postgres.raw_data_versions([zip_code])[zip_code] not in {deleted, before[zip_code]}


def test_change_sets_are_deterministic(etl_url, query, schema):
    tables = []
    for suffix in ("a", "b"):
        table = RAW_COMPANIES.with_name(schema, f"raw_{suffix}")
        write_raw_companies(etl_url, generate_raw_companies(500, BLOCK[:8], seed=4), table)
        with transaction(etl_url) as cursor:
            apply_change_set(cursor, BLOCK[:3], delete_all=[BLOCK[3]], seed=12, table=table)
        tables.append(query(sql.SQL("SELECT * FROM {} ORDER BY raw_id").format(table.identifier)))
    assert tables[0] == tables[1]


@pytest.mark.slow
def test_refresh_rebuilds_exactly_the_changed_zip_codes(schema, etl_url, query, fresh_dagster_storage):
    seed_raw(etl_url, schema, rows=1500, zip_codes=BLOCK, seed=5)
    target = target_for(schema)

    first = refresh(workers=1, target=target, partition_keys=BLOCK, observe=False)
    assert first.plan.missing == BLOCK and first.plan.stale == [] and first.plan.ranges == [BLOCK]
    assert not first.failed and len(first.results) == 1
    before = cleaned_by_zip(query, schema)

    # 9 zip codes with inserts, updates and deletes, and one whose rows are all deleted.
    with_rows = zip_codes_with_rows(query, schema)
    changed = with_rows[2:6] + with_rows[9:20:3] + with_rows[22:23]
    emptied = with_rows[7]
    assert emptied in before
    with transaction(etl_url) as cursor:
        apply_change_set(cursor, changed, delete_all=[emptied], seed=2, table=raw_table(schema))
    expected = sorted([*changed, emptied])
    assert len(expected) == 10

    plan_only = refresh(workers=1, target=target, partition_keys=BLOCK, dry_plan=True)
    assert plan_only.plan.stale == expected and plan_only.plan.missing == []
    assert plan_only.plan.ranges == contiguous_ranges(BLOCK, expected, 2000)
    assert len(plan_only.plan.ranges) < len(expected)  # neighbours share a run

    with get_instance() as instance:
        already = {r.run_id for r in instance.get_runs(dg.RunsFilter(tags={REFRESH_TAG: "true"}))}
    second = refresh(workers=2, target=target, partition_keys=BLOCK, observe=False)
    assert not second.failed

    # Dagster's view: one run per range, exactly the 10 partitions materialized, each fresh again.
    with get_instance() as instance:
        runs = [r for r in instance.get_runs(dg.RunsFilter(tags={REFRESH_TAG: "true"})) if r.run_id not in already]
        assert len(runs) == len(plan_only.plan.ranges)
        materialized = sorted(
            record.partition_key
            for run in runs
            for record in instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=CLEANED_KEY), limit=100
            ).records
            if record.run_id == run.run_id
        )
        assert materialized == expected

    # The table: changed zip codes hold exactly what cleaning their current rows gives; the
    # emptied one has no rows left; every other zip code is untouched.
    after = cleaned_by_zip(query, schema)
    assert emptied not in after
    postgres = PostgresResource(raw_schema=schema)
    for zip_code in changed:
        with postgres.raw_snapshot() as snapshot:
            raw = snapshot.frame(list(snapshot.batches_by_zip_code([zip_code])))
        cleaned = clean_companies(raw).cleaned
        assert sorted(r[1] for r in after.get(zip_code, [])) == sorted(cleaned["record_id"]), zip_code
        assert after.get(zip_code) != before.get(zip_code)
    assert {z: rows for z, rows in after.items() if z not in expected} == {
        z: rows for z, rows in before.items() if z not in expected
    }

    third = refresh(workers=1, target=target, partition_keys=BLOCK, observe=False)
    assert third.plan.stale == [] and third.plan.missing == [] and third.results == []


def execute(requests, target, workers=2):
    """Run what the sensor asked for, as the daemon would: the observation, then one run per range."""
    from zip_etl.cli.local_runs import run_backfill
    from zip_etl.cli.refresh import observe_raw
    from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
    from zip_etl.partitions import zip_code_partitions

    if any(r.job_name == "observe_raw_companies" for r in requests):
        observe_raw(target)
    ranges = [
        zip_code_partitions.get_partition_keys_in_range(
            dg.PartitionKeyRange(r.tags[ASSET_PARTITION_RANGE_START_TAG], r.tags[ASSET_PARTITION_RANGE_END_TAG])
        )
        for r in requests
        if r.job_name == "refresh_cleaned_companies"
    ]
    tagged = Target(target.asset, target.definitions, target.resources, ((REFRESH_TAG, "true"),))
    results = run_backfill(ranges, workers=workers, target=tagged) if ranges else []
    assert all(r.success for r in results), [r.error for r in results if not r.success]
    return ranges


@pytest.mark.slow
def test_refresh_sensor_over_every_zip_code(schema, etl_url, query, fresh_dagster_storage):
    """The sensor as `dagster dev` runs it, over all 41,749 partitions: first everything missing is
    built, then a change in 10 zip codes shows as stale (Dagster's own stale status) and exactly
    those 10 are rebuilt."""
    from zip_etl import settings

    PARTITIONS_PER_RUN = settings.partitions_per_run()

    zip_codes = sorted(set(ZIP_CODES[::800]) | set(BLOCK))
    seed_raw(etl_url, schema, rows=3000, zip_codes=zip_codes, seed=8)
    target = target_for(schema)
    sensor = defs.resolve_sensor_def("refresh_changed_zip_codes")
    postgres = PostgresResource(raw_schema=schema)

    def tick(instance):
        return sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources={"postgres": postgres}))

    with get_instance() as instance:
        first = tick(instance)
    job_names = [r.job_name for r in first.run_requests]
    assert job_names[0] == "observe_raw_companies"
    ranges = execute(first.run_requests, target)
    assert ranges == contiguous_ranges(ZIP_CODES, ZIP_CODES, PARTITIONS_PER_RUN)  # never built: all, batched
    before = cleaned_by_zip(query, schema)

    with get_instance() as instance:
        quiet = tick(instance)
        assert quiet.run_requests == [] and "nothing to refresh" in quiet.skip_message
        resolver = dagster_stale_status_resolver(instance, defs)
        assert {resolver.get_status(CLEANED_KEY, z) for z in BLOCK} == {StaleStatus.FRESH}

    with_rows = zip_codes_with_rows(query, schema)
    changed = with_rows[1:4] + with_rows[10:40:5]
    emptied = with_rows[8]
    with transaction(etl_url) as cursor:
        apply_change_set(cursor, changed, delete_all=[emptied], seed=3, table=raw_table(schema))
    expected = sorted([*changed, emptied])
    assert len(expected) == 10

    with get_instance() as instance:
        third = tick(instance)
        assert third.run_requests[0].job_name == "observe_raw_companies"
    # The observation alone makes the UI show the 10 partitions stale (Dagster's own stale status).
    execute(third.run_requests[:1], target)
    with get_instance() as instance:
        resolver = dagster_stale_status_resolver(instance, defs)
        assert {z: resolver.get_status(CLEANED_KEY, z) for z in expected} == {z: StaleStatus.STALE for z in expected}
        assert {resolver.get_status(CLEANED_KEY, z) for z in BLOCK if z not in expected} == {StaleStatus.FRESH}
        observed_before = {r.run_id for r in instance.get_runs()}
    ranges = execute(third.run_requests[1:], target)
    assert sorted(k for r in ranges for k in r) == expected
    assert len(ranges) == len(contiguous_ranges(ZIP_CODES, expected, PARTITIONS_PER_RUN)) < len(expected)

    with get_instance() as instance:
        new_runs = [r for r in instance.get_runs() if r.run_id not in observed_before]
        refresh_runs = [r for r in new_runs if r.tags.get(REFRESH_TAG) == "true"]
        assert len(refresh_runs) == len(ranges)
        materialized = sorted(
            record.partition_key
            for record in instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=CLEANED_KEY), limit=50).records
            if record.run_id in {r.run_id for r in refresh_runs}
        )
        assert materialized == expected
        assert tick(instance).run_requests == []
        resolver = dagster_stale_status_resolver(instance, defs)
        assert {resolver.get_status(CLEANED_KEY, z) for z in expected} == {StaleStatus.FRESH}

    after = cleaned_by_zip(query, schema)
    assert emptied in before and emptied not in after
    assert {z: rows for z, rows in after.items() if z not in expected} == {
        z: rows for z, rows in before.items() if z not in expected
    }


def test_refresh_sensor_waits_for_runs_in_progress(fresh_dagster_storage):

    sensor = defs.resolve_sensor_def("refresh_changed_zip_codes")
    with get_instance() as instance:
        instance.add_run(dg.DagsterRun(job_name="refresh_cleaned_companies", run_id="a" * 36,
                                    status=dg.DagsterRunStatus.STARTED, asset_selection=frozenset({CLEANED_KEY})))
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources={"postgres": PostgresResource()}))
    assert tick.run_requests == [] and "in progress" in tick.skip_message and "a" * 36 in tick.skip_message


def test_seed_change_names_unknown_zip_codes(zip_etl_environment, capsys):
    from zip_etl.cli.main import main

    assert main(["seed", "--change", "10016,1001X", "--delete-all", "00000"]) == 2
    error = capsys.readouterr().err
    assert "not active zip codes" in error and "1001X" in error


def test_the_recorded_version_is_the_later_of_materialization_and_observation():
    """A partition's provenance is on its materialization; a later observation's counts instead: a
    debug run restating it, or a run from before the materializations carried it (Dagster's shared
    tags on the materialization, the partition's own on an observation just after)."""
    from zip_etl.dagster_internals import DATA_VERSION_TAG
    from zip_etl.provenance import recorded_data_versions

    key = dg.AssetKey("built")
    instance = dg.DagsterInstance.ephemeral()

    def record(event_class, partition, version):
        instance.report_runless_asset_event(event_class(asset_key=key, partition=partition,
                                                        tags={DATA_VERSION_TAG: version}))

    record(dg.AssetMaterialization, "a", "shared")  # before: Dagster's tags, then the partition's own
    record(dg.AssetObservation, "a", "a-1")
    record(dg.AssetMaterialization, "b", "shared")
    record(dg.AssetObservation, "b", "b-1")
    record(dg.AssetMaterialization, "b", "b-2")  # rebuilt since: its own tags on the materialization
    record(dg.AssetMaterialization, "c", "c-1")
    record(dg.AssetObservation, "c", "c-1")  # a debug run restating it
    record(dg.AssetMaterialization, "d", "d-1")
    assert recorded_data_versions(instance, key) == {"a": "a-1", "b": "b-2", "c": "c-1", "d": "d-1"}
    assert recorded_data_versions(instance, key, ["a", "b", "e"]) == {"a": "a-1", "b": "b-2"}
