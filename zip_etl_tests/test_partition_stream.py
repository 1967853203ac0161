"""A run streamed in chunks gives exactly what one-shot cleaning of the same rows gives, on the real
PostgreSQL path: cleaned rows, rejected rows, reasons and details, including duplicates whose rows
land in different chunks of a zip code larger than one chunk."""

import pandas as pd
import pytest
from psycopg2 import sql

from zip_etl.demo_data import generate_raw_companies
from zip_etl.partition_stream import PartitionStream
from zip_etl.resources import PostgresResource, PostgresWriter
from zip_etl.transform import clean_companies
from zip_etl_tests.helpers import seed_raw

ZIPS = ["00501", "10016", "60614", "90210"]
TS = pd.Timestamp("2026-05-01", tz="UTC")


def planted_duplicates(first_raw_id: int) -> pd.DataFrame:
    """Record ids that differ only in case, spaces or Unicode form, spread over the whole zip code."""
    base = {"company_name": "Planted Co", "street_address": "1 Main St", "city": "chicago", "state": "IL",
            "zip_code": "60614", "postal_code": "60614", "phone": "312-555-0100", "employees": "3",
            "annual_revenue": "1K", "founded_year": "1990", "industry": "retail"}
    variants = [
        ("DUP-A", TS), (" dup-a ", TS + pd.Timedelta(days=1)), ("dup-a", TS - pd.Timedelta(days=1)),  # middle wins
        ("DUP-B", TS), ("dup-b", TS),  # a tie: the lower raw id wins
        ("Café-C", TS), ("CAFE\u0301-C", TS + pd.Timedelta(days=2)),  # NFC makes them one id; the later wins
        ("dup\u00a0d", TS), ("DUP D", TS - pd.Timedelta(days=3)), ("Dup\td", TS - pd.Timedelta(days=4)),
        ("COLLIDE-1", TS), ("COLLIDE-2", TS),  # two different ids (a test gives them one hash)
    ]
    rows = [{**base, "record_id": rid, "updated_at": ts} for rid, ts in variants]
    frame = pd.DataFrame(rows)
    frame.insert(0, "raw_id", range(first_raw_id, first_raw_id + len(frame)))
    return frame


@pytest.fixture
def raw(schema, etl_url):
    generated = generate_raw_companies(3000, ZIPS, seed=5)
    planted = planted_duplicates(int(generated["raw_id"].max()) + 1)
    # Planted rows spread through the table: the first, the middle and the last chunks get some.
    pieces = [generated.iloc[:100], planted.iloc[:4], planted.iloc[10:11], generated.iloc[100:1500],
              planted.iloc[4:7], generated.iloc[1500:], planted.iloc[7:10], planted.iloc[11:]]
    frame = pd.concat(pieces, ignore_index=True)[list(generated.columns)]
    seed_raw(etl_url, schema, frame)
    return frame


def stream_to_tables(etl_url, schema, chunk_rows, clean=clean_companies):
    """The asset's path: a PartitionStream written by the writer's one write transaction."""
    postgres = PostgresResource(raw_schema=schema)
    writer = PostgresWriter(postgres=postgres, target_schema=schema)
    stream = PartitionStream(postgres.raw_snapshot(), ZIPS, chunk_rows, clean=clean)
    writer.write(stream, ZIPS)
    return stream


def table_contents(query, schema):
    cleaned = query(sql.SQL("SELECT * FROM {} ORDER BY raw_id").format(sql.Identifier(schema, "cleaned_companies")))
    rejected = query(sql.SQL("SELECT zip_code, (raw_values->>'raw_id')::bigint, reason, detail FROM {} ORDER BY 2")
                     .format(sql.Identifier(schema, "cleaned_companies_quarantine")))
    return cleaned, rejected


def expected_contents(raw_frame):
    """One-shot cleaning of every row, in the shape the tables are read back in."""
    result = clean_companies(raw_frame)
    cleaned = result.cleaned.sort_values("raw_id")
    rows = [tuple(None if pd.isna(v) else v for v in r) for r in cleaned.astype(object).itertuples(index=False)]
    rejected = sorted((r.zip_code, int(r.raw_id), r.reason, r.detail) for r in result.rejected.itertuples())
    return result, rows, rejected


@pytest.mark.parametrize("chunk_rows", [10_000, 173, 7])
def test_chunked_output_equals_one_shot_cleaning(raw, schema, etl_url, query, chunk_rows):
    stream = stream_to_tables(etl_url, schema, chunk_rows)
    cleaned, rejected = table_contents(query, schema)
    result, expected_cleaned, expected_rejected = expected_contents(raw)

    def normalised(rows):
        return [tuple(v.isoformat() if hasattr(v, "isoformat") else v for v in r) for r in rows]

    assert normalised(cleaned) == normalised(expected_cleaned)
    assert sorted(rejected) == expected_rejected
    duplicates = [r for r in rejected if r[2] == "duplicate"]
    assert len(duplicates) >= 20  # the demo's re-sent records and the planted ones
    stats = stream.stats
    assert stats["rows_in"].sum() == len(raw)
    assert stats["rows_out"].sum() == len(cleaned)
    assert stats["rejected_duplicate"].sum() == len(duplicates)
    assert stream.unparseable == result.unparseable
    counts = dict((z, (n, q)) for z, n, q in query(sql.SQL("SELECT zip_code, rows, rows_quarantined FROM {}").format(
        sql.Identifier(schema, "cleaned_companies_partitions"))))
    assert counts == {z: (int((result.cleaned["zip_code"] == z).sum()), int((result.rejected["zip_code"] == z).sum()))
                      for z in ZIPS}
    if chunk_rows < 1000:
        assert stream.chunks > len(ZIPS)  # the zip codes really were split
    if chunk_rows < 1000:
        assert stream.chunks > len(ZIPS)  # the zip codes really were split
        assert stream.duplicates_across_chunks > 0  # and duplicates met across chunks


def test_a_hash_collision_is_caught_and_the_zip_code_streamed_again(raw, schema, etl_url, query, monkeypatch):
    """Different record ids with equal hashes must not be taken for duplicates: with a hash that
    collides on purpose, the zip code's end notices, and streams it again with another hash key."""
    from zip_etl import partition_stream

    real_hash = partition_stream._WinnerIndex.hash
    attempts = []

    def colliding_hash(self, keys):
        attempts.append(self.hash_key)
        hashes = real_hash(self, keys)
        if self.hash_key.endswith("00"):  # COLLIDE-2 (late in the zip code) gets COLLIDE-1's hash
            hashes[keys == "COLLIDE-2"] = real_hash(self, pd.Series(["COLLIDE-1"]).to_numpy(dtype=object))[0]
        return hashes

    monkeypatch.setattr(partition_stream._WinnerIndex, "hash", colliding_hash)
    stream_to_tables(etl_url, schema, 173)
    assert any(k.endswith("00") for k in attempts) and any(k.endswith("01") for k in attempts)
    cleaned, rejected = table_contents(query, schema)
    _, expected_cleaned, expected_rejected = expected_contents(raw)
    assert [r[-2] for r in cleaned] == [r[-2] for r in expected_cleaned]  # the same raw ids written
    assert sorted(rejected) == expected_rejected


def test_a_large_zip_code_that_fails_part_way_keeps_its_previous_rows(raw, schema, etl_url, query, monkeypatch):
    stream_to_tables(etl_url, schema, 10_000)
    before, _ = table_contents(query, schema)
    poisoned = int(raw.loc[raw["zip_code"] == "60614", "raw_id"].iloc[-1])  # late in the zip code's rows

    def clean(frame):
        if (frame["raw_id"].astype("int64") == poisoned).any():
            raise RuntimeError("poisoned row")
        return clean_companies(frame)

    query(sql.SQL("UPDATE {} SET company_name = 'changed'").format(sql.Identifier(schema, "raw_companies")))
    stream = stream_to_tables(etl_url, schema, 173, clean=clean)
    assert list(stream.failures) == ["60614"] and "poisoned row" in stream.failures["60614"]
    after, _ = table_contents(query, schema)
    assert [r for r in after if r[0] == "60614"] == [r for r in before if r[0] == "60614"]
    others = [r for r in after if r[0] != "60614"]
    assert others and all(r[2] == "Changed" or r[2] == "changed" for r in others)
    assert "60614" not in stream.stats.index
