"""A run computes each zip code's raw data version from the rows it reads; the versions recorded
before (by PostgreSQL, `zip_etl.db.ddl.raw_data_versions`, what the refresh still compares with) must
be the same strings for the same rows, or every partition would look stale after an upgrade."""

import pandas as pd
import pytest
from psycopg2 import sql

from zip_etl.db.connection import transaction
from zip_etl.db.ddl import raw_data_versions
from zip_etl.partition_stream import PartitionStream
from zip_etl.resources import PostgresResource
from zip_etl.tables import RAW_COMPANIES
from zip_etl_tests.helpers import seed_raw

ZIPS = ["00501", "10016", "60614", "90210", "99950"]
# Times a version must render exactly: time zones, whole and odd microseconds, before 1970, far ahead.
TIMES = [
    "2026-03-08 02:30:00.000001-05:00", "2026-11-01 01:59:59.999999-04:00", "2026-05-01 12:00:00+05:30",
    "1969-12-31 23:59:59.999999+00:00", "1900-01-01 00:00:00.5+00:00", "2250-06-30 23:59:59.123457+14:00",
    "2026-05-01 00:00:00+00:00", "2000-02-29 12:34:56.78901-09:30",
]


@pytest.fixture
def raw_table(schema, etl_url):
    """Demo rows in shuffled raw id order, some updated since (so rows come out of id order), planted
    times, NULL update times, a zip code whose every update time is NULL, and a big raw id."""
    generated = seed_raw(etl_url, schema, rows=4000, zip_codes=ZIPS[:3], seed=6)
    table = RAW_COMPANIES.with_name(schema, "raw_companies")
    next_id = int(generated["raw_id"].max()) + 1
    with transaction(etl_url) as cursor:
        cursor.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN updated_at DROP NOT NULL").format(table.identifier))
        rows = [(next_id + i, TIMES[i % len(TIMES)], ZIPS[3], f"T{i}") for i in range(40)]
        rows += [(next_id + 100 + i, None, ZIPS[3], f"N{i}") for i in range(3)]  # NULLs count, add no text
        rows += [(next_id + 200 + i, None, ZIPS[4], f"E{i}") for i in range(2)]  # no text at all: no version
        rows += [(2**62 + 7, TIMES[0], ZIPS[1], "BIG")]
        for raw_id, updated, zip_code, record_id in reversed(rows):  # inserted against id order
            cursor.execute(sql.SQL("INSERT INTO {} (raw_id, updated_at, zip_code, record_id, company_name) "
                                   "VALUES (%s, %s, %s, %s, 'Co')").format(table.identifier),
                           (raw_id, updated, zip_code, record_id))
        # updated rows get new row versions at the end of the table: out of raw id order on disk
        cursor.execute(sql.SQL("UPDATE {} SET updated_at = updated_at + interval '1 microsecond' "
                               "WHERE raw_id %% 7 = 0 AND zip_code = ANY(%s)").format(table.identifier), (ZIPS[:2],))
        cursor.execute(sql.SQL("ANALYZE {}").format(table.identifier))
    return table


def server_versions(etl_url, table, time_zone="UTC") -> dict:
    with transaction(etl_url) as cursor:
        cursor.execute("SELECT set_config('TimeZone', %s, true)", (time_zone,))
        return raw_data_versions(cursor, table, ZIPS)


@pytest.mark.parametrize("chunk_rows", [100_000, 500, 37])
def test_versions_from_the_rows_read_equal_postgresqls(raw_table, etl_url, chunk_rows):
    """In groups of whole zip codes (100,000), and zip codes streamed in parts whose rows come out of
    raw id order (500, 37): the versions are PostgreSQL's, whatever the session's time zone."""
    expected = server_versions(etl_url, raw_table)
    assert expected == server_versions(etl_url, raw_table, "Asia/Kolkata")  # the text is time-zone free
    assert expected[ZIPS[4]] is None and expected[ZIPS[3]].startswith("43-")

    stream = PartitionStream(PostgresResource(raw_schema=raw_table.schema).raw_snapshot(), ZIPS, chunk_rows)
    for _ in stream:
        pass
    assert stream.raw_versions == expected
    if chunk_rows < 1000:
        assert stream.chunks > len(ZIPS)  # zip codes really streamed in parts


def test_versions_change_with_a_microsecond(raw_table, etl_url):
    before = PartitionStream(PostgresResource(raw_schema=raw_table.schema).raw_snapshot(), ZIPS, 500)
    list(before)
    with transaction(etl_url) as cursor:
        cursor.execute(sql.SQL("UPDATE {} SET updated_at = updated_at + interval '1 microsecond' WHERE raw_id = "
                               "(SELECT min(raw_id) FROM {} WHERE zip_code = %s)").format(raw_table.identifier,
                                                                                        raw_table.identifier),
                       (ZIPS[1],))
    after = PartitionStream(PostgresResource(raw_schema=raw_table.schema).raw_snapshot(), ZIPS, 500)
    list(after)
    changed = {z for z in ZIPS if before.raw_versions[z] != after.raw_versions[z]}
    assert changed == {ZIPS[1]}
    assert after.raw_versions == server_versions(etl_url, raw_table)
    assert pd.Series(after.raw_versions).notna().sum() == 4
