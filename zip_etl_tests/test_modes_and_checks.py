"""Debug mode writes nothing; the data-quality checks pass on good data and name what is wrong."""

import dagster as dg
import pytest
from psycopg2 import sql

from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from zip_etl.definitions import CHECKS, QUALITY_CHECKS, cleaned_companies, cleaned_companies_debug, raw_companies
from zip_etl.defs.assets import MODE_TAG
from zip_etl.partition_stream import CleanedChunk
from zip_etl.partitions import ZIP_CODES, zip_code_partitions
from zip_etl.resources import PostgresResource, PostgresWriter
from zip_etl.tables import RAW_COMPANIES
from zip_etl_tests.helpers import pipeline_resources, seed_raw

ZIPS = ["00501", "00544", "01001", "10016"]


@pytest.fixture
def seeded(schema, etl_url):
    seed_raw(etl_url, schema, rows=2000, zip_codes=ZIPS, seed=9)
    return schema


def definitions(schema):
    return dg.Definitions(
        assets=[raw_companies, cleaned_companies],
        asset_checks=QUALITY_CHECKS,
        jobs=[cleaned_companies_debug],
        resources=pipeline_resources(schema),
    )


def database_state(query, schema):
    relations = query("SELECT relname, relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE nspname = %s ORDER BY 1", (schema,))
    raw = query(sql.SQL("SELECT count(*), sum(hashtext(t::text)) FROM {} t").format(sql.Identifier(schema, "raw_companies")))
    return relations, raw


def test_debug_run_records_metadata_and_writes_nothing(seeded, query):
    before = database_state(query, seeded)
    instance = dg.DagsterInstance.ephemeral()
    job = definitions(seeded).resolve_job_def("cleaned_companies_debug")
    result = job.execute_in_process(
        instance=instance, tags={ASSET_PARTITION_RANGE_START_TAG: "00501", ASSET_PARTITION_RANGE_END_TAG: "01001"}
    )
    assert result.success
    assert result.dagster_run.tags[MODE_TAG] == "debug"
    assert database_state(query, seeded) == before  # no table created, no row changed
    assert result.get_asset_materialization_events() == []
    observations = {e.event_specific_data.asset_observation.partition: e.event_specific_data.asset_observation.metadata
                    for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"}
    assert {"00501", "00544", "01001"} <= set(observations)
    raw_counts = dict(query(sql.SQL("SELECT zip_code, count(*) FROM {} GROUP BY 1").format(sql.Identifier(seeded, "raw_companies"))))
    for zip_code in ["00501", "00544", "01001"]:
        metadata = observations[zip_code]
        assert metadata["dry_run"].value is True
        assert metadata["rows_in"].value == raw_counts[zip_code]
        assert metadata["rows_in"].value == metadata["rows_out"].value + metadata["rows_rejected"].value
    assert not instance.get_materialized_partitions(cleaned_companies.key)


def test_the_writer_refuses_to_write_in_dry_run(seeded, query):
    writer = PostgresWriter(postgres=PostgresResource(), target_schema=seeded, dry_run=True)
    with pytest.raises(RuntimeError, match="dry run: refusing to write"):
        writer.write([CleanedChunk(replace=["10016"])], ["10016"])
    assert query("SELECT to_regclass(%s)", (f"{seeded}.cleaned_companies",)) == [(None,)]


@pytest.mark.slow
def test_quality_checks_pass_on_a_batched_run(seeded):
    defs = definitions(seeded)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[cleaned_companies.key],
        tags={ASSET_PARTITION_RANGE_START_TAG: "00501", ASSET_PARTITION_RANGE_END_TAG: "10016"},
    )
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {name for name, key in CHECKS.items() if key.asset_key == cleaned_companies.key}
    assert all(e.passed for e in evaluations.values()), {k: e.metadata for k, e in evaluations.items() if not e.passed}
    # Every result says what it covered: the run's range, as its first and last zip code and count.
    in_range = len(zip_code_partitions.get_partition_keys_in_range(dg.PartitionKeyRange("00501", "10016")))
    for name, evaluation in evaluations.items():
        covered = {k: evaluation.metadata[k].value for k in evaluation.metadata if k.startswith("checked")}
        expected = {"checked": "zip codes 00501..10016", "checked_first_zip_code": "00501",
                    "checked_last_zip_code": "10016", "checked_zip_codes": in_range}
        assert covered == ({"checked": "the whole table"} if name == "schema_matches_declaration" else expected), name
    assert evaluations["rows_reconcile"].metadata["zip_codes_reconciled"].value == in_range
    # The primary key makes duplicates impossible: the check says so instead of grouping every row.
    assert evaluations["key_is_unique"].metadata["enforced_by_unique_index"].value.endswith("cleaned_companies_pkey")


def test_checks_fail_naming_the_bad_rows(seeded, query):
    defs = definitions(seeded)
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance, asset_selection=[cleaned_companies.key], partition_key="10016").success
    table = sql.Identifier(seeded, "cleaned_companies")
    query(sql.SQL("ALTER TABLE {} DROP CONSTRAINT cleaned_companies_pkey").format(table))
    query(sql.SQL("INSERT INTO {} SELECT * FROM {} LIMIT 1").format(table, table))  # a duplicate key
    query(sql.SQL("INSERT INTO {} SELECT '99999', 'X1', name, street_address, city, state, zip4, phone, employees, "
                  "annual_revenue_usd, founded_year, industry, raw_id, source_updated_at FROM "
                  "(SELECT company_name AS name, * FROM {} LIMIT 1) s").format(table, table))
    result = dg.materialize(
        [raw_companies, cleaned_companies, *QUALITY_CHECKS],
        selection=dg.AssetSelection.checks(CHECKS["zip_codes_are_partitions"], CHECKS["key_is_unique"]),
        resources=defs.resources, instance=instance, raise_on_error=False,
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not evaluations["zip_codes_are_partitions"].passed
    assert evaluations["zip_codes_are_partitions"].metadata["unknown_zip_codes"].value == ["99999"]
    assert not evaluations["key_is_unique"].passed
    assert evaluations["key_is_unique"].metadata["duplicate_keys"].value[0][0] == "10016"


def test_checks_launched_without_partitions_cover_the_whole_table(seeded):
    """What the Checks tab's "Execute all" launches: the checks alone, no partition. Each result says
    it covered the whole table."""
    defs = definitions(seeded)
    instance = dg.DagsterInstance.ephemeral()
    assert defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[cleaned_companies.key], partition_key="10016").success
    result = dg.materialize([raw_companies, cleaned_companies, *QUALITY_CHECKS],
                            selection=dg.AssetSelection.checks(*QUALITY_CHECKS), resources=defs.resources,
                            instance=instance)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == set(CHECKS)
    assert {name: e.metadata["checked"].value for name, e in evaluations.items()} == {
        name: "the whole table" for name in evaluations}
    assert all(e.passed for e in evaluations.values())
    assert evaluations["rows_reconcile"].metadata["zip_codes_reconciled"].value == 1  # the zip codes written so far


def test_zip_etl_checks_runs_every_check_over_the_whole_table_into_dagsters_storage(seeded, query, capsys):
    """`zip-etl checks`: what "Execute all" runs, from a terminal; its run is in the UI's storage."""
    from zip_etl.cli.main import main
    from zip_etl.instance import get_instance

    assert dg.materialize([raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
                          resources=pipeline_resources(seeded)).success
    assert main(["checks", "--schema", seeded]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = sorted(CHECKS)
    assert lines[:-1] == [f"{'passed':17} {name} (checked the whole table)" for name in names]
    run_id = lines[-1].split()[1].rstrip(":")
    with get_instance() as instance:
        stored = [e.dagster_event.event_specific_data.asset_check_key.name for e in instance.all_logs(run_id)
                  if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"]
    assert sorted(stored) == names

    table = sql.Identifier(seeded, "cleaned_companies")
    query(sql.SQL("INSERT INTO {} SELECT '99999', 'X1', company_name, street_address, city, state, zip4, phone, "
                  "employees, annual_revenue_usd, founded_year, industry, raw_id, source_updated_at "
                  "FROM {} LIMIT 1").format(table, table))
    assert main(["checks", "--schema", seeded]) == 1
    out = capsys.readouterr().out
    assert "FAILED (error)    zip_codes_are_partitions (checked the whole table): unknown_zip_codes ['99999']" in out, out


# Raw zip_code values that are no partition, each between two partitions (or beyond the last).
STRAYS = {"00000": "before the first", "00501-1234": "00501..00544", "10016-1234": "10016..10017",
          "10017 ": "10017..10018", "ABCDE": "after the last"}


def test_raw_rows_without_partition_are_found_by_the_run_whose_share_holds_them(seeded, query):
    """Each run's raw_rows_have_partitions looks at its own share of the raw zip_code values (from its
    first zip code up to the next run's): the runs of a whole backfill find every stray value once,
    and a check launched alone finds all of them."""
    copied = [sql.SQL("%s") if c == "zip_code" else sql.SQL("max_id + 1") if c == "raw_id" else sql.Identifier(c)
              for c in RAW_COMPANIES.column_names]
    for value in STRAYS:  # a copy of a row of 10016, filed under `value`
        query(sql.SQL("INSERT INTO {t} ({cols}) SELECT {copied} FROM {t}, (SELECT max(raw_id) AS max_id FROM {t}) m "
                      "WHERE zip_code = '10016' LIMIT 1").format(
            t=sql.Identifier(seeded, "raw_companies"), cols=sql.SQL(", ").join(map(sql.Identifier, RAW_COMPANIES.column_names)),
            copied=sql.SQL(", ").join(copied)), (value,))
    defs = definitions(seeded)
    runs = [(ZIP_CODES[0], "10016"), ("10017", ZIP_CODES[-2]), (ZIP_CODES[-1], ZIP_CODES[-1]), ("10016", "10016")]
    found = {}
    for first, last in runs:
        result = dg.materialize(
            [raw_companies, cleaned_companies, *QUALITY_CHECKS],
            selection=dg.AssetSelection.checks(CHECKS["raw_rows_have_partitions"]), resources=defs.resources,
            tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        )
        (evaluation,) = result.get_asset_check_evaluations()
        assert evaluation.metadata["checked_first_zip_code"].value == first
        assert evaluation.metadata["checked_last_zip_code"].value == last
        found[(first, last)] = sorted(value for value, _ in evaluation.metadata["values"].value)
        assert evaluation.passed == (not found[(first, last)])
    assert found == {
        (ZIP_CODES[0], "10016"): ["00000", "00501-1234", "10016-1234"],
        ("10017", ZIP_CODES[-2]): ["10017 "],
        (ZIP_CODES[-1], ZIP_CODES[-1]): ["ABCDE"],
        ("10016", "10016"): ["10016-1234"],  # one zip code: up to the next one
    }
    alone = dg.materialize([raw_companies, cleaned_companies, *QUALITY_CHECKS],
                           selection=dg.AssetSelection.checks(CHECKS["raw_rows_have_partitions"]), resources=defs.resources)
    (evaluation,) = alone.get_asset_check_evaluations()
    assert evaluation.metadata["checked"].value == "the whole table"
    assert sorted(v for v, _ in evaluation.metadata["values"].value) == sorted(STRAYS)
    assert evaluation.severity == dg.AssetCheckSeverity.WARN and not evaluation.passed
