"""PostgresWriter against a real PostgreSQL server: atomic, idempotent partition replaces; exact values;
the partition counts and totals it keeps; its writing thread's errors, and its producer's."""

import pandas as pd
import pytest
from psycopg2 import sql

from zip_etl.db.snapshot import TableSnapshot
from zip_etl.partition_stream import CleanedChunk
from zip_etl.resources import PostgresResource, PostgresWriter
from zip_etl.resources.writer import target_totals, write_target
from zip_etl.tables import CLEANED_TARGET, Column, Table, Target

TRICKY_TEXT = [
    "plain",
    "",
    None,
    "comma, \"quote\" and 'single'",
    "tab\there\nnewline\r\ncarriage",
    "back\\slash \\N \\. end\\",
    "\\N",
    "NULL",
    "Zoë Café 東京 🍕",
    " leading and trailing ",
    "x" * 100_000,
]


@pytest.fixture
def target(schema) -> Target:
    return Target.of(Table(
        schema=schema,
        name="companies_test",
        columns=(
            Column("zip_code", "text", nullable=False),
            Column("name", "text"),
            Column("small", "smallint"),
            Column("big", "bigint"),
            Column("ratio", "double precision"),
            Column("flag", "boolean"),
            Column("seen_at", "timestamptz"),
        ),
        partition_column="zip_code",
    ))


def frame(zip_code: str, names: list) -> pd.DataFrame:
    n = len(names)
    return pd.DataFrame(
        {
            "zip_code": [zip_code] * n,
            "name": pd.Series(names, dtype=object),
            "small": pd.array([i if i % 3 else None for i in range(n)], dtype="Int16"),
            "big": pd.array([2**62 + i for i in range(n)], dtype="Int64"),
            "ratio": [0.1 * i if i % 4 else float("nan") for i in range(n)],
            "flag": pd.array([bool(i % 2) if i % 5 else None for i in range(n)], dtype="boolean"),
            "seen_at": pd.to_datetime([f"2026-01-{i % 28 + 1:02d} 12:34:56.789012" for i in range(n)], utc=True),
        }
    )


def write(target: Target, zip_code: str, rows: pd.DataFrame, rejected: pd.DataFrame | None = None):
    return write_target(PostgresResource().url(), target, [CleanedChunk(replace=[zip_code], cleaned=rows, rejected=rejected)],
                        [zip_code])


def load(target: Target, zip_code: str) -> pd.DataFrame:
    with TableSnapshot(PostgresResource().url(), target.table, arrow_dtypes=False) as snapshot:
        return snapshot.frame(list(snapshot.batches_by_zip_code([zip_code])))


def count(query, table: Table, zip_code=None) -> int:
    where = sql.SQL("") if zip_code is None else sql.SQL(" WHERE zip_code = %s")
    return query(sql.SQL("SELECT count(*) FROM {}").format(table.identifier) + where, (zip_code,) if zip_code else None)[0][0]


def test_creates_the_three_tables_from_their_declaration(target, query):
    write(target, "10016", frame("10016", ["a", "b"]))
    columns = query("SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                    "WHERE table_schema = %s AND table_name = 'companies_test' ORDER BY ordinal_position",
                    (target.table.schema,))
    assert columns[0] == ("zip_code", "text", "NO")
    assert [c[1] for c in columns[1:]] == ["text", "smallint", "bigint", "double precision", "boolean",
                                            "timestamp with time zone"]
    for table in (target.quarantine, target.counts):
        assert query("SELECT to_regclass(%s) IS NOT NULL", (table.qualified_name,)) == [(True,)]


def test_rewrite_is_idempotent_and_touches_only_its_partition(target, query):
    write(target, "10016", frame("10016", ["a", "b", "c"]))
    write(target, "01001", frame("01001", ["x"]))
    write(target, "10016", frame("10016", ["a", "b", "c"]))
    result = write(target, "10016", frame("10016", ["a", "b", "c"]))
    assert count(query, target.table, "10016") == 3
    assert count(query, target.table, "01001") == 1
    assert result.rows_written == 3
    assert target_totals(PostgresResource().url(), target) == {"rows": 4, "rows_quarantined": 0, "partitions": 2}


def test_special_text_round_trips_exactly(target):
    original = frame("10016", TRICKY_TEXT)
    write(target, "10016", original)
    loaded = load(target, "10016")
    assert loaded["name"].tolist() == TRICKY_TEXT  # '' stays '', None stays None, \N stays \N
    pd.testing.assert_frame_equal(loaded.drop(columns=["name"]), original.drop(columns=["name"]), check_dtype=False)
    assert loaded["seen_at"].tolist() == original["seen_at"].tolist()


def test_leading_zero_zip_codes_keep_their_zeros(target, query):
    write(target, "00501", frame("00501", ["a"]))
    assert query(sql.SQL("SELECT zip_code FROM {}").format(target.table.identifier)) == [("00501",)]
    assert load(target, "00501")["zip_code"].tolist() == ["00501"]


def test_empty_partition_clears_old_rows_and_its_counts(target, query):
    write(target, "10016", frame("10016", ["a", "b"]))
    write(target, "10016", frame("10016", []))
    assert count(query, target.table, "10016") == 0
    assert len(load(target, "10016")) == 0
    assert query(sql.SQL("SELECT rows, rows_quarantined FROM {}").format(target.counts.identifier)) == [(0, 0)]
    assert target_totals(PostgresResource().url(), target) == {"rows": 0, "rows_quarantined": 0, "partitions": 1}


def test_failure_mid_copy_keeps_previous_rows(target, query):
    write(target, "10016", frame("10016", ["old1", "old2"]))
    bad = frame("10016", [f"new{i}" for i in range(5000)])
    bad["small"] = bad["small"].astype("Int32")
    bad.loc[4999, "small"] = 70000  # out of smallint range: refused before anything is sent
    with pytest.raises(ValueError, match="column 'small' cannot be written as smallint"):
        write(target, "10016", bad)
    names = query(sql.SQL("SELECT name FROM {} ORDER BY name").format(target.table.identifier))
    assert names == [("old1",), ("old2",)]


def test_a_copy_the_server_refuses_part_way_keeps_previous_rows(schema, query):
    """The last row repeats a key: PostgreSQL refuses the COPY after taking the rows before it, and
    the transaction keeps nothing of it."""
    import adbc_driver_manager

    from zip_etl.demo_data import generate_raw_companies
    from zip_etl.transform import clean_companies

    cleaned = clean_companies(generate_raw_companies(2000, ["10016"], seed=4)).cleaned
    writer = PostgresWriter(postgres=PostgresResource(), target_schema=schema)
    writer.write([CleanedChunk(replace=["10016"], cleaned=cleaned.iloc[:10])], ["10016"])
    before = query(sql.SQL("SELECT * FROM {} ORDER BY record_id").format(sql.Identifier(schema, "cleaned_companies")))
    repeated = pd.concat([cleaned, cleaned.iloc[[-1]]], ignore_index=True)
    with pytest.raises(adbc_driver_manager.IntegrityError, match="duplicate key"):
        writer.write([CleanedChunk(replace=["10016"], cleaned=repeated)], ["10016"])
    assert query(sql.SQL("SELECT * FROM {} ORDER BY record_id").format(sql.Identifier(schema, "cleaned_companies"))) == before


def test_rows_of_another_partition_are_refused(target, query):
    write(target, "01001", frame("01001", ["keep"]))
    with pytest.raises(ValueError, match="do not belong to the partitions being written"):
        write(target, "10016", frame("01001", ["intruder"]))
    assert count(query, target.table) == 1


def test_schema_mismatch_names_the_columns(target):
    with pytest.raises(ValueError) as error:
        write(target, "10016", frame("10016", ["a"]).drop(columns=["ratio"]).assign(extra=1))
    assert "missing columns ['ratio']" in str(error.value) and "unexpected columns ['extra']" in str(error.value)


@pytest.mark.parametrize("bad_schema", ["public; DROP TABLE x", "1abc", "a-b", ""])
def test_invalid_configured_schema_is_refused(bad_schema):
    with pytest.raises(ValueError, match="Invalid target_schema"):
        PostgresWriter(postgres=PostgresResource(), target_schema=bad_schema).target  # noqa: B018


def test_counts_are_what_each_partition_holds_and_a_table_without_counts_gets_them(target, query):
    """The writer counts what it writes instead of counting the table; a table written by a release
    that kept no counts has them made from its rows on the first write."""
    rejected = pd.DataFrame({"zip_code": ["10016", "10016"], "raw_id": pd.array([7, 8], dtype="Int64"),
                             "reason": ["duplicate", "missing_company_name"], "detail": [None, "no name"]})
    write(target, "10016", frame("10016", ["a", "b", "c"]), rejected)
    write(target, "60614", frame("60614", ["x"]))
    query(sql.SQL("DROP TABLE {}").format(target.counts.identifier))
    write(target, "01001", frame("01001", ["y", "z"]))
    counts = query(sql.SQL("SELECT zip_code, rows, rows_quarantined FROM {} ORDER BY 1").format(target.counts.identifier))
    actual = query(sql.SQL(
        "SELECT coalesce(c.zip_code, q.zip_code), coalesce(c.n, 0), coalesce(q.n, 0) FROM "
        "(SELECT zip_code, count(*) n FROM {} GROUP BY 1) c FULL JOIN (SELECT zip_code, count(*) n FROM {} GROUP BY 1) q "
        "USING (zip_code) ORDER BY 1").format(target.table.identifier, target.quarantine.identifier))
    assert counts == actual == [("01001", 2, 0), ("10016", 3, 2), ("60614", 1, 0)]
    assert target_totals(PostgresResource().url(), target) == {"rows": 6, "rows_quarantined": 2, "partitions": 3}


def test_rows_go_out_in_key_order(schema, query):
    """Each chunk is sent ordered by the primary key, so the key's index takes it in order: a table
    written once holds its rows in key order."""
    from zip_etl.demo_data import generate_raw_companies
    from zip_etl.transform import clean_companies

    cleaned = clean_companies(generate_raw_companies(3000, ["10016", "60614"], seed=3)).cleaned
    cleaned = cleaned.sample(frac=1, random_state=1)  # any order in
    target = CLEANED_TARGET.in_schema(schema)
    PostgresWriter(postgres=PostgresResource(), target_schema=schema).write(
        [CleanedChunk(replace=["10016", "60614"], cleaned=cleaned)], ["10016", "60614"])
    stored = query(sql.SQL("SELECT zip_code, record_id FROM {} ORDER BY ctid").format(target.table.identifier))
    assert len(stored) == len(cleaned) and stored == sorted(stored)


def test_an_error_on_either_side_stops_both_and_keeps_the_old_rows(target, query):
    """Chunks are produced (read, cleaned) in the caller's thread and written by the writer's own:
    a chunk the table refuses stops the producer; a producer that fails stops the writer. Either
    way the error is raised and the transaction rolled back."""
    write(target, "10016", frame("10016", ["old"]))
    url = PostgresResource().url()
    produced, closed = [], []

    def chunks(fail_at: int, refuse_at: int):
        try:
            for i in range(10):
                if i == fail_at:
                    raise RuntimeError("the producer failed")
                rows = frame("10016", [f"new{i}"])
                if i == refuse_at:
                    rows = rows.assign(name=["bad\x00"])
                produced.append(i)
                yield CleanedChunk(replace=["10016"] if i == 0 else [], cleaned=rows)
        finally:
            closed.append(True)

    with pytest.raises(ValueError, match="NUL"):
        write_target(url, target, chunks(fail_at=-1, refuse_at=2), ["10016"])
    assert closed and len(produced) < 10  # the producer was stopped, not drained
    produced.clear()
    with pytest.raises(RuntimeError, match="the producer failed"):
        write_target(url, target, chunks(fail_at=3, refuse_at=-1), ["10016"])
    assert produced == [0, 1, 2]
    assert query(sql.SQL("SELECT name FROM {}").format(target.table.identifier)) == [("old",)]
