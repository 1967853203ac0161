"""Debug mode writes nothing; the data-quality checks pass on good data and name what is wrong."""

import dagster as dg
import pytest
from psycopg2 import sql

from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from zip_etl.definitions import CHECKS, QUALITY_CHECKS, cleaned_companies, cleaned_companies_debug, raw_companies
from zip_etl.defs.assets import MODE_TAG
from zip_etl.partition_stream import CleanedChunk
from zip_etl.resources import PostgresResource, PostgresWriter
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


def test_quality_checks_pass_on_a_batched_run(seeded):
    defs = definitions(seeded)
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[cleaned_companies.key],
        tags={ASSET_PARTITION_RANGE_START_TAG: "00501", ASSET_PARTITION_RANGE_END_TAG: "10016"},
    )
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(evaluations) == {c.check_key.name for c in QUALITY_CHECKS if c.check_key.asset_key == cleaned_companies.key}
    assert all(e.passed for e in evaluations.values()), {k: e.metadata for k, e in evaluations.items() if not e.passed}
    assert evaluations["rows_reconcile"].metadata["zip_codes_checked"].value > 1
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
