"""PostgresCopyIOManager against a real PostgreSQL server."""

import logging

import dagster as dg
import pandas as pd
import pytest
from psycopg2 import sql

from zip_etl.resources import PostgresCopyIOManager, PostgresResource
from zip_etl_tests.helpers import failure_message

PARTITIONS = dg.StaticPartitionsDefinition(["00501", "01001", "10016"])
SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("zip_code", "text", constraints=dg.TableColumnConstraints(nullable=False)),
        dg.TableColumn("name", "text"),
        dg.TableColumn("small", "smallint"),
        dg.TableColumn("big", "bigint"),
        dg.TableColumn("ratio", "double precision"),
        dg.TableColumn("flag", "boolean"),
        dg.TableColumn("seen_at", "timestamptz"),
    ]
)
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


def make_asset(payload):
    @dg.asset(
        name="companies_test",
        partitions_def=PARTITIONS,
        io_manager_key="io_manager",
        metadata={"dagster/column_schema": SCHEMA, "partition_expr": "zip_code"},
    )
    def _asset(context: dg.AssetExecutionContext) -> pd.DataFrame:
        return payload(context.partition_key)

    return _asset


def run(schema, payload, partition, raise_on_error=True):
    return dg.materialize(
        [make_asset(payload)],
        partition_key=partition,
        resources={"io_manager": PostgresCopyIOManager(postgres=PostgresResource(), target_schema=schema)},
        raise_on_error=raise_on_error,
    )


def load(schema, partition):
    manager = PostgresCopyIOManager(postgres=PostgresResource(), target_schema=schema)
    asset = make_asset(lambda key: None)
    context = dg.build_input_context(
        asset_key=dg.AssetKey("companies_test"),
        upstream_output=dg.build_output_context(
            asset_key=dg.AssetKey("companies_test"), definition_metadata=asset.metadata_by_key[asset.key]
        ),
        partition_key=partition,
        asset_partitions_def=PARTITIONS,
    )
    return manager.load_input(context)


def count(query, schema, zip_code=None):
    where = sql.SQL("") if zip_code is None else sql.SQL(" WHERE zip_code = %s")
    statement = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "companies_test")) + where
    return query(statement, (zip_code,) if zip_code else None)[0][0]


def test_creates_table_from_declared_schema(schema, query):
    run(schema, lambda key: frame(key, ["a", "b"]), "10016")
    columns = query(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = 'companies_test' ORDER BY ordinal_position",
        (schema,),
    )
    assert columns[0] == ("zip_code", "text", "NO")
    assert [c[1] for c in columns[1:]] == ["text", "smallint", "bigint", "double precision", "boolean",
                                            "timestamp with time zone"]


def test_rewrite_is_idempotent_and_touches_only_its_partition(schema, query):
    run(schema, lambda key: frame(key, ["a", "b", "c"]), "10016")
    run(schema, lambda key: frame(key, ["x"]), "01001")
    run(schema, lambda key: frame(key, ["a", "b", "c"]), "10016")
    run(schema, lambda key: frame(key, ["a", "b", "c"]), "10016")
    assert count(query, schema, "10016") == 3
    assert count(query, schema, "01001") == 1


def test_special_text_round_trips_exactly(schema):
    original = frame("10016", TRICKY_TEXT)
    run(schema, lambda key: original, "10016")
    loaded = load(schema, "10016")
    assert loaded["name"].tolist() == TRICKY_TEXT  # '' stays '', None stays None, \N stays \N
    pd.testing.assert_frame_equal(loaded.drop(columns=["name"]), original.drop(columns=["name"]), check_dtype=False)
    assert loaded["seen_at"].tolist() == original["seen_at"].tolist()


def test_leading_zero_zip_codes_keep_their_zeros(schema, query):
    run(schema, lambda key: frame(key, ["a"]), "00501")
    assert query(sql.SQL("SELECT zip_code FROM {}").format(sql.Identifier(schema, "companies_test"))) == [("00501",)]
    assert load(schema, "00501")["zip_code"].tolist() == ["00501"]


def test_empty_partition_clears_old_rows(schema, query):
    run(schema, lambda key: frame(key, ["a", "b"]), "10016")
    run(schema, lambda key: frame(key, []), "10016")
    assert count(query, schema, "10016") == 0
    assert len(load(schema, "10016")) == 0


def test_failure_mid_copy_keeps_previous_rows(schema, query):
    run(schema, lambda key: frame(key, ["old1", "old2"]), "10016")

    def bad(key):
        df = frame(key, [f"new{i}" for i in range(5000)])
        df["small"] = df["small"].astype("Int32")
        df.loc[4999, "small"] = 70000  # out of smallint range: PostgreSQL fails the COPY on the last row
        return df

    result = run(schema, bad, "10016", raise_on_error=False)
    assert not result.success
    names = query(sql.SQL("SELECT name FROM {} ORDER BY name").format(sql.Identifier(schema, "companies_test")))
    assert names == [("old1",), ("old2",)]


def test_rows_of_another_partition_are_refused(schema, query):
    run(schema, lambda key: frame(key, ["keep"]), "01001")
    result = run(schema, lambda key: frame("01001", ["intruder"]), "10016", raise_on_error=False)
    assert not result.success
    assert "do not belong to the partitions being written" in failure_message(result)
    assert count(query, schema) == 1


def test_schema_mismatch_names_the_columns(schema):
    result = run(schema, lambda key: frame(key, ["a"]).drop(columns=["ratio"]).assign(extra=1), "10016",
                 raise_on_error=False)
    message = failure_message(result)
    assert "missing columns ['ratio']" in message and "unexpected columns ['extra']" in message


@pytest.mark.parametrize("bad_schema", ["public; DROP TABLE x", "1abc", "a-b", ""])
def test_invalid_configured_schema_is_refused(bad_schema):
    result = dg.materialize(
        [make_asset(lambda key: frame(key, ["a"]))],
        partition_key="10016",
        resources={"io_manager": PostgresCopyIOManager(postgres=PostgresResource(), target_schema=bad_schema)},
        raise_on_error=False,
    )
    assert "Invalid target_schema" in failure_message(result)


def test_a_downstream_asset_reads_in_chunks_or_is_warned(schema, caplog):
    """An input annotated DataFrameChunks streams in chunks of chunk_rows; a plain DataFrame input
    larger than a chunk is loaded whole, with a warning that says how to stream it."""
    from zip_etl.resources import DataFrameChunks

    run(schema, lambda key: frame(key, [f"n{i}" for i in range(25)]), "10016")
    upstream = make_asset(lambda key: None)
    seen = {}

    @dg.asset(partitions_def=PARTITIONS, ins={"companies_test": dg.AssetIn()})
    def chunked(companies_test: DataFrameChunks) -> None:
        seen["chunks"] = [len(chunk) for chunk in companies_test]

    @dg.asset(partitions_def=PARTITIONS, ins={"companies_test": dg.AssetIn()})
    def whole(companies_test: pd.DataFrame) -> None:
        seen["whole"] = len(companies_test)

    manager = PostgresCopyIOManager(postgres=PostgresResource(chunk_rows=10), target_schema=schema)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([upstream, chunked, whole], selection=[chunked, whole], partition_key="10016",
                            resources={"io_manager": manager}, instance=instance)
    assert result.success
    assert seen == {"chunks": [10, 10, 5], "whole": 25}
    warnings = [e.user_message for e in instance.all_logs(result.run_id) if e.level == logging.WARNING]
    assert any("Loading 25 rows" in w and "annotate the input as DataFrameChunks" in w for w in warnings), warnings
