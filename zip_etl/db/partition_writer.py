"""A write of partitions as one transaction: advisory locks, DELETE of the partitions' rows, their new
rows appended with binary COPY (ADBC ingest), rejected rows into the quarantine, the partition counts.
COMMIT at the end; anything short of it (an error, a kill, a lost connection) leaves the previous
rows, and writing the same partitions again replaces them whole.

Each chunk's rows go out ordered by the table's primary key: the key's index then takes them in
order (PostgreSQL keeps inserting into the rightmost leaf it last used), which costs the server about
a quarter less than the same rows in the order they were read (docs/BENCHMARKS.md, write designs).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Sequence

import adbc_driver_postgresql.dbapi as adbc
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from zip_etl.db.arrow_io import SqlText, connect_arrow, first_surrogate, to_arrow
from zip_etl.db.ddl import create_table_statement
from zip_etl.tables import Column, Table, Target

_REJECTED_STAGING = "zip_etl_rejected"
_SAVEPOINT = "zip_etl_partition"


class ArrowTransaction:
    """One write transaction on an ADBC connection: statements, and Arrow data appended with binary
    COPY. Committed when the block ends without an error, rolled back otherwise."""

    def __init__(self, url: str):
        self.url = url
        self._conn: adbc.Connection | None = None
        self._text: SqlText | None = None

    def __enter__(self):
        self._text = SqlText(self.url)
        try:
            self._conn = connect_arrow(self.url)
        except BaseException:
            self._text.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        conn, self._conn = self._conn, None
        try:
            if conn is not None:
                try:
                    if exc_type is None:
                        conn.commit()
                    else:
                        with contextlib.suppress(Exception):
                            conn.rollback()
                finally:
                    conn.close()
        finally:
            if self._text is not None:
                self._text.close()

    def sql(self, composable: sql.Composable) -> str:
        assert self._text is not None, "use the transaction as a context manager"
        return self._text(composable)

    def execute(self, statement: str | sql.Composable, parameters: Sequence | None = None) -> None:
        """Run one statement; values only as `$n` parameters."""
        assert self._conn is not None, "use the transaction as a context manager"
        if not isinstance(statement, str):
            statement = self.sql(statement)
        with contextlib.closing(self._conn.cursor()) as cursor:
            cursor.execute(statement, parameters=parameters)

    def fetch(self, statement: str | sql.Composable, parameters: Sequence | None = None) -> list[tuple]:
        assert self._conn is not None, "use the transaction as a context manager"
        if not isinstance(statement, str):
            statement = self.sql(statement)
        with contextlib.closing(self._conn.cursor()) as cursor:
            cursor.execute(statement, parameters=parameters)
            return cursor.fetchall()

    def append_to(self, table: Table, frame: pd.DataFrame, *, temporary: bool = False) -> int:
        """COPY `frame` (the table's columns, as the types it declares) into `table`."""
        if not len(frame):
            return 0
        self.ingest(table, to_arrow(frame, table), temporary=temporary)
        return len(frame)

    def ingest(self, table: Table, data: pa.Table, *, temporary: bool = False) -> None:
        """COPY Arrow `data` (the table's columns, as the types it declares) into `table`."""
        assert self._conn is not None, "use the transaction as a context manager"
        with contextlib.closing(self._conn.cursor()) as cursor:
            if temporary:
                cursor.adbc_ingest(table.name, data, mode="append", temporary=True)
            else:
                cursor.adbc_ingest(table.name, data, mode="append", db_schema_name=table.schema)


class PartitionWriter(ArrowTransaction):
    """One write transaction over a target's table, quarantine and partition counts.

    It counts what it writes per partition, so the counts it records at the end are the rows it wrote
    (the partitions it replaced held nothing else), without counting the table again."""

    def __init__(self, url: str, target: Target):
        super().__init__(url)
        self.target = target
        self.table = target.table
        self.quarantine = target.quarantine
        self._staging: tuple | None = None
        self.rows_written = 0
        self.rows_quarantined = 0
        self._counts: dict[str, list[int]] = {}  # partition -> [rows, rows quarantined] written
        self._at_savepoint: tuple | None = None

    def lock_partitions(self, keys: Sequence[str]) -> int:
        """Wait until no other writer holds these partitions, and hold them until this transaction ends.

        Two runs that write the same zip codes at once would otherwise both delete the old rows and
        then both insert: the second fails on the primary key. With these locks the later writer waits,
        then deletes the earlier writer's rows and writes its own. The locks are PostgreSQL advisory
        locks, one per leading three digits of the zip codes (a 2,000-zip-code range needs tens, not
        2,000: every lock takes a slot of the server's shared lock table), taken in order, so writers
        of disjoint ranges wait for each other only where a range ends and the next begins inside the
        same three digits. Returns the number of locks taken.
        """
        table = self.table.qualified_name
        buckets = sorted({int(key[:3]) if key[:3].isdigit() else zlib.crc32(key[:3].encode()) & 0x7FFFFFFF for key in keys})
        self.execute("SELECT pg_advisory_xact_lock_shared(hashtext($1), -1)", (table,))
        if buckets:
            self.execute("SELECT pg_advisory_xact_lock(hashtext($1), b) FROM unnest($2::int[]) AS b ORDER BY b",
                         (table, buckets))
        return 1 + len(buckets)

    def delete_partitions(self, keys: Sequence[str]) -> None:
        """DELETE the rows of `keys` from the table and its quarantine; they count nothing now."""
        if not keys:
            return
        for t in (self.table, self.quarantine):
            self.execute(sql.SQL("DELETE FROM {} WHERE {} = ANY($1)").format(t.identifier, sql.Identifier(t.partition_column)),
                         (list(keys),))
        for key in keys:
            self._counts[key] = [0, 0]

    def delete_keys(self, key_columns: Sequence[str], rows: pd.DataFrame) -> None:
        """DELETE the rows this transaction wrote whose `key_columns` equal one of `rows` (a key
        decided against late): one row each."""
        if not len(rows):
            return
        arrays = sql.SQL(", ").join(sql.SQL(f"${i + 1}::text[]") for i in range(len(key_columns)))
        self.execute(
            sql.SQL("DELETE FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
                self.table.identifier, sql.SQL(", ").join(map(sql.Identifier, key_columns)), arrays),
            [rows[c].astype(str).tolist() for c in key_columns],
        )
        self.rows_written -= len(rows)
        self._count(rows[self.table.partition_column], 0, -1)

    def append(self, frame: pd.DataFrame) -> int:
        """COPY `frame` (the table's columns) into the table, ordered by its primary key."""
        if not len(frame):
            return 0
        data = to_arrow(frame, self.table)
        if self.table.primary_key:
            data = data.take(key_order(data, self.table.primary_key))
        self.ingest(self.table, data)
        self.rows_written += len(frame)
        self._count(frame[self.table.partition_column], 0, 1)
        return len(frame)

    def append_rejected(self, rejected: pd.DataFrame) -> int:
        """Rejected rows (their original columns, plus `reason` and `detail`) into the quarantine table,
        the original values as one JSON object per row, built by PostgreSQL from a staging table."""
        if not len(rejected):
            return 0
        originals = [c for c in rejected.columns if c not in ("reason", "detail")]
        staging = Table(schema="pg_temp", name=_REJECTED_STAGING,
                        columns=(*(Column(c, sql_type_of(rejected[c])) for c in originals), *_REASON_COLUMNS))
        if self._staging != staging.columns:
            if self._staging is not None:
                self.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(_REJECTED_STAGING)))
            self.execute(create_table_statement(staging, temporary=True))
            # The JSON keys are the column names, bound as text values.
            pairs = sql.SQL(", ").join(sql.SQL(f"${i + 1}::text, ") + sql.Identifier(c) for i, c in enumerate(originals))
            partition = sql.Identifier(self.quarantine.partition_column)
            self._insert_rejected = self.sql(sql.SQL(
                "INSERT INTO {} ({}, reason, detail, raw_values) SELECT {}, reason, detail, jsonb_build_object({}) FROM {}"
            ).format(self.quarantine.identifier, partition, partition, pairs, sql.Identifier(_REJECTED_STAGING)))
            self._staging, self._staging_keys = staging.columns, originals
        frame = rejected if "detail" in rejected else rejected.assign(detail=None)
        frame = _surrogates_shown(frame, [c for c in originals if frame[c].dtype == object])
        self.append_to(staging, frame, temporary=True)
        self.execute(self._insert_rejected, self._staging_keys)
        self.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(_REJECTED_STAGING)))
        self.rows_quarantined += len(rejected)
        self._count(rejected[self.quarantine.partition_column], 1, 1)
        return len(rejected)

    def _count(self, partitions: pd.Series, which: int, sign: int) -> None:
        for key, n in partitions.value_counts(sort=False).items():
            if n:
                self._counts.setdefault(str(key), [0, 0])[which] += sign * int(n)

    def savepoint(self) -> None:
        """Changes from here until `release_savepoint` can be undone alone (a zip code streamed in parts)."""
        self.execute(f"SAVEPOINT {_SAVEPOINT}")
        self._at_savepoint = (self.rows_written, self.rows_quarantined, {k: list(v) for k, v in self._counts.items()})

    def rollback_to_savepoint(self) -> None:
        self.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        self.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")
        self.rows_written, self.rows_quarantined, self._counts = self._at_savepoint

    def release_savepoint(self) -> None:
        self.execute(f"RELEASE SAVEPOINT {_SAVEPOINT}")

    def record_partition_counts(self, keys: Sequence[str]) -> None:
        """Record what this transaction wrote into each of `keys` (partitions it replaced) in the
        partition counts (zip_etl.tables.Target): the partitions' rows now, kept with them."""
        if not keys:
            return
        counts = self.target.counts
        part = sql.Identifier(counts.partition_column)
        rows = [self._counts.get(key, [0, 0]) for key in keys]
        self.execute(
            sql.SQL(
                "INSERT INTO {counts} ({part}, rows, rows_quarantined, written_at) "
                "SELECT k, n, q, now() FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS c(k, n, q) "
                "ON CONFLICT ({part}) DO UPDATE SET rows = EXCLUDED.rows, rows_quarantined = EXCLUDED.rows_quarantined, "
                "written_at = EXCLUDED.written_at"
            ).format(counts=counts.identifier, part=part),
            (list(keys), [r[0] for r in rows], [r[1] for r in rows]),
        )


def read_totals(cursor, target: Target) -> dict[str, int]:
    """Rows in the table and its quarantine, and partitions written, from its partition counts."""
    cursor.execute(sql.SQL(
        "SELECT coalesce(sum(rows), 0)::bigint, coalesce(sum(rows_quarantined), 0)::bigint, count(*) FROM {}"
    ).format(target.counts.identifier))
    ((rows, quarantined, partitions),) = cursor.fetchall()
    return {"rows": int(rows), "rows_quarantined": int(quarantined), "partitions": int(partitions)}


def key_order(data: pa.Table, key: Sequence[str]) -> pa.Array:
    """The row order that sorts `data` by the columns of `key` (dictionary-encoded ones by value)."""
    columns = {}
    for name in key:
        column = data[name].combine_chunks()
        if isinstance(column, pa.DictionaryArray):
            column = pc.take(pc.rank(column.dictionary, sort_keys="ascending", tiebreaker="dense"), column.indices)
        columns[name] = column
    return pc.sort_indices(pa.table(columns), sort_keys=[(name, "ascending") for name in key])


def sql_type_of(values: pd.Series) -> str:
    """The SQL type that holds a column of original values exactly (for the quarantine's staging)."""
    dtype = values.dtype
    if isinstance(dtype, pd.ArrowDtype):
        kind = dtype.pyarrow_dtype
        if pa.types.is_integer(kind):
            return "bigint"
        if pa.types.is_floating(kind):
            return "double precision"
        if pa.types.is_boolean(kind):
            return "boolean"
        if pa.types.is_timestamp(kind):
            return "timestamptz" if kind.tz else "timestamp"
        return "text"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "bigint"
    if pd.api.types.is_float_dtype(dtype):
        return "double precision"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "timestamptz" if getattr(dtype, "tz", None) is not None else "timestamp"
    return "text"


_REASON_COLUMNS = (Column("reason", "text", nullable=False), Column("detail", "text"))


def _surrogates_shown(frame: pd.DataFrame, text_columns: Sequence[str]) -> pd.DataFrame:
    """Undecodable bytes (lone surrogates, in object columns only) as visible `\\xNN` text."""
    out = frame
    for name in text_columns:
        values = frame[name]
        if values.dtype == object and first_surrogate(values) is not None:
            out = out.assign(**{name: [
                v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") if isinstance(v, str) else v
                for v in values.tolist()
            ]})
    return out
