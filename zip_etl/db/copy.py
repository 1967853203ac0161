"""Move pandas DataFrames in and out of PostgreSQL with COPY, exactly.

Why not `pandas.to_csv` / `read_csv` alone: CSV as pandas writes and reads it cannot tell NULL from
the empty string. Here NULL is an unquoted empty field and every text value is quoted, which
PostgreSQL's CSV COPY keeps apart; on the way out a per-row null mask travels with the data. So any
text (commas, quotes, tabs, newlines, backslashes, `\\N`, non-ASCII) round-trips byte for byte.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from psycopg2 import sql

# SQL type -> how a column is represented in pandas when loaded back.
INTEGER_TYPES = {"smallint": "Int16", "integer": "Int32", "bigint": "Int64"}
FLOAT_TYPES = {"real": "float32", "double precision": "float64"}
TEXT_TYPES = {"text", "varchar", "character varying"}
NULL_MASK_COLUMN = "__zip_etl_nulls"


def _encode_text(values: Sequence) -> list[str]:
    return ['"' + v.replace('"', '""') + '"' if isinstance(v, str) else "" for v in values]


def _encode_float(v: float) -> str:
    if v != v:  # NaN is missing: NULL
        return ""
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(float(v))


def _encode_column(series: pd.Series) -> list[str]:
    """CSV fields for one column: '' for NULL, quoted text, exact numbers."""
    if isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    missing = series.isna().to_numpy()
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        values = series.astype(object).tolist()
        return ["" if m else ("t" if v else "f") for v, m in zip(values, missing)]
    if pd.api.types.is_integer_dtype(dtype):
        values = series.astype(object).tolist()
        return ["" if m else str(int(v)) for v, m in zip(values, missing)]
    if pd.api.types.is_float_dtype(dtype):
        return [_encode_float(v) for v in series.astype("float64").tolist()]
    if pd.api.types.is_datetime64_any_dtype(dtype):
        if isinstance(dtype, pd.ArrowDtype):  # pyarrow's strftime reads %S with the fraction: use numpy's
            unit = dtype.pyarrow_dtype.unit
            zone = dtype.pyarrow_dtype.tz
            series = series.astype(f"datetime64[{unit}, {zone}]" if zone else f"datetime64[{unit}]")
            dtype = series.dtype
        if getattr(dtype, "tz", None) is None:
            text = series.dt.strftime("%Y-%m-%d %H:%M:%S.%f")
        else:
            text = series.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.%f+00")
        return ["" if m else v for v, m in zip(text.tolist(), missing)]
    values = series.astype(object).tolist()
    return ["" if m else v for v, m in zip(_encode_text(values), missing)]


class UnstorableTextError(ValueError):
    """Text PostgreSQL cannot store: a NUL character, or a lone surrogate (bytes that were not UTF-8)."""


def _find_unstorable(df: pd.DataFrame, columns: Sequence[str], test) -> str:
    for name in columns:
        values = df[name].astype(object).tolist()
        bad = [i for i, v in enumerate(values) if isinstance(v, str) and test(v)]
        if bad:
            return f"column {name!r}: {len(bad)} value(s), first at row {bad[0]}: {values[bad[0]][:80]!r}"
    return "a value"


def _has_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def frame_to_csv(df: pd.DataFrame, columns: Sequence[str]) -> io.BytesIO:
    """Encode `df[columns]` as PostgreSQL CSV (no header) ready for `COPY ... FROM STDIN`.

    Raises UnstorableTextError, naming the column and row, for text PostgreSQL cannot hold, before
    anything is sent: a NUL character, or a lone surrogate (bytes that were not UTF-8).
    """
    buffer = io.BytesIO()
    if len(df) == 0:
        return buffer
    encoded = [_encode_column(df[name]) for name in columns]
    text = "\n".join(map(",".join, zip(*encoded))) + "\n"
    if "\x00" in text:
        raise UnstorableTextError(
            f"PostgreSQL text cannot contain NUL (\\x00) characters: {_find_unstorable(df, columns, lambda v: chr(0) in v)}"
        )
    try:
        buffer.write(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise UnstorableTextError(
            f"text is not valid Unicode (undecodable bytes): {_find_unstorable(df, columns, _has_surrogate)}"
        ) from None
    buffer.seek(0)
    return buffer


def copy_frame_in(cursor, table: sql.Composable, df: pd.DataFrame, columns: Sequence[str]) -> int:
    """COPY `df[columns]` into `table` on `cursor`'s transaction; return the rows sent."""
    if len(df) == 0:
        return 0
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        table, sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )
    cursor.copy_expert(statement.as_string(cursor), frame_to_csv(df, columns))
    return len(df)


def _null_mask_expression(expressions: Sequence[sql.Composable]) -> sql.Composable:
    flags = [sql.SQL("CASE WHEN {} IS NULL THEN '1' ELSE '0' END").format(e) for e in expressions]
    return sql.SQL("concat({})").format(sql.SQL(", ").join(flags))


def copy_query_out(
    cursor,
    columns: dict[str, str],
    from_clause: sql.Composable,
    params: Sequence | None = None,
    expressions: dict[str, sql.Composable] | None = None,
) -> pd.DataFrame:
    """Run `SELECT columns FROM ...` through `COPY ... TO STDOUT` and parse it into typed pandas.

    `columns` maps column name to SQL type; `from_clause` is everything after FROM (parameters as
    %s placeholders, filled by psycopg2 from `params`); `expressions` optionally replaces a column
    by an expression (e.g. a cast). Text that is not valid UTF-8 (possible in a SQL_ASCII database)
    is kept, not lost: its bytes become lone surrogates (Python's "surrogateescape"), which the
    cleaning rules reject to quarantine with the bytes shown.
    """
    names = list(columns)
    expressions = expressions or {}
    selected = [expressions.get(c, sql.Identifier(c)) for c in names]
    query = sql.SQL("COPY (SELECT {}, {} FROM {}) TO STDOUT WITH (FORMAT csv, HEADER)").format(
        sql.SQL(", ").join(selected),
        _null_mask_expression(selected),
        from_clause,
    )
    statement = cursor.mogrify(query, params)  # values are escaped by psycopg2, never formatted in
    buffer = io.BytesIO()
    cursor.copy_expert(statement.decode() if isinstance(statement, bytes) else statement, buffer)
    buffer.seek(0)
    raw = pd.read_csv(
        buffer,
        dtype=object,
        na_filter=False,
        keep_default_na=False,
        encoding="utf-8",
        encoding_errors="surrogateescape",
        names=[*names, NULL_MASK_COLUMN],
        header=0,
    )
    return _typed_frame(raw, columns)


def _typed_frame(raw: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    n = len(raw)
    masks = raw.pop(NULL_MASK_COLUMN).astype(str).str.cat() if n else ""
    nulls = (
        np.frombuffer(masks.encode("ascii"), dtype=np.uint8).reshape(n, len(columns)) == ord("1")
        if n
        else np.zeros((0, len(columns)), dtype=bool)
    )
    out = {}
    for i, (name, sql_type) in enumerate(columns.items()):
        values = raw[name].astype(object)
        is_null = nulls[:, i]
        out[name] = _to_pandas(values.where(~is_null, None), sql_type)
    return pd.DataFrame(out, index=pd.RangeIndex(n))


def _to_pandas(values: pd.Series, sql_type: str) -> pd.Series:
    sql_type = sql_type.lower()
    if sql_type in INTEGER_TYPES:
        # Straight to nullable integers: through float64 a bigint over 2**53 next to a NULL lost digits.
        return pd.to_numeric(values, dtype_backend="numpy_nullable").astype(INTEGER_TYPES[sql_type])
    if sql_type in FLOAT_TYPES:
        return pd.to_numeric(values.where(values.notna(), np.nan)).astype(FLOAT_TYPES[sql_type])
    if sql_type == "boolean":
        return values.map({"t": True, "f": False}).astype("boolean")
    if sql_type.startswith("timestamp"):
        return pd.to_datetime(values, utc="with time zone" in sql_type or sql_type == "timestamptz", format="ISO8601")
    if sql_type == "date":
        return pd.to_datetime(values, format="ISO8601").dt.date
    return values  # text: python str, None for NULL
