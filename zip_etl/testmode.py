"""Test mode: the same asset code on a small sample table, written to a test schema, and compared
with a hand-written source of truth (zip_etl/fixtures/, loaded by `zip-etl load-fixtures`).

Test mode is its own code location (`zip_etl_test` in workspace.yaml) with the same asset code under
the key prefix `test/` (so its materializations never count as production's): its resources read
`public.raw_companies_sample` and write `zip_etl_test.cleaned_companies`, never the production
tables, and it adds the `matches_truth` check. In the UI open `test/cleaned_companies`, materialize
partitions 10016 and 00501, and watch the checks.
"""

import json
from pathlib import Path

import dagster as dg
import pandas as pd
from psycopg2 import sql

import zip_etl.console_logger  # noqa: F401 - a Failure on the terminal: its one line, not its stack trace
from zip_etl import settings
from zip_etl.db.ddl import ensure_table
from zip_etl.db.snapshot import TableSnapshot
from zip_etl.definitions import EXECUTORS
from zip_etl.defs.assets import cleaned_companies, raw_companies
from zip_etl.defs.checks import QUALITY_CHECKS, check_scope, coverage
from zip_etl.defs.resources import resources
from zip_etl.demo_data import insert_rows
from zip_etl.resources import PostgresWriter
from zip_etl.tables import CLEANED_COMPANIES, RAW_COMPANIES, Table

FIXTURES = Path(__file__).parent / "fixtures"
TEST_SCHEMA = "zip_etl_test"
SAMPLE_TABLE = RAW_COMPANIES.with_name("public", "raw_companies_sample")
TRUTH_TABLE = CLEANED_COMPANIES.with_name(TEST_SCHEMA, "cleaned_companies_truth")


def read_fixture(name: str, table: Table) -> pd.DataFrame:
    """A JSON Lines fixture as a frame typed like `table` (nulls stay nulls, text stays text)."""
    records = [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines() if line]
    frame = pd.DataFrame.from_records(records, columns=table.column_names).astype(object)
    for column in table.columns:
        if column.sql_type.startswith("timestamp"):
            frame[column.name] = pd.to_datetime(frame[column.name], utc=True)
        elif column.sql_type in ("smallint", "integer", "bigint"):
            frame[column.name] = pd.array(frame[column.name].tolist(), dtype="Int64")
    return frame


def load_fixtures(cursor) -> tuple[int, int]:
    """(Re)load the sample raw table and the truth table; return their row counts."""
    counts = []
    for name, table in (("raw_companies_sample.jsonl", SAMPLE_TABLE), ("cleaned_companies_truth.jsonl", TRUTH_TABLE)):
        frame = read_fixture(name, table)
        ensure_table(cursor, table)
        cursor.execute(sql.SQL("TRUNCATE {}").format(table.identifier))
        insert_rows(cursor, table, frame)
        counts.append(len(frame))
    return counts[0], counts[1]


def read_table(url: str, table: Table, zip_codes) -> pd.DataFrame:
    with TableSnapshot(url, table, arrow_dtypes=False) as snapshot:
        frames = list(snapshot.rows(zip_codes, chunk_rows=1 << 62))
        return frames[0] if frames else snapshot.empty_frame()


FLOAT_TOLERANCE = 1e-9  # relative; the cleaned table has no float columns today


def compare_with_truth(actual: pd.DataFrame, truth: pd.DataFrame, key: list[str]) -> list[str]:
    """Readable differences: missing/extra keys, then column values, first ones first."""
    problems = []
    actual_keys = set(map(tuple, actual[key].astype(str).values.tolist()))
    truth_keys = set(map(tuple, truth[key].astype(str).values.tolist()))
    for k in sorted(truth_keys - actual_keys):
        problems.append(f"{'/'.join(k)}: expected row missing")
    for k in sorted(actual_keys - truth_keys):
        problems.append(f"{'/'.join(k)}: unexpected row")
    merged = truth.merge(actual, on=key, suffixes=("_expected", "_actual"))
    for column in [c for c in truth.columns if c not in key]:
        for _, row in merged.iterrows():
            expected, got = row[f"{column}_expected"], row[f"{column}_actual"]
            if pd.isna(expected) and pd.isna(got):
                continue
            if isinstance(expected, float) and isinstance(got, float):
                same = abs(expected - got) <= FLOAT_TOLERANCE * max(1.0, abs(expected))
            else:
                same = not pd.isna(expected) and not pd.isna(got) and expected == got
            if not same:
                where = "/".join(str(row[k]) for k in key)
                problems.append(f"{where}: {column} expected {expected!r}, got {got!r}")
    return problems


TEST_KEYS = {
    cleaned_companies.key: dg.AssetKey(["test", "cleaned_companies"]),
    raw_companies.key: dg.AssetKey(["test", "raw_companies"]),
}
test_cleaned_companies = cleaned_companies.with_attributes(asset_key_replacements=TEST_KEYS)
test_raw_companies = raw_companies.with_attributes(key=TEST_KEYS[raw_companies.key])


@dg.asset_check(asset=test_cleaned_companies, description="test partitions equal the hand-written truth table")
def matches_truth(
    context: dg.AssetCheckExecutionContext, postgres_writer: dg.ResourceParam[PostgresWriter]
) -> dg.AssetCheckResult:
    with check_scope(context, postgres_writer) as scope:
        if not scope.exists:
            return dg.AssetCheckResult(passed=False, description="the test table does not exist yet",
                                       metadata=coverage(scope.keys))
        url = postgres_writer.postgres.url()
        truth = read_table(url, TRUTH_TABLE, None)
        keys = sorted(set(truth["zip_code"]) & set(scope.keys if scope.keys is not None else truth["zip_code"]))
        actual = read_table(url, scope.table, keys)
    truth = truth[truth["zip_code"].isin(keys)]
    problems = compare_with_truth(actual.astype(object), truth.astype(object), list(CLEANED_COMPANIES.primary_key))
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(problems[:5]) if problems else None,
        metadata={
            **coverage(scope.keys),
            "zip_codes_compared": dg.MetadataValue.json(keys),
            "rows_expected": len(truth),
            "rows_actual": len(actual),
            "mismatches": len(problems),
            "first_mismatches": dg.MetadataValue.json(problems[:20]),
        },
    )


defs = dg.Definitions(
    assets=[test_raw_companies, test_cleaned_companies],
    asset_checks=[*(c.with_attributes(asset_key_replacements=TEST_KEYS) for c in QUALITY_CHECKS), matches_truth],
    resources=resources(raw_schema=SAMPLE_TABLE.schema, raw_table=SAMPLE_TABLE.name, target_schema=TEST_SCHEMA),
    executor=EXECUTORS[settings.executor()],
)
