"""Reads of one table from one REPEATABLE READ snapshot, as Arrow record batches (binary COPY) or as
pandas frames of bounded size.

A run reads its zip codes with one query, ordered by zip code (`batches_by_zip_code`): the zip codes
go into a temporary table and the query selects `zip_code = ANY(ARRAY(SELECT … FROM that table))`,
which PostgreSQL answers from the zip-code index, in order, touching only those zip codes' rows. The
counts and data versions of the zip codes come from the rows themselves (zip_etl/partition_stream.py),
not from other passes over the table. While that stream is open its connection is busy, so reads
decided on meanwhile (rows by id, a zip code read again) go through `side`: a second connection that
imports the same snapshot.

A database created with ENCODING 'SQL_ASCII' may hold bytes that are not UTF-8. The server sends them
as they are; a batch whose text does not validate has the offending columns decoded with
"surrogateescape" into Python strings, so the cleaning rules can quarantine those rows and show the
bytes (the slow path, taken only for such batches in such databases).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence

import adbc_driver_postgresql.dbapi as adbc
import pandas as pd
import pyarrow as pa
from psycopg2 import sql

from zip_etl.db.arrow_io import SqlText, arrow_type, connect_arrow, load_zip_codes, reading
from zip_etl.tables import Table

_KEYS_TABLE = "zip_etl_keys"
# Arrow -> the pandas dtypes a frame of each SQL type loads as when Arrow-backed dtypes are not wanted.
_PANDAS_TYPES = {
    pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(),
}


class TableSnapshot:
    """Reads of one table from one REPEATABLE READ snapshot.

    `expressions` select retyped columns as declared (casts, over alias `r`); `sql_ascii` says whether
    text may need the undecodable-bytes path.
    """

    def __init__(self, url: str, table: Table, expressions: dict[str, sql.Composable] | None = None, *,
                 sql_ascii: bool = False, arrow_dtypes: bool = True, snapshot_id: str | None = None):
        self.url = url
        self.table = table
        self._expressions = expressions
        self._arrow_dtypes = arrow_dtypes
        self._select_composed = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format((expressions or {}).get(c.name, sql.Identifier("r", c.name)), sql.Identifier(c.name))
            for c in table.columns
        )
        self._text_columns = [c.name for c in table.columns if c.sql_type == "text"]
        self._sql_ascii = sql_ascii
        self._snapshot_id = snapshot_id  # import this exported snapshot instead of taking one
        self._conn: adbc.Connection | None = None
        self._side: TableSnapshot | None = None
        self._streaming = None

    def __enter__(self) -> TableSnapshot:
        text = SqlText(self.url)
        try:
            self._select_list = text(self._select_composed)
            self._table_sql = text(self.table.identifier)
            self._zip_sql = text.ident(self.table.partition_column) if self.table.partition_column else None
            self._id_sql = {c.name: text.ident(c.name) for c in self.table.columns}
        finally:
            text.close()
        self._conn = connect_arrow(self.url)
        cursor = self._conn.cursor()
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        if self._snapshot_id is not None:
            # SET TRANSACTION SNAPSHOT takes no parameters; the id is one pg_export_snapshot() made
            # (hex digits and dashes), checked before it goes into the text.
            if not re.fullmatch(r"[0-9A-Fa-f-]+", self._snapshot_id):
                raise ValueError(f"not a snapshot id: {self._snapshot_id!r}")
            cursor.execute(f"SET TRANSACTION SNAPSHOT '{self._snapshot_id}'")
        cursor.execute(f"CREATE TEMPORARY TABLE {_KEYS_TABLE} (zip_code text PRIMARY KEY) ON COMMIT DROP")
        self._keys: list[str] | None = None
        return self

    def __exit__(self, *exc) -> None:
        side, self._side = self._side, None
        if side is not None:
            side.__exit__(*exc)
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.rollback()  # read only: nothing to keep
            conn.close()

    def _cursor(self):
        assert self._conn is not None, "use TableSnapshot as a context manager"
        return self._conn.cursor()

    def _load_keys(self, zip_codes: Sequence[str]) -> None:
        keys = list(dict.fromkeys(zip_codes))
        if keys == self._keys:
            return
        cursor = self._cursor()
        cursor.execute(f"TRUNCATE {_KEYS_TABLE}")
        load_zip_codes(cursor, _KEYS_TABLE, keys)
        self._keys = keys

    @property
    def side(self) -> TableSnapshot:
        """A second connection reading the same snapshot, for reads while `batches_by_zip_code`
        streams on this one (opened on first use, closed with this snapshot)."""
        if self._side is None:
            if self._snapshot_id is None:
                self._export_snapshot()
            side = TableSnapshot(self.url, self.table, self._expressions, sql_ascii=self._sql_ascii,
                                 arrow_dtypes=self._arrow_dtypes, snapshot_id=self._snapshot_id)
            self._side = side.__enter__()
        return self._side

    def batches_by_zip_code(self, zip_codes: Sequence[str]) -> Iterator[pa.RecordBatch]:
        """Every row of `zip_codes`, as Arrow record batches in zip-code order (each zip code's rows
        together), in one binary COPY. The snapshot is exported first, for `side`."""
        with reading(self.table, self.url):
            if self._snapshot_id is None:
                self._export_snapshot()
            self._load_keys(zip_codes)
            # The order comes from the zip-code index; a sort of a whole run's rows on the server (which
            # the planner may pick when it misjudges how many rows the run has) would cost more than the read.
            self._cursor().execute("SET LOCAL enable_sort = off")
            cursor = self._streaming = self._cursor()
            cursor.execute(
                f"SELECT {self._select_list} FROM {self._table_sql} r "
                f"WHERE r.{self._zip_sql} = ANY(ARRAY(SELECT zip_code FROM {_KEYS_TABLE})) ORDER BY r.{self._zip_sql}"
            )
            reader = _batch_reader(cursor)
        try:
            yield from _read_batches(reader, self.table, self.url)
        finally:
            reader.close()
            self._streaming = None
            with contextlib.suppress(Exception):
                self._cursor().execute("RESET enable_sort")

    def _export_snapshot(self) -> None:
        cursor = self._cursor()
        cursor.execute("SELECT pg_export_snapshot() AS id")
        self._snapshot_id = cursor.fetch_arrow_table()["id"][0].as_py()

    def cancel(self) -> None:
        """Stop the stream of `batches_by_zip_code` (callable from another thread)."""
        cursor = self._streaming
        if cursor is not None:
            with contextlib.suppress(Exception):
                cursor.adbc_cancel()

    def rows(self, zip_codes: Sequence[str] | None, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """The rows of `zip_codes` (every row when None), in no particular order, as pandas frames of
        at most `chunk_rows` rows, streamed."""
        with reading(self.table, self.url):
            cursor = self._cursor()
            if zip_codes is None:
                cursor.execute(f"SELECT {self._select_list} FROM {self._table_sql} r")
            else:
                self._load_keys(zip_codes)
                cursor.execute(
                    f"SELECT {self._select_list} FROM {self._table_sql} r "
                    f"WHERE r.{self._zip_sql} = ANY(ARRAY(SELECT zip_code FROM {_KEYS_TABLE}))"
                )
            reader = _batch_reader(cursor)
        try:
            pending: list[pa.RecordBatch] = []
            held = 0
            for batch in _read_batches(reader, self.table, self.url):
                while batch.num_rows:
                    take = min(batch.num_rows, chunk_rows - held)
                    pending.append(batch.slice(0, take))
                    held += take
                    batch = batch.slice(take)
                    if held == chunk_rows:
                        yield self.frame(pending)
                        pending, held = [], 0
            if held:
                yield self.frame(pending)
        finally:
            reader.close()

    def rows_by_id(self, id_column: str, ids: Sequence[int]) -> pd.DataFrame:
        """Rows by primary key, from this snapshot (for rows decided on after they streamed past)."""
        with reading(self.table, self.url):
            cursor = self._cursor()
            cursor.execute(
                f"SELECT {self._select_list} FROM {self._table_sql} r WHERE r.{self._id_sql[id_column]} = ANY($1)",
                parameters=(list(map(int, ids)),),
            )
            return self.frame(cursor.fetch_arrow_table().to_batches())

    def frame(self, batches: Sequence[pa.RecordBatch]) -> pd.DataFrame:
        """Record batches of this table as one pandas frame (Arrow-backed unless asked otherwise)."""
        table = pa.Table.from_batches(batches) if batches else self._empty()
        undecodable = self._undecodable_columns(table) if self._sql_ascii else []
        # Text that is not UTF-8 never reaches pandas as Arrow strings: those columns are decoded
        # with "surrogateescape" into Python strings first (their bytes stay visible as \udcNN).
        decoded = {
            name: pd.Series([None if v is None else v.decode("utf-8", "surrogateescape")
                             for v in table[name].cast(pa.binary()).to_pylist()], dtype=object)
            for name in undecodable
        }
        names = table.column_names
        table = table.drop_columns(undecodable)
        frame = table.to_pandas(types_mapper=pd.ArrowDtype if self._arrow_dtypes else _PANDAS_TYPES.get,
                                self_destruct=True, split_blocks=True)
        for name, values in decoded.items():
            frame[name] = values.set_axis(frame.index)
        return frame[names]

    def _undecodable_columns(self, table: pa.Table) -> list[str]:
        bad = []
        for name in self._text_columns:
            try:
                table[name].validate(full=True)
            except pa.ArrowInvalid:
                bad.append(name)
        return bad

    def _empty(self) -> pa.Table:
        return pa.table({c.name: pa.array([], arrow_type(c.sql_type)) for c in self.table.columns})

    def empty_frame(self) -> pd.DataFrame:
        """No rows, typed as `rows` types them."""
        return self.frame([])


def _batch_reader(cursor):
    """The cursor's result as a record batch reader whose errors keep their SQLSTATE.

    `fetch_record_batch()` hands out pyarrow's own reader, whose errors are bare OSErrors: a value
    PostgreSQL cannot cast part-way through a stream would then read as an unknown failure (and be
    retried) instead of one line naming the column's type. The driver manager's reader around it (the
    one `fetch_arrow_table()` reads) turns them back into driver errors; it has no public accessor,
    so it is taken from the cursor's result, and `test_bad_input.py` fails if that ever changes."""
    reader = getattr(getattr(cursor, "_results", None), "reader", None)
    return reader if isinstance(reader, pa.RecordBatchReader) else cursor.fetch_record_batch()


def _read_batches(reader, table: Table, url: str) -> Iterator[pa.RecordBatch]:
    with reading(table, url):
        yield from reader
