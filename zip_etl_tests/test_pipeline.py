"""The whole path: raw table -> cleaned_companies partitions, through Dagster, on real PostgreSQL."""

import dagster as dg
import pytest
from psycopg2 import sql

from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from zip_etl.definitions import cleaned_companies, defs, raw_companies
from zip_etl.partitions import ZIP_CODES, zip_code_partitions
from zip_etl_tests.helpers import failure_message, pipeline_resources, run_facts, seed_raw

TEST_ZIPS = ["00501", "00544", "01001", "10016", "60614", "90210"]


@pytest.fixture
def seeded(schema, etl_url):
    seed_raw(etl_url, schema, rows=3000, zip_codes=TEST_ZIPS, seed=11)
    return schema


resources = pipeline_resources


def cleaned_rows(query, schema, zip_code=None):
    statement = sql.SQL("SELECT * FROM {} {} ORDER BY zip_code, record_id").format(
        sql.Identifier(schema, "cleaned_companies"),
        sql.SQL("WHERE zip_code = %s") if zip_code else sql.SQL(""),
    )
    return query(statement, (zip_code,) if zip_code else None)


def test_partitions_are_all_active_zip_codes_as_strings():
    keys = zip_code_partitions.get_partition_keys()
    assert len(keys) == 41_749
    assert keys == sorted(keys) == ZIP_CODES
    assert keys[0] == "00501"
    assert all(len(k) == 5 and k.isdigit() for k in keys)


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == {"raw_companies", "cleaned_companies"}


def test_one_partition_end_to_end(seeded, query):
    result = dg.materialize([raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
                            resources=resources(seeded))
    assert result.success
    rows = cleaned_rows(query, seeded, "10016")
    raw_count = query(sql.SQL("SELECT count(*) FROM {} WHERE zip_code = '10016'").format(
        sql.Identifier(seeded, "raw_companies")))[0][0]
    assert 0 < len(rows) < raw_count
    assert {r[0] for r in cleaned_rows(query, seeded)} == {"10016"}  # nothing else written

    metadata = result.asset_materializations_for_node("cleaned_companies")[0].metadata
    assert metadata["rows_in"].value == raw_count
    assert metadata["rows_in"].value == metadata["rows_out"].value + metadata["rows_rejected"].value
    assert metadata["rows_out"].value == len(rows)
    assert "rejected_duplicate" in metadata and "read_seconds" not in metadata  # the partition's own facts only

    # The run's facts and the table's totals: once, on one observation of the asset.
    run = run_facts(result)
    quarantined = query(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(seeded, "cleaned_companies_quarantine")))
    assert run["dagster/row_count"].value == len(rows)  # the whole table: only 10016 is written
    assert run["rows_quarantined_total"].value == quarantined[0][0] == raw_count - len(rows)
    assert run["memory_cleaned_bytes"].value < run["memory_raw_bytes"].value
    for key in ["read_seconds", "transform_seconds", "write_seconds", "peak_process_memory_mb", "run_chunks", "worker"]:
        assert key in run

    # Re-materializing leaves the table exactly as it was.
    dg.materialize([raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
                   resources=resources(seeded))
    assert cleaned_rows(query, seeded, "10016") == rows


def test_a_range_of_partitions_in_one_run(seeded, query):
    result = dg.materialize(
        [raw_companies, cleaned_companies],
        selection=[cleaned_companies],
        resources=resources(seeded),
        tags={ASSET_PARTITION_RANGE_START_TAG: "00501", ASSET_PARTITION_RANGE_END_TAG: "01001"},
    )
    assert result.success
    events = result.asset_materializations_for_node("cleaned_companies")
    materialized = sorted(e.partition for e in events)
    assert materialized == [k for k in ZIP_CODES if "00501" <= k <= "01001"]
    by_zip = {e.partition: e.metadata for e in events}
    written = dict(query(sql.SQL("SELECT zip_code, count(*) FROM {} GROUP BY 1").format(
        sql.Identifier(seeded, "cleaned_companies"))))
    for zip_code in ["00501", "00544", "01001"]:
        assert by_zip[zip_code]["rows_out"].value == written.get(zip_code, 0)
    # zip codes in the range with no raw rows are materialized as empty partitions
    assert all(by_zip[z]["rows_in"].value == 0 for z in materialized if z not in TEST_ZIPS)


def test_missing_raw_table_is_a_clear_error(schema):
    result = dg.materialize([raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
                            resources=resources(schema), raise_on_error=False)
    assert f"The raw table {schema}.raw_companies does not exist" in failure_message(result)


def test_table_from_an_earlier_release_is_refused_then_migrated_without_changing_a_value(seeded, query):
    """zip4 was a smallint (0332 stored as 332): writing text zip4s into such a table would mix the
    two forms, so the run refuses and names the fix; `zip-etl migrate` restores the zeros in place."""
    from zip_etl.cli.main import main
    from zip_etl.db.ddl import create_table_statement
    from zip_etl.tables import CLEANED_COMPANIES, Column

    old = CLEANED_COMPANIES.with_name(seeded, "cleaned_companies")
    old = type(old)(old.schema, old.name, tuple(Column(c.name, "smallint") if c.name == "zip4" else c
                                                for c in old.columns), old.primary_key, old.partition_column)
    query(create_table_statement(old))
    query(sql.SQL("INSERT INTO {} (zip_code, record_id, company_name, zip4, raw_id, source_updated_at) "
                  "VALUES ('60614', 'OLD', 'Old Co', 332, 1, now())").format(old.identifier))

    result = dg.materialize([raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
                            resources=resources(seeded), raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert "column zip4: declared text, found zip4 smallint" in message and "zip-etl migrate" in message
    assert cleaned_rows(query, seeded, "10016") == []

    assert main(["migrate", "--schema", seeded]) == 0
    assert query(sql.SQL("SELECT zip4 FROM {} WHERE record_id = 'OLD'").format(old.identifier)) == [("0332",)]
    assert main(["migrate", "--schema", seeded]) == 0  # idempotent: nothing left to do
    result = dg.materialize([raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
                            resources=resources(seeded))
    assert result.success
    zip4s = [r[0] for r in query(sql.SQL("SELECT zip4 FROM {} WHERE zip4 IS NOT NULL").format(old.identifier))]
    assert zip4s and all(len(z) == 4 and z.isdigit() for z in zip4s)
