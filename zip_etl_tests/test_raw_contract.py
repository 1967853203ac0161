"""The raw-table contract (docs/RAW_TABLE.md), generated from RAW_COMPANIES, and `zip-etl check-raw-table`
on real tables: the one `zip-etl seed` creates, and a user's own table with the usual differences."""

import re
import subprocess
import sys
from pathlib import Path

from psycopg2 import sql

from zip_etl.raw_contract import COLUMN_ROLES, contract_markdown, documented_contract
from zip_etl.tables import RAW_COMPANIES

ROOT = Path(__file__).resolve().parents[1]


def zip_etl(*args):
    return subprocess.run([sys.executable, "-m", "zip_etl.cli.main", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_the_documented_contract_is_the_one_generated_from_the_declaration():
    assert documented_contract() == contract_markdown(), (
        "docs/RAW_TABLE.md differs from RAW_COMPANIES: run `python -m zip_etl.raw_contract`")


def test_every_declared_column_is_described():
    assert set(COLUMN_ROLES) == set(RAW_COMPANIES.column_names)


def test_the_table_zip_etl_seed_creates_meets_the_contract(zip_etl_environment):
    assert zip_etl("seed", "--rows", "3000").returncode == 0
    result = zip_etl("check-raw-table")
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 problem(s), 0 warning(s): zip_etl can read it." in result.stdout
    assert "raw_companies_zip_code_idx serves each run's read of its zip codes" in result.stdout


USER_TABLE = """
CREATE TABLE {t} (
  raw_id integer, updated_at text, record_id varchar(64), company_name text, street_address text, city text,
  state char(2), zip_code integer, postal_code text, employees integer, annual_revenue text, founded_year text,
  industry text, loyalty_tier text);
INSERT INTO {t} (raw_id, updated_at, record_id, company_name, zip_code) VALUES
  (1, '2026-01-01 10:00+00', 'A', 'Acme', 501), (1, '2026-01-02 10:00+00', 'B', 'Beta', 10016),
  (NULL, '2026-01-03 10:00+00', 'C', 'Gamma', 10016);
CREATE INDEX ON {t} (raw_id, zip_code);
"""


def table_state(query, schema: str) -> list:
    """Everything the check could change: columns, constraints, indexes, rows."""
    return [
        query("SELECT column_name, data_type, is_nullable FROM information_schema.columns WHERE table_schema = %s "
              "ORDER BY 1", (schema,)),
        query("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE connamespace = %s::regnamespace "
              "ORDER BY 1", (schema,)),
        query("SELECT indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1", (schema,)),
        query(sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t").format(
            sql.Identifier(schema, "companies"))),
    ]


def test_a_users_own_table_gets_each_difference_named_with_its_fix_and_is_left_unchanged(schema, query):
    table = sql.Identifier(schema, "companies")
    for statement in USER_TABLE.strip().split(";\n"):
        query(sql.SQL(statement).format(t=table))
    before = table_state(query, schema)

    result = zip_etl("check-raw-table", "--schema", schema, "--table", "companies")
    out = result.stdout
    print(out)
    assert result.returncode == 1, out + result.stderr
    where = f"{schema}.companies"
    expected = [
        rf"PROBLEM +columns +missing \['phone'\]: .* ALTER TABLE {where} ADD COLUMN phone text;",
        r"ok +columns +ignored, not declared: \['loyalty_tier'\]",
        rf"WARN +column raw_id +is integer, declared bigint: it is cast on every read \(works\)\. "
        rf"To match: ALTER TABLE {where} ALTER COLUMN raw_id TYPE bigint;",
        rf"PROBLEM +column raw_id +1 row\(s\) have NULL raw_id, .* ALTER TABLE {where} ALTER COLUMN raw_id SET NOT NULL;",
        rf"PROBLEM +column updated_at +is text, declared timestamp with time zone: .* "
        rf"ALTER TABLE {where} ALTER COLUMN updated_at TYPE timestamptz USING updated_at::timestamptz;",
        rf"PROBLEM +column zip_code +is integer, not text: zip codes must be text to keep their leading zeros "
        rf"\(00501\)\. ALTER TABLE {where} ALTER COLUMN zip_code TYPE text USING lpad\(zip_code::text, 5, '0'\);",
        r"WARN +column employees +is integer, declared text: it is cast to text on every read",
        r"PROBLEM +key +raw_id is not unique \(e\.g\. 1 \(2 rows\)\)",
        r"WARN +zip codes +1 of 3 row\(s\) under 1 value\(s\) that are no partition .*: '501' \(1\)",
        r"^5 problem\(s\), 5 warning\(s\): fix the PROBLEM lines before zip_etl reads it\. .* this command changed nothing\.",
    ]
    for pattern in expected:
        assert re.search(pattern, out, re.M), f"{pattern!r} not in:\n{out}"
    assert table_state(query, schema) == before  # read only: nothing changed

    # Following the printed statements for the zip code, the index and the missing column leaves those lines ok.
    query(sql.SQL("ALTER TABLE {} ALTER COLUMN zip_code TYPE text USING lpad(zip_code::text, 5, '0')").format(table))
    out = zip_etl("check-raw-table", "--schema", schema, "--table", "companies").stdout
    create_index = re.search(r"PROBLEM +index +no B-tree index led by zip_code: .* (CREATE INDEX CONCURRENTLY [^;]+;)", out)
    assert create_index, out
    add_phone = re.search(r"(ALTER TABLE \S+ ADD COLUMN phone text;)", out).group(1)
    for statement in (create_index.group(1), add_phone):  # the query fixture autocommits, as CONCURRENTLY needs
        query(statement)
    out = zip_etl("check-raw-table", "--schema", schema, "--table", "companies").stdout
    assert re.search(r"ok +index +companies_zip_code_idx serves each run's read of its zip codes", out), out
    assert "missing ['phone']" not in out and "zip codes must be text" not in out, out
    assert re.search(r"ok +zip codes +all 3 rows are under partitions", out), out
