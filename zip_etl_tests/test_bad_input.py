"""Hostile input through the real pipeline: every row is either cleaned or quarantined with its
reason and original values, never silently lost (docs/RELIABILITY.md lists each case)."""

import json

import dagster as dg
import pandas as pd
import psycopg2
import pytest
from psycopg2 import sql

from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from zip_etl.db.connection import _with_database
from zip_etl.definitions import CHECKS, QUALITY_CHECKS, cleaned_companies, raw_companies
from zip_etl.partition_stream import CleanedChunk
from zip_etl.resources import PostgresResource, PostgresWriter
from zip_etl.transform.cleaning import RAW_COLUMNS
from zip_etl_tests.helpers import failure_message, pipeline_resources, retries, seed_raw

LONG_TEXT = "Suite " + "x" * 100_000
TS = pd.Timestamp("2026-03-01 12:00:00", tz="UTC")

# record_id -> (raw values that differ from a valid row, expected outcome). A str outcome is the
# quarantine reason; a dict is the cleaned values expected.
CORPUS = {
    "WS1": ({"company_name": "Acme\tWidgets\r\n  Inc\n"}, {"company_name": "Acme Widgets Inc"}),
    "QUOTE1": ({"company_name": 'O\'Brien "Best" \\ Co'}, {"company_name": 'O\'Brien "Best" \\ Co'}),
    "SLASHN": ({"street_address": "\\N", "city": "\\N"}, {"street_address": "\\N", "city": "\\N"}),
    "EMPTY1": ({"city": "", "phone": None, "industry": "   "}, {"city": None, "phone": None, "industry": None}),
    "LONG1": ({"street_address": LONG_TEXT}, {"street_address": LONG_TEXT}),
    "NUM1": (
        {"employees": "lots", "annual_revenue": "$12.5M", "founded_year": "1e400"},
        {"employees": None, "annual_revenue_usd": 12_500_000, "founded_year": None},
    ),
    "NUM2": (
        {"employees": "99999999999", "annual_revenue": "99999999999999999999999", "founded_year": "-5"},
        {"employees": None, "annual_revenue_usd": None, "founded_year": None},
    ),
    "NUM3": ({"employees": "1,200", "annual_revenue": "45k", "founded_year": "1999.0"},
             {"employees": 1200, "annual_revenue_usd": 45_000, "founded_year": 1999}),
    "ZIP4": ({"postal_code": "10016-0234"}, {"zip4": "0234"}),
    "BADZIP": ({"postal_code": "1001X"}, "invalid_postal_code"),
    "MISMATCH": ({"postal_code": "10017"}, "zip_mismatch"),
    "NONAME": ({"company_name": ""}, "missing_company_name"),
    "": ({"record_id": None}, "missing_record_id"),
    "R" * 300: ({}, "record_id_too_long"),
}


def corpus_frame() -> pd.DataFrame:
    base = {
        "company_name": "Good Co", "street_address": "1 Main St", "city": "new york", "state": "NY",
        "zip_code": "10016", "postal_code": "10016", "phone": "(212) 555-0100", "employees": "12",
        "annual_revenue": "1000", "founded_year": "1990", "industry": "tech",
    }
    rows = []
    for i, (record_id, (changes, _)) in enumerate(CORPUS.items()):
        rows.append({**base, "raw_id": i + 1, "updated_at": TS, "record_id": record_id or None, **changes})
    n = len(rows)
    rows += [
        # duplicate ids: the newer row wins, the older goes to quarantine
        {**base, "raw_id": n + 1, "updated_at": TS, "record_id": "DUP1", "company_name": "Old Name"},
        {**base, "raw_id": n + 2, "updated_at": TS + pd.Timedelta(days=1), "record_id": "dup1", "company_name": "New Name"},
        # another partition, and rows whose zip code is no partition at all
        {**base, "raw_id": n + 3, "updated_at": TS, "record_id": "P1", "zip_code": "10013", "postal_code": "10013"},
        {**base, "raw_id": n + 4, "updated_at": TS, "record_id": "ZIPPLUS4", "zip_code": "10016-1234"},
        {**base, "raw_id": n + 5, "updated_at": TS, "record_id": "MALFORMED", "zip_code": "ABCDE"},
    ]
    frame = pd.DataFrame(rows)
    frame["raw_id"] = frame["raw_id"].astype("int64")
    return frame[RAW_COLUMNS]


def definitions(schema, **postgres):
    resources = pipeline_resources(schema)
    if postgres:
        resources["postgres"] = PostgresResource(raw_schema=schema, **postgres)
        resources["postgres_writer"] = PostgresWriter(postgres=resources["postgres"], target_schema=schema)
    return dg.Definitions(assets=[raw_companies, cleaned_companies], asset_checks=QUALITY_CHECKS, resources=resources)


def materialize(schema, first="10013", last="10016", **postgres):
    job = definitions(schema, **postgres).resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[cleaned_companies.key],
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
        raise_on_error=False,
    )


def table_rows(query, schema, table):
    cursor_rows = query(sql.SQL("SELECT row_to_json(t)::text FROM {} t").format(sql.Identifier(schema, table)))
    return [json.loads(r[0]) for r in cursor_rows]


def test_corpus_rows_are_cleaned_or_quarantined_never_lost(schema, etl_url, query):
    raw = corpus_frame()
    seed_raw(etl_url, schema, raw)
    result = materialize(schema)
    assert result.success, failure_message(result)

    cleaned = {r["record_id"]: r for r in table_rows(query, schema, "cleaned_companies")}
    quarantined = table_rows(query, schema, "cleaned_companies_quarantine")
    reasons = {(q["raw_values"]["record_id"] or ""): q["reason"] for q in quarantined if q["reason"] != "duplicate"}
    for record_id, (_, expected) in CORPUS.items():
        if isinstance(expected, str):
            assert reasons.get(record_id) == expected, record_id
            assert record_id.upper() not in cleaned
        else:
            row = cleaned[record_id]
            for column, value in expected.items():
                assert row[column] == value, (record_id, column, row[column])

    # Duplicates: the newest row is kept; the other is quarantined naming the kept raw id.
    assert cleaned["DUP1"]["company_name"] == "New Name"
    duplicate = next(q for q in quarantined if q["reason"] == "duplicate")
    assert duplicate["raw_values"]["company_name"] == "Old Name"
    assert str(len(raw) - 3) in duplicate["detail"]  # the kept row's raw_id

    # Original values are kept exactly: '' stays '', NULL stays null.
    noname = next(q for q in quarantined if q["raw_values"]["record_id"] == "NONAME")
    assert noname["raw_values"]["company_name"] == "" and noname["raw_values"]["employees"] == "12"
    missing = next(q for q in quarantined if q["reason"] == "missing_record_id")
    assert missing["raw_values"]["record_id"] is None
    assert next(q for q in quarantined if q["reason"] == "zip_mismatch")["detail"] == (
        "postal code '10017' is in zip code 10017, not 10016")

    # Rows in = rows out + rows quarantined, for every partition, by the check and by the metadata.
    for zip_code in ("10013", "10016"):
        (raw_n,) = query(sql.SQL("SELECT count(*) FROM {} WHERE zip_code = %s").format(
            sql.Identifier(schema, "raw_companies")), (zip_code,))[0]
        out = sum(1 for r in cleaned.values() if r["zip_code"] == zip_code)
        held = sum(1 for q in quarantined if q["zip_code"] == zip_code)
        assert raw_n == out + held > 0
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["rows_reconcile"].passed
    metadata = {e.partition: e.metadata for e in result.asset_materializations_for_node("cleaned_companies")}
    assert metadata["10016"]["rows_in"].value == metadata["10016"]["rows_out"].value + metadata["10016"]["rows_rejected"].value

    # Rows filed under no partition (ZIP+4, malformed) are read by no run: the raw check lists them.
    checked = dg.materialize(
        [raw_companies, cleaned_companies, *QUALITY_CHECKS],
        selection=dg.AssetSelection.checks(CHECKS["raw_rows_have_partitions"]),
        resources=pipeline_resources(schema),
    )
    evaluation = checked.get_asset_check_evaluations()[0]
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN
    assert sorted(evaluation.metadata["values"].value) == [["10016-1234", 1], ["ABCDE", 1]]


def test_quarantine_is_replaced_with_its_partition(schema, etl_url, query):
    seed_raw(etl_url, schema, corpus_frame())
    assert materialize(schema).success
    before = query(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "cleaned_companies_quarantine")))
    assert materialize(schema).success  # idempotent: the same rows, not twice as many
    after = query(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "cleaned_companies_quarantine")))
    assert before == after and before[0][0] > 0
    query(sql.SQL("DELETE FROM {} WHERE record_id = 'BADZIP'").format(sql.Identifier(schema, "raw_companies")))
    assert materialize(schema).success
    reasons = [r[0] for r in query(sql.SQL("SELECT reason FROM {}").format(
        sql.Identifier(schema, "cleaned_companies_quarantine")))]
    assert "invalid_postal_code" not in reasons and len(reasons) == before[0][0] - 1


def test_rows_reconcile_fails_when_a_row_goes_missing(schema, etl_url, query):
    seed_raw(etl_url, schema, corpus_frame())
    assert materialize(schema).success
    query(sql.SQL("DELETE FROM {} WHERE record_id = 'WS1'").format(sql.Identifier(schema, "cleaned_companies")))
    result = dg.materialize([raw_companies, cleaned_companies, *QUALITY_CHECKS],
                            selection=dg.AssetSelection.checks(CHECKS["rows_reconcile"]),
                            resources=pipeline_resources(schema))
    evaluation = result.get_asset_check_evaluations()[0]
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN  # as the README says: it warns, it does not block
    assert evaluation.metadata["problems"].value[0].startswith("10016: ")


# --- schema drift in the raw table ---


def drift(query, schema, statement):
    query(sql.SQL(statement).format(raw=sql.Identifier(schema, "raw_companies")))


def test_added_raw_column_is_ignored(schema, etl_url, query, caplog):
    seed_raw(etl_url, schema, rows=300, zip_codes=["10016"])
    drift(query, schema, "ALTER TABLE {raw} ADD COLUMN loyalty_tier text DEFAULT 'gold'")
    result = materialize(schema, "10016", "10016")
    assert result.success
    assert "ignoring columns zip_etl does not declare: ['loyalty_tier']" in caplog.text


def test_removed_raw_column_is_a_clear_error_not_retried(schema, etl_url, query):
    seed_raw(etl_url, schema, rows=300, zip_codes=["10016"])
    drift(query, schema, "ALTER TABLE {raw} DROP COLUMN phone")
    result = materialize(schema, "10016", "10016")
    assert not result.success
    assert "lacks the column(s) ['phone'] that zip_etl reads" in failure_message(result)
    assert retries(result) == 0


def without_first_use_notice(lines: list[str]) -> list[str]:
    """The output without the telemetry notice Dagster prints once per user, on a machine's first
    `dg` command (dg reads its opt-out from the user's dg config, not from the project's dg.toml):
    the lines before the first log line, when they are that notice."""
    first_log = next((i for i, line in enumerate(lines) if line[:4].isdigit()), 0)
    notice = "\n".join(lines[:first_log])
    return lines[first_log:] if "Telemetry:" in notice and "Welcome to Dagster!" in notice else lines


@pytest.mark.slow
def test_removed_raw_column_from_the_readme_command_is_its_line_not_stack_traces(etl_url, query):
    """The README's `dg launch --assets cleaned_companies --partition 10016` on a raw table that lost a column:
    the failure's one line under the step's and the run's failure, not two stack traces in ~60 lines
    (the stack trace stays in Dagster's event log, for the UI)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    seed_raw(etl_url, "public", rows=300, zip_codes=["10016"])
    try:
        query("ALTER TABLE public.raw_companies DROP COLUMN phone")
        result = subprocess.run(
            [str(Path(sys.executable).parent / "dg"), "launch", "--assets", "cleaned_companies", "--partition", "10016"],
            cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=300,
            env={k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},
        )
    finally:
        seed_raw(etl_url, "public", rows=300, zip_codes=["10016"])  # other tests read public.raw_companies
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode != 0
    explanation = "    The raw table public.raw_companies lacks the column(s) ['phone'] that zip_etl reads"
    lines = without_first_use_notice(output.splitlines())
    assert [line for line in lines if line.startswith(explanation)] and len(
        [line for line in lines if line.startswith(explanation)]) == 2, output  # under STEP_FAILURE and RUN_FAILURE
    assert "Stack Trace" not in output and "Traceback" not in output and "BetaWarning" not in output
    assert len(lines) <= 25, f"{len(lines)} lines:\n{output}"
    assert lines[-1] == "Error: Materialization failed."


def test_retyped_raw_columns_are_cast_or_refused(schema, etl_url, query):
    seed_raw(etl_url, schema, rows=300, zip_codes=["10016"])
    drift(query, schema, "ALTER TABLE {raw} ALTER COLUMN employees TYPE integer USING NULL")
    drift(query, schema, "UPDATE {raw} SET employees = 42")
    drift(query, schema, "ALTER TABLE {raw} ALTER COLUMN raw_id TYPE integer")
    assert materialize(schema, "10016", "10016").success
    employees = query(sql.SQL("SELECT DISTINCT employees FROM {}").format(sql.Identifier(schema, "cleaned_companies")))
    assert employees == [(42,)]

    drift(query, schema, "ALTER TABLE {raw} ALTER COLUMN updated_at TYPE text")
    drift(query, schema, "UPDATE {raw} SET updated_at = 'last tuesday' WHERE raw_id = (SELECT min(raw_id) FROM {raw})")
    result = materialize(schema, "10016", "10016")
    assert not result.success
    assert "has values zip_etl cannot read as declared" in failure_message(result)
    assert "last tuesday" in failure_message(result)

    drift(query, schema, "ALTER TABLE {raw} ALTER COLUMN zip_code TYPE integer USING zip_code::integer")
    result = materialize(schema, "10016", "10016")
    assert "is integer, not text: zip codes must be text" in failure_message(result)


# --- memory: chunks, not zip codes ---


@pytest.mark.slow
def test_a_zip_code_larger_than_a_chunk_streams_through_and_gives_the_same_table(schema, etl_url, query):
    zips = ["00501", "00544", "01001", "01002", "01003"]
    raw = seed_raw(etl_url, schema, rows=1200, zip_codes=zips, seed=5)
    counts = raw["zip_code"].value_counts()  # largest first
    chunk_rows = int(counts.iloc[0]) // 3  # the largest zip code takes several chunks
    assert materialize(schema, "00501", "01003", chunk_rows=chunk_rows).success

    def contents():
        return (table_rows(query, schema, "cleaned_companies"),
                sorted(json.dumps(r, sort_keys=True) for r in table_rows(query, schema, "cleaned_companies_quarantine")))

    def by_key(rows):
        return sorted(json.dumps(r, sort_keys=True) for r in rows)

    chunked_rows, chunked_quarantine = contents()
    assert len(chunked_rows) + len(chunked_quarantine) == len(raw)

    # The same zip codes in one chunk: the same rows, the same quarantine.
    query(sql.SQL("TRUNCATE {}, {}").format(sql.Identifier(schema, "cleaned_companies"),
                                             sql.Identifier(schema, "cleaned_companies_quarantine")))
    assert materialize(schema, "00501", "01003").success
    one_shot_rows, one_shot_quarantine = contents()
    assert by_key(chunked_rows) == by_key(one_shot_rows)
    assert chunked_quarantine == one_shot_quarantine


# --- bytes that are not UTF-8 (a SQL_ASCII database), NUL ---


@pytest.fixture
def sql_ascii_url(pg_server_url):
    name = "zip_etl_sql_ascii"
    conn = psycopg2.connect(pg_server_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        cur.execute(sql.SQL("CREATE DATABASE {} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
                    .format(sql.Identifier(name)))
    yield _with_database(pg_server_url, name)
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    conn.close()


def test_undecodable_bytes_are_quarantined_with_the_bytes_shown(sql_ascii_url):
    seed_raw(sql_ascii_url, "public", rows=200, zip_codes=["10016"])
    conn = psycopg2.connect(sql_ascii_url)
    conn.autocommit = True
    with conn.cursor() as cur:  # Latin-1 bytes, as a legacy loader would leave them
        cur.execute("UPDATE public.raw_companies SET company_name = E'Caf\\xe9 Ol\\xe9' "
                    "WHERE raw_id = (SELECT min(raw_id) FROM public.raw_companies)")
    postgres = PostgresResource(database_url=sql_ascii_url)
    result = dg.materialize(
        [raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
        resources={"postgres": postgres, "postgres_writer": PostgresWriter(postgres=postgres)},
    )
    assert result.success
    with conn.cursor() as cur:
        cur.execute("SELECT reason, detail, raw_values->>'company_name' FROM public.cleaned_companies_quarantine "
                    "WHERE reason = 'invalid_encoding'")
        assert cur.fetchall() == [("invalid_encoding", "text with bytes that are not UTF-8: company_name",
                                   "Caf\\xe9 Ol\\xe9")]
        cur.execute("SELECT (SELECT count(*) FROM public.raw_companies), (SELECT count(*) FROM "
                    "public.cleaned_companies) + (SELECT count(*) FROM public.cleaned_companies_quarantine)")
        raw_n, accounted = cur.fetchone()
    assert raw_n == accounted
    conn.close()


def test_nul_in_an_output_frame_is_refused_naming_the_column(schema, query):
    writer = PostgresWriter(postgres=PostgresResource(), target_schema=schema)
    from zip_etl.transform import clean_companies

    def write(frame):
        writer.write([CleanedChunk(replace=["10016"], cleaned=frame)], ["10016"])

    good = clean_companies(corpus_frame().iloc[[0]]).cleaned
    write(good)
    bad = good.assign(company_name=["Acme\x00Corp"])
    with pytest.raises(ValueError, match=r"NUL .* column 'company_name': 1 value\(s\), first at row 0"):
        write(bad)
    in_categories = good.assign(city=pd.Categorical(["Caf\x00"]))  # categorical text is sent dictionary-encoded
    with pytest.raises(ValueError, match=r"NUL .* column 'city': 1 value\(s\), first at row 0"):
        write(in_categories)
    surrogate = good.assign(city=["Caf\udce9"])
    with pytest.raises(ValueError, match=r"not valid Unicode .* column 'city'"):
        write(surrogate)
    names = query(sql.SQL("SELECT company_name FROM {}").format(sql.Identifier(schema, "cleaned_companies")))
    assert names == [("Acme Widgets Inc",)]  # the earlier write, untouched
