"""Test mode's data: a small sample table and a hand-written source of truth (zip_etl/fixtures/, loaded
by `zip-etl load-fixtures`), and the comparison of a cleaned table with that truth.

Test mode itself is a second instance of the cleaned_companies component
(zip_etl/testmode_defs/cleaned_companies/defs.yaml), its own code location (`zip_etl_test`,
zip_etl/testmode_definitions.py) under the key prefix `test/` (so its materializations never count as
production's): it reads `public.raw_companies_sample`, writes `zip_etl_test.cleaned_companies`, never
the production tables, and has the `matches_truth` check (zip_etl/defs/checks.py), which compares
with the truth table here.
"""

import json
from pathlib import Path

import pandas as pd
from psycopg2 import sql

from zip_etl.db.ddl import ensure_table
from zip_etl.db.snapshot import TableSnapshot
from zip_etl.demo_data import insert_rows
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
