"""Rows between PostgreSQL and Arrow with binary COPY, through ADBC's PostgreSQL driver: what reading
(`zip_etl.db.snapshot`) and writing (`zip_etl.db.partition_writer`) share.

NULL and the empty string stay apart, 64-bit integers stay exact and timestamps keep their time zone,
because nothing is parsed from text. The driver runs `COPY (SELECT …) TO STDOUT (FORMAT binary)` only
for a query without bound parameters (a query with parameters is fetched whole), so values a read
selects by go into temporary tables (`load_zip_codes`), never into the SQL text.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import adbc_driver_manager
import adbc_driver_postgresql.dbapi as adbc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from zip_etl.db.connection import DatabaseError, connect, describe_connection_error, redact_url
from zip_etl.tables import Table

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
                f"The table {table.qualified_name} has values zip_etl cannot read as declared ({first}). "
                "Fix the column's type or values, or update its declaration in zip_etl/tables.py."
            ) from None
        if driver_error_is_transient(error):
            raise DatabaseError(
                f"Lost the connection to PostgreSQL at {redact_url(url)} while reading {table.qualified_name} "
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

    Categorical text (the transform downcasts repeated text) stays dictionary-encoded: the driver
    sends each row's value, and only the dictionary is cast and checked. Raises ValueError, naming the
    column and the first row, for text PostgreSQL cannot store (a NUL character, or a lone surrogate
    left by undecodable bytes), before anything is sent.
    """
    arrays = []
    for column in table.columns:
        values = frame[column.name]
        target = arrow_type(column.sql_type)
        try:
            array = pa.Table.from_pandas(values.to_frame(), preserve_index=False).column(0)
        except (UnicodeEncodeError, pa.ArrowInvalid, pa.ArrowTypeError) as error:
            row = first_surrogate(values) if values.dtype == object else None
            if row is not None:
                raise ValueError(
                    f"text is not valid Unicode (undecodable bytes): column {column.name!r}, first at row {row}: "
                    f"{values.iloc[row].encode('utf-8', 'backslashreplace').decode()[:80]!r}"
                ) from None
            raise ValueError(f"column {column.name!r} cannot be written as {column.sql_type}: {error}") from None
        try:
            array = _cast(array, target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise ValueError(f"column {column.name!r} cannot be written as {column.sql_type}: {error}") from None
        if pa.types.is_string(target):
            _refuse_nul(array, column.name)
        arrays.append(array)
    return pa.table(arrays, names=table.column_names)


def _cast(array: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    # Timestamps: PostgreSQL keeps microseconds; finer digits are dropped, as its own input does.
    safe = not pa.types.is_timestamp(target)
    if pa.types.is_dictionary(array.type):
        if not pa.types.is_string(target):  # categoricals of another type go out decoded
            return pc.cast(pc.cast(array, array.type.value_type), target, safe=safe)
        if array.type.value_type == target:
            return array
        return pa.chunked_array(
            [pa.DictionaryArray.from_arrays(chunk.indices, pc.cast(chunk.dictionary, target)) for chunk in array.chunks],
            pa.dictionary(array.type.index_type, target),
        )
    return pc.cast(array, target, safe=safe)


def _refuse_nul(array: pa.ChunkedArray, name: str) -> None:
    """PostgreSQL text cannot hold NUL: look at the bytes once (a NUL byte is rare), and name the
    first row only when there is one."""
    for chunk in array.chunks:
        strings = chunk.dictionary if isinstance(chunk, pa.DictionaryArray) else chunk
        data = strings.buffers()[2]
        if data is None or np.frombuffer(data, dtype=np.uint8).all():
            continue
        nul = pc.fill_null(pc.match_substring(pc.cast(array, pa.string()), "\x00"), False)
        rows = pc.indices_nonzero(nul)
        if len(rows):
            first = rows[0].as_py()
            raise ValueError(
                f"PostgreSQL text cannot contain NUL (\\x00) characters: column {name!r}: "
                f"{len(rows)} value(s), first at row {first}: {array[first].as_py()[:80]!r}"
            )
        return


def first_surrogate(values: pd.Series) -> int | None:
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
