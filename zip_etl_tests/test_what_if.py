"""What-if debug runs: after a rule change (and a few upstream edits), a debug run reports exactly
what a write would change, per zip code and per run, and leaves both tables byte-identical."""

import time

import dagster as dg
import pandas as pd
import psycopg2
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from psycopg2 import sql

from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from zip_etl.definitions import cleaned_companies, cleaned_companies_debug, raw_companies
from zip_etl.transform import cleaning, rules
from zip_etl_tests.helpers import pipeline_resources, run_facts, seed_raw


def raw_row(raw_id, zip_code, record_id, name, *, updated="2026-01-03", postal=None, phone=None, city="new york"):
    return {"raw_id": raw_id, "updated_at": pd.Timestamp(updated, tz="UTC"), "record_id": record_id,
            "company_name": name, "street_address": None, "city": city, "state": "NY", "zip_code": zip_code,
            "postal_code": postal or zip_code, "phone": phone, "employees": None, "annual_revenue": None,
            "founded_year": None, "industry": None}


# Each row's fate under the changed rules is in its comment.
RAW_ROWS = [
    raw_row(1, "00544", "A1", "Acme", phone="212-555-0101"),  # a duplicate of raw 11, before and after
    raw_row(2, "00544", "A2", "Beta"),                        # city and update time edited upstream
    raw_row(3, "00544", "LONGID7", "Gamma"),                  # record id now too long: disappears, rejected
    raw_row(4, "00544", "LONGID8", None),                     # rejected before for no name, now for its id
    raw_row(5, "00544", "A5", "Epsilon", postal="99999"),     # zip_mismatch before and after
    raw_row(6, "00544", "A6", None),                          # name filled upstream: appears, no longer rejected
    raw_row(7, "00501", "B1", "Holtsville Co", phone="631 555 0110"),  # phone loses its +1
    raw_row(8, "00501", "b1", "Holtsville Old", updated="2026-01-01"),  # duplicate of raw 7, before and after
    raw_row(9, "00601", "C1", "Adjuntas Co"),                 # zip code never built: appears
    raw_row(10, "00601", "C2", None),                         # zip code never built: newly rejected
    raw_row(11, "00544", "a1", "Acme", updated="2026-01-04", phone="212-555-0101"),  # newer than raw 1: kept
]

EXPECTED_TOTALS = {"rows_appear": 2, "rows_disappear": 1, "rows_change": 3,
                   "newly_rejected": 2, "no_longer_rejected": 1, "rejected_for_another_reason": 1}
EXPECTED_PER_ZIP = {
    "00501": {"rows_appear": 0, "rows_disappear": 0, "rows_change": 1,
              "newly_rejected": 0, "no_longer_rejected": 0, "rejected_for_another_reason": 0},
    "00544": {"rows_appear": 1, "rows_disappear": 1, "rows_change": 2,
              "newly_rejected": 1, "no_longer_rejected": 1, "rejected_for_another_reason": 1},
    "00601": {"rows_appear": 1, "rows_disappear": 0, "rows_change": 0,
              "newly_rejected": 1, "no_longer_rejected": 0, "rejected_for_another_reason": 0},
}


def cleaned(rule: str, raw_value: str) -> str:
    """What today's rule makes of a raw value (the expectations below follow the rules, not a copy)."""
    return cleaning.RULES_BY_NAME[rule].function(pa.array([raw_value])).to_pylist()[0]


PHONE_B1, PHONE_A1 = cleaned("phone", "631 555 0110"), cleaned("phone", "212-555-0101")
EXPECTED_EXAMPLES = [
    "00544/A6: would appear",
    "00601/C1: would appear",
    "00544/LONGID7: would disappear",
    f"00544/A2: city {cleaned('city', 'new york')!r} -> {cleaned('city', 'brooklyn')!r}",
    f"00501/B1: phone {PHONE_B1!r} -> {PHONE_B1[2:]!r}",  # the changed phone rule drops E.164's +1
    f"00544/A1: phone {PHONE_A1!r} -> {PHONE_A1[2:]!r}",
    "00544/A2: source_updated_at '2026-01-03T00:00:00+00:00' -> '2026-02-01T00:00:00+00:00'",
    "00544/raw_id 3: would be rejected (record_id_too_long)",
    "00601/raw_id 10: would be rejected (missing_company_name)",
    "00544/raw_id 6: would no longer be rejected (was missing_company_name)",
    "00544/raw_id 4: reason 'missing_company_name' -> 'record_id_too_long'",
]


def definitions(schema, **postgres_settings):
    return dg.Definitions(assets=[raw_companies, cleaned_companies], jobs=[cleaned_companies_debug],
                          resources=pipeline_resources(schema, **postgres_settings))


def run(defs, instance, first, last, *, debug):
    job = defs.resolve_job_def("cleaned_companies_debug") if debug else defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=instance, asset_selection=None if debug else [cleaned_companies.key],
        tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}, raise_on_error=False)


def change_the_rules(monkeypatch):
    """The rule change under review: phones lose E.164's +1, record ids may have at most 6 characters."""
    phone = cleaning.RULES_BY_NAME["phone"]
    original = phone.function
    monkeypatch.setattr(phone, "function", lambda raw: pc.utf8_slice_codeunits(original(raw), 2))
    monkeypatch.setattr(rules, "MAX_RECORD_ID_LENGTH", 6)


def edit_upstream(query, schema):
    """Two upstream edits since the build: raw 2 moved city, raw 6 got its name."""
    raw = sql.Identifier(schema, "raw_companies")
    query(sql.SQL("UPDATE {} SET city = 'brooklyn', updated_at = '2026-02-01T00:00:00Z' WHERE raw_id = 2").format(raw))
    query(sql.SQL("UPDATE {} SET company_name = 'Zeta', updated_at = '2026-02-01T00:00:00Z' WHERE raw_id = 6").format(raw))


def fingerprint(query, schema, name):
    """md5 of the table's rows in a fixed order, and its row count."""
    table = sql.Identifier(schema, name)
    return query(sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {} t")
                 .format(table))[0]


def tuple_counters(etl_url, schema, names):
    """Inserted, updated and deleted tuples per table since the server started, read on a fresh
    connection once no other connection of zip_etl is open (a backend flushes its counters as it ends)."""
    deadline = time.monotonic() + 30
    with psycopg2.connect(etl_url) as conn, conn.cursor() as cur:
        while True:
            cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND application_name = 'zip_etl' AND pid <> pg_backend_pid()")
            if cur.fetchone()[0] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
            cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT pg_stat_clear_snapshot()")
        cur.execute("SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
                    "WHERE schemaname = %s AND relname = ANY(%s)", (schema, list(names)))
        found = {name: tuple(counters) for name, *counters in cur.fetchall()}
    conn.close()
    return found


@pytest.fixture
def built(schema, etl_url, query):
    """The seeded table built with the current rules over 00501..00544 (00601 never built)."""
    frame = pd.DataFrame(RAW_ROWS)
    frame["raw_id"] = frame["raw_id"].astype("int64")
    seed_raw(etl_url, schema, frame)
    instance = dg.DagsterInstance.ephemeral()
    result = run(definitions(schema), instance, "00501", "00544", debug=False)
    assert result.success
    assert query(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "cleaned_companies")))[0][0] == 4
    return schema, instance


TABLES = ("cleaned_companies", "cleaned_companies_quarantine")


def test_a_debug_run_reports_what_a_rule_change_would_change_and_writes_nothing(built, etl_url, query, monkeypatch):
    schema, instance = built
    edit_upstream(query, schema)
    change_the_rules(monkeypatch)
    before = {name: fingerprint(query, schema, name) for name in TABLES}
    counters_before = tuple_counters(etl_url, schema, TABLES)
    assert all(counters_before[name][0] > 0 for name in TABLES)  # the build's inserts are counted: the check can fail

    result = run(definitions(schema), instance, "00501", "00601", debug=True)

    assert result.success
    assert {name: fingerprint(query, schema, name) for name in TABLES} == before
    assert tuple_counters(etl_url, schema, TABLES) == counters_before  # nothing inserted, updated or deleted
    assert result.get_asset_materialization_events() == []

    facts = run_facts(result)
    assert {name: facts[f"what_if_{name}"].value for name in EXPECTED_TOTALS} == EXPECTED_TOTALS
    assert facts["what_if_zip_codes_compared"].value == 3
    assert facts["what_if_zip_codes_with_differences"].value == 3
    changed = {c: facts[f"what_if_changed_{c}"].value for c in cleaning.CLEANED_COLUMNS
               if f"what_if_changed_{c}" in facts}
    assert {c: n for c, n in changed.items() if n} == {"city": 1, "phone": 2, "source_updated_at": 1}
    assert set(changed) == set(cleaning.CLEANED_COLUMNS) - {"zip_code", "record_id"}  # zeros listed too
    assert facts["what_if_examples"].value == EXPECTED_EXAMPLES
    assert facts["what_if_compared_with"].value == f"{schema}.cleaned_companies and {schema}.cleaned_companies_quarantine"

    per_zip = {e.asset_observation_data.asset_observation.partition: e.asset_observation_data.asset_observation.metadata
               for e in result.get_asset_observation_events()
               if e.asset_observation_data.asset_observation.partition is not None}
    assert {z: {name: m[f"what_if_{name}"].value for name in EXPECTED_TOTALS} for z, m in per_zip.items()} == EXPECTED_PER_ZIP
    assert per_zip["00544"]["what_if_changed_columns"].value == {"city": 1, "phone": 1, "source_updated_at": 1}
    assert per_zip["00501"]["what_if_changed_columns"].value == {"phone": 1}
    assert "what_if_changed_columns" not in per_zip["00601"]


def test_unchanged_rules_and_data_report_no_difference(built):
    schema, instance = built
    result = run(definitions(schema), instance, "00501", "00544", debug=True)
    assert result.success
    facts = run_facts(result)
    assert all(facts[f"what_if_{name}"].value == 0 for name in EXPECTED_TOTALS)
    assert facts["what_if_zip_codes_with_differences"].value == 0
    assert facts["what_if_examples"].value == []


def test_a_zip_code_streamed_in_parts_is_compared_once_its_duplicates_are_settled(built, query, monkeypatch):
    """Chunks of 2 rows: 00544 (7 rows) streams in four parts, and raw 11, in its last part, replaces
    raw 1's row written by its first; the report is the same as with whole zip codes."""
    schema, instance = built
    edit_upstream(query, schema)
    change_the_rules(monkeypatch)
    whole = run_facts(run(definitions(schema), instance, "00501", "00601", debug=True))
    parts = run(definitions(schema, chunk_rows=2), instance, "00501", "00601", debug=True)
    assert parts.success
    facts = run_facts(parts)
    assert facts["run_chunks"].value > whole["run_chunks"].value  # it did stream in parts
    compared = [k for k in facts if k.startswith("what_if_") and k != "what_if_seconds"]
    assert {k: facts[k].value for k in compared} == {k: whole[k].value for k in compared}


def test_a_table_that_does_not_exist_yet_would_get_every_row(schema, etl_url, query, monkeypatch):
    frame = pd.DataFrame(RAW_ROWS)
    frame["raw_id"] = frame["raw_id"].astype("int64")
    seed_raw(etl_url, schema, frame)
    result = run(definitions(schema), dg.DagsterInstance.ephemeral(), "00501", "00601", debug=True)
    assert result.success
    facts = run_facts(result)
    assert facts["what_if_rows_appear"].value == 5  # raw 11, 2, 3, 7, 9: cleaned under today's rules
    assert facts["what_if_newly_rejected"].value == 6
    assert facts["what_if_rows_disappear"].value == facts["what_if_rows_change"].value == 0
    assert facts["what_if_compared_with"].value == (
        f"{schema}.cleaned_companies (does not exist yet: every cleaned row would appear) and "
        f"{schema}.cleaned_companies_quarantine (does not exist yet: every rejected row would be newly rejected)")
    assert query("SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (schema,))[0][0] == 1
