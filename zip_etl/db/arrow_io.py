"""Rows between PostgreSQL and Arrow with binary COPY, through ADBC's PostgreSQL driver.

Reading: a `TableSnapshot` is one REPEATABLE READ transaction, so the row counts, the data versions
and the rows of a run all describe the same state of the raw table. Rows stream as Arrow record
batches of bounded size: the driver runs `COPY (SELECT …) TO STDOUT (FORMAT binary)` for a query
without bound parameters (a query with parameters is fetched whole), so the zip codes to read go
into a temporary table and the query joins it. NULL and the empty string stay apart, 64-bit
integers stay exact and timestamps keep their time zone, because nothing is parsed from text.

Writing: a `PartitionWriter` is one transaction: DELETE the partitions' rows, append Arrow data with
binary COPY (ADBC ingest), COMMIT at the end. Anything short of the commit (an error, a kill, a lost
connection) leaves the previous rows, and writing the same partitions again replaces them whole.

A database created with ENCODING 'SQL_ASCII' may hold bytes that are not UTF-8. The server sends them
as they are; a batch whose text does not validate has the offending columns decoded with
"surrogateescape" into Python strings, so the cleaning rules can quarantine those rows and show the
bytes (the slow path, taken only for such batches in such databases).
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Iterator, Sequence
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from zip_etl.db.connection import DatabaseError, connect, describe_connection_error, redact_url
from zip_etl.db.ddl import create_table_statement
from zip_etl.tables import Column, Table

# Declared SQL type -> the Arrow type binary COPY needs for it (the wire format is exact: an int64
# sent to a smallint column is refused).
ARROW_TYPES = {
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "boolean": pa.bool_(),
    "text": pa.string(),
    "date": pa.date32(),
    "timestamptz": pa.timestamp("us", tz="UTC"),
    "timestamp": pa.timestamp("us"),
}

_KEYS_TABLE = "zip_etl_keys"
# Arrow -> the pandas dtypes a frame of each SQL type loads as when Arrow-backed dtypes are not wanted.
_PANDAS_TYPES = {
    pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype(),
}
_REJECTED_STAGING = "zip_etl_rejected"


def arrow_type(sql_type: str) -> pa.DataType:
    try:
        return ARROW_TYPES[sql_type.lower()]
    except KeyError:
        raise ValueError(f"zip_etl cannot write columns of type {sql_type!r}; use one of {sorted(ARROW_TYPES)}") from None


def connect_arrow(url: str) -> adbc.Connection:
    """An ADBC connection (transactions on: nothing is committed until `commit()`), in UTC like
    `zip_etl.db.connection.connect`, so timestamps turned into text read the same everywhere."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [("application_name", "zip_etl"), ("options", "-c timezone=UTC")]
    try:
        return adbc.connect(urlunsplit(parts._replace(query=urlencode(query, quote_via=quote))))
    except adbc_driver_manager.OperationalError as error:
        raise describe_connection_error(url, error) from None


# SQLSTATEs of a value or type the declaration cannot read (data exceptions, no such cast or function).
_UNREADABLE = ("22", "42883", "42846")
# ... and of a connection or transaction that may succeed when tried again.
_TRANSIENT = ("08", "57P", "40001", "40P01", "53")


def driver_error_is_transient(error: Exception) -> bool:
    state = getattr(error, "sqlstate", None) or ""
    return isinstance(error, adbc_driver_manager.OperationalError) or state.startswith(_TRANSIENT)


@contextlib.contextmanager
def reading(table: Table, url: str) -> Iterator[None]:
    """Driver errors while reading `table`, as one-line DatabaseErrors that say what to fix."""
    try:
        yield
    except adbc_driver_manager.Error as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        state = getattr(error, "sqlstate", None) or ""
        if state.startswith(_UNREADABLE):
            raise DatabaseError(
                f"The table {table.schema}.{table.name} has values zip_etl cannot read as declared ({first}). "
                "Fix the column's type or values, or update its declaration in zip_etl/tables.py."
            ) from None
        if driver_error_is_transient(error):
            raise DatabaseError(
                f"Lost the connection to PostgreSQL at {redact_url(url)} while reading {table.schema}.{table.name} "
                f"({first}); nothing was written from this read, so a retry is safe.",
                retriable=True,
            ) from None
        raise


class SqlText:
    """Renders psycopg2 `sql` compositions (identifiers quoted by libpq) as text for ADBC statements.

    Values never go into the text: they are bound as `$n` parameters or loaded into temporary tables.
    """

    def __init__(self, url: str):
        self._conn = connect(url)

    def __call__(self, composable: sql.Composable) -> str:
        return composable.as_string(self._conn)

    def ident(self, *names: str) -> str:
        return self(sql.Identifier(*names))

    def close(self) -> None:
        self._conn.close()


def to_arrow(frame: pd.DataFrame, table: Table) -> pa.Table:
    """`frame`'s columns as the Arrow types `table` declares, in its column order.

    Raises ValueError, naming the column and the first row, for text PostgreSQL cannot store (a NUL
    character, or a lone surrogate left by undecodable bytes), before anything is sent.
    """
    arrays = []
    for column in table.columns:
        values = frame[column.name]
        target = arrow_type(column.sql_type)
        try:
            array = pa.Table.from_pandas(values.to_frame(), preserve_index=False).column(0)
        except (UnicodeEncodeError, pa.ArrowInvalid, pa.ArrowTypeError) as error:
            row = _first_surrogate(values) if values.dtype == object else None
            if row is not None:
                raise ValueError(
                    f"text is not valid Unicode (undecodable bytes): column {column.name!r}, first at row {row}: "
                    f"{values.iloc[row].encode('utf-8', 'backslashreplace').decode()[:80]!r}"
                ) from None
            raise ValueError(f"column {column.name!r} cannot be written as {column.sql_type}: {error}") from None
        if pa.types.is_dictionary(array.type):  # categoricals (downcast text) go out as plain text
            array = pc.cast(array, array.type.value_type)
        try:
            # Timestamps: PostgreSQL keeps microseconds; finer digits are dropped, as its own input does.
            array = pc.cast(array, target, safe=not pa.types.is_timestamp(target))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise ValueError(f"column {column.name!r} cannot be written as {column.sql_type}: {error}") from None
        if pa.types.is_string(target):
            nul = pc.fill_null(pc.match_substring(array, "\x00"), False)
            if pc.any(nul).as_py():
                rows = pc.indices_nonzero(nul)
                first = rows[0].as_py()
                raise ValueError(
                    f"PostgreSQL text cannot contain NUL (\\x00) characters: column {column.name!r}: "
                    f"{len(rows)} value(s), first at row {first}: {array[first].as_py()[:80]!r}"
                )
        arrays.append(array)
    return pa.table(arrays, names=table.column_names)


def _first_surrogate(values: pd.Series) -> int | None:
    for i, value in enumerate(values.tolist()):
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return i
    return None


def load_zip_codes(cursor, name: str, zip_codes: Sequence[str]) -> None:
    """Append `zip_codes` to the temporary table `name` (its one column `zip_code`) and ANALYZE it.

    Autovacuum never analyzes a temporary table: without statistics the planner guesses 1,360 rows
    and joins them to a sequential scan of the whole table they select from."""
    if zip_codes:
        cursor.adbc_ingest(name, pa.table({"zip_code": pa.array(zip_codes, pa.string())}), mode="append", temporary=True)
    cursor.execute(f"ANALYZE {name}")


class TableSnapshot:
    """Reads of one table from one REPEATABLE READ snapshot: counts, data versions, rows.

    `select_list` is the SELECT list (casts for retyped columns included) as text; `server_encoding`
    says whether text may need the undecodable-bytes path.
    """

    def __init__(self, url: str, table: Table, expressions: dict[str, sql.Composable] | None = None, *,
                 sql_ascii: bool = False, arrow_dtypes: bool = True):
        self.url = url
        self.table = table
        self._arrow_dtypes = arrow_dtypes
        self._expressions = {
            c.name: (expressions or {}).get(c.name, sql.Identifier("r", c.name)) for c in table.columns
        }
        select_list = sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(e, sql.Identifier(name)) for name, e in self._expressions.items()
        )
        self._select_composed = select_list
        self._text_columns = [c.name for c in table.columns if c.sql_type == "text"]
        self._sql_ascii = sql_ascii
        self._conn: adbc.Connection | None = None

    def __enter__(self) -> TableSnapshot:
        text = SqlText(self.url)
        try:
            self._select_list = text(self._select_composed)
            self._table_sql = text(sql.Identifier(self.table.schema, self.table.name))
            self._zip_sql = text.ident(self.table.partition_column) if self.table.partition_column else None
            self._id_sql = {c.name: text.ident(c.name) for c in self.table.columns}
            self._expression_sql = {name: text(e) for name, e in self._expressions.items()}
        finally:
            text.close()
        self._conn = connect_arrow(self.url)
        cursor = self._conn.cursor()
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute(f"CREATE TEMPORARY TABLE {_KEYS_TABLE} (zip_code text PRIMARY KEY) ON COMMIT DROP")
        self._keys: list[str] | None = None
        return self

    def __exit__(self, *exc) -> None:
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

    def _fetch(self, query: str) -> pa.Table:
        with reading(self.table, self.url):
            cursor = self._cursor()
            cursor.execute(query)
            return cursor.fetch_arrow_table()

    def counts(self, zip_codes: Sequence[str]) -> dict[str, int]:
        """Rows per zip code of `zip_codes` that has rows."""
        self._load_keys(zip_codes)
        result = self._fetch(
            f"SELECT r.{self._zip_sql} AS zip_code, count(*) AS n FROM {self._table_sql} r "
            f"JOIN {_KEYS_TABLE} k ON r.{self._zip_sql} = k.zip_code GROUP BY 1"
        )
        return dict(zip(result["zip_code"].to_pylist(), result["n"].to_pylist()))

    def data_versions(self, zip_codes: Sequence[str], id_column: str, updated_column: str) -> dict[str, str]:
        """Each zip code's data version (see zip_etl.tables.raw_data_versions), from this snapshot."""
        self._load_keys(zip_codes)
        result = self._fetch(
            raw_versions_query(self._table_sql, f"r.{self._zip_sql}", self._expression_sql[id_column],
                               self._expression_sql[updated_column],
                               f"JOIN {_KEYS_TABLE} k ON r.{self._zip_sql} = k.zip_code")
        )
        return dict(zip(result["zip_code"].to_pylist(), result["version"].to_pylist()))

    def rows(self, zip_codes: Sequence[str] | None, chunk_rows: int) -> Iterator[pd.DataFrame]:
        """The rows of `zip_codes` (every row when None) as pandas frames of at most `chunk_rows`
        rows, streamed."""
        with reading(self.table, self.url):
            cursor = self._cursor()
            if zip_codes is None:
                cursor.execute(f"SELECT {self._select_list} FROM {self._table_sql} r")
            else:
                self._load_keys(zip_codes)
                cursor.execute(
                    f"SELECT {self._select_list} FROM {self._table_sql} r "
                    f"JOIN {_KEYS_TABLE} k ON r.{self._zip_sql} = k.zip_code"
                )
            reader = cursor.fetch_record_batch()
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
                        yield self._frame(pending)
                        pending, held = [], 0
            if held:
                yield self._frame(pending)
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
            return self._frame(cursor.fetch_arrow_table().to_batches())

    def _frame(self, batches: list[pa.RecordBatch]) -> pd.DataFrame:
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
        return self._frame([])


def _read_batches(reader, table: Table, url: str) -> Iterator[pa.RecordBatch]:
    with reading(table, url):
        yield from reader


def raw_versions_query(table: str, zip_column: str, id_column: str, updated_column: str, join: str = "") -> str:
    """Version = row count + md5 of the zip code's (id, updated_at in microseconds) pairs in id order
    (the same as zip_etl.tables.raw_data_versions; columns given as expressions over alias r)."""
    return (
        f"SELECT {zip_column} AS zip_code, count(*) || '-' || md5(string_agg(({id_column})::text || '@' || "
        f"(extract(epoch FROM {updated_column}) * 1000000)::bigint::text, ',' ORDER BY {id_column})) AS version "
        f"FROM {table} r {join} GROUP BY 1"
    )


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
        self._conn.cursor().execute(statement, parameters=parameters)

    def append_to(self, table: Table, frame: pd.DataFrame, *, temporary: bool = False) -> int:
        """COPY `frame` (the table's columns, as the types it declares) into `table`."""
        if not len(frame):
            return 0
        assert self._conn is not None, "use the transaction as a context manager"
        data = to_arrow(frame, table)
        cursor = self._conn.cursor()
        if temporary:
            cursor.adbc_ingest(table.name, data, mode="append", temporary=True)
        else:
            cursor.adbc_ingest(table.name, data, mode="append", db_schema_name=table.schema)
        return len(frame)


class PartitionWriter(ArrowTransaction):
    """One write transaction over a partitioned table and (optionally) its quarantine table."""

    def __init__(self, url: str, table: Table, quarantine: Table | None = None):
        super().__init__(url)
        self.table = table
        self.quarantine = quarantine
        self._staging: tuple | None = None
        self.rows_written = 0
        self.rows_quarantined = 0

    def _tables(self) -> list[Table]:
        return [self.table] + ([self.quarantine] if self.quarantine else [])

    def lock_partitions(self, keys: Sequence[str] | None) -> int:
        """Wait until no other writer holds these partitions, and hold them until this transaction ends.

        Two runs that write the same zip codes at once would otherwise both delete the old rows and
        then both insert: the second fails on the primary key. With these locks the later writer waits,
        then deletes the earlier writer's rows and writes its own. The locks are PostgreSQL advisory
        locks, one per leading three digits of the zip codes (a 2,000-zip-code range needs tens, not
        2,000: every lock takes a slot of the server's shared lock table), taken in order, so writers
        of disjoint ranges wait for each other only where a range ends and the next begins inside the
        same three digits. A write of every partition (`keys` None) takes the table's lock exclusively;
        partition writers take it shared. Returns the number of locks taken.
        """
        table = f"{self.table.schema}.{self.table.name}"
        if keys is None:
            self.execute("SELECT pg_advisory_xact_lock(hashtext($1), -1)", (table,))
            return 1
        buckets = sorted({int(key[:3]) if key[:3].isdigit() else zlib.crc32(key[:3].encode()) & 0x7FFFFFFF for key in keys})
        self.execute("SELECT pg_advisory_xact_lock_shared(hashtext($1), -1)", (table,))
        if buckets:
            self.execute("SELECT pg_advisory_xact_lock(hashtext($1), b) FROM unnest($2::int[]) AS b ORDER BY b",
                         (table, buckets))
        return 1 + len(buckets)

    def delete_partitions(self, keys: Sequence[str] | None) -> None:
        """DELETE the rows of `keys` (every row when None) from the table and its quarantine."""
        for t in self._tables():
            if keys is None:
                self.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(t.schema, t.name)))
            elif keys:
                self.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = ANY($1)").format(
                        sql.Identifier(t.schema, t.name), sql.Identifier(t.partition_column)
                    ),
                    (list(keys),),
                )

    def delete_keys(self, key_columns: Sequence[str], rows: pd.DataFrame) -> None:
        """DELETE the table's rows whose `key_columns` equal one of `rows` (a key decided against late)."""
        if not len(rows):
            return
        arrays = sql.SQL(", ").join(sql.SQL(f"${i + 1}::text[]") for i in range(len(key_columns)))
        self.execute(
            sql.SQL("DELETE FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
                sql.Identifier(self.table.schema, self.table.name),
                sql.SQL(", ").join(map(sql.Identifier, key_columns)),
                arrays,
            ),
            [rows[c].astype(str).tolist() for c in key_columns],
        )

    def record_partition_counts(self, counts: Table, keys: Sequence[str] | None) -> None:
        """Recount the rows of `keys` (every partition when None) in the table and its quarantine into
        `counts` (see zip_etl.tables.partition_counts_table), at the end of the transaction."""
        table, quarantine = self.table, self.quarantine
        part = sql.Identifier(table.partition_column)
        where = sql.SQL("") if keys is None else sql.SQL(" WHERE {} = ANY($1)").format(part)
        keys_sql = (sql.SQL("SELECT DISTINCT {} AS k FROM {}").format(part, sql.Identifier(table.schema, table.name))
                    + sql.SQL(" UNION SELECT DISTINCT {} FROM {}").format(part, sql.Identifier(quarantine.schema, quarantine.name))
                    if keys is None else sql.SQL("SELECT unnest($1::text[]) AS k"))
        statement = sql.SQL(
            "INSERT INTO {counts} ({part}, rows, rows_quarantined, written_at) "
            "SELECT k.k, coalesce(c.n, 0), coalesce(q.n, 0), now() FROM ({keys}) k "
            "LEFT JOIN (SELECT {part} AS k, count(*) AS n FROM {table}{where} GROUP BY 1) c ON c.k = k.k "
            "LEFT JOIN (SELECT {part} AS k, count(*) AS n FROM {quarantine}{where} GROUP BY 1) q ON q.k = k.k "
            "ON CONFLICT ({part}) DO UPDATE SET rows = EXCLUDED.rows, rows_quarantined = EXCLUDED.rows_quarantined, "
            "written_at = EXCLUDED.written_at"
        ).format(counts=sql.Identifier(counts.schema, counts.name), part=part, keys=keys_sql,
                 table=sql.Identifier(table.schema, table.name), quarantine=sql.Identifier(quarantine.schema, quarantine.name),
                 where=where)
        if keys is None:
            self.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(counts.schema, counts.name)))
        self.execute(statement, None if keys is None else (list(keys),))

    def append(self, frame: pd.DataFrame) -> int:
        """COPY `frame` (the table's columns) into the table."""
        written = self.append_to(self.table, frame)
        self.rows_written += written
        return written

    def append_rejected(self, rejected: pd.DataFrame) -> int:
        """Rejected rows (their original columns, plus `reason` and `detail`) into the quarantine table,
        the original values as one JSON object per row, built by PostgreSQL from a staging table."""
        if not len(rejected):
            return 0
        assert self.quarantine is not None, "no quarantine table to write to"
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
            ).format(sql.Identifier(self.quarantine.schema, self.quarantine.name), partition, partition, pairs,
                     sql.Identifier(_REJECTED_STAGING)))
            self._staging, self._staging_keys = staging.columns, originals
        frame = rejected if "detail" in rejected else rejected.assign(detail=None)
        frame = _surrogates_shown(frame, [c for c in originals if frame[c].dtype == object])
        self.append_to(staging, frame, temporary=True)
        self.execute(self._insert_rejected, self._staging_keys)
        self.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(_REJECTED_STAGING)))
        self.rows_quarantined += len(rejected)
        return len(rejected)


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
        if values.dtype == object and _first_surrogate(values) is not None:
            out = out.assign(**{name: [
                v.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") if isinstance(v, str) else v
                for v in values.tolist()
            ]})
    return out


