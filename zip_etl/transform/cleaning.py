"""Runs the cleaning rules over raw rows: the pipeline's side of `rules.py`. No rule lives here.

`clean_companies` reads the raw columns as Arrow strings, applies every value rule of `rules.py` to
its raw column (once per distinct value when the column repeats itself), applies the rejection rules
in their order, each to the rows the earlier ones kept, writes each rejected row's detail from its
rule's template, and builds the cleaned columns: downcast (the smallest integer types; Arrow
dictionaries, pandas' categoricals in Arrow form, for text with at most half as many distinct values
as rows) and Arrow-backed.

Input: one or many zip codes' raw rows (`RAW_COLUMNS`, text as upstream sent it: object, pandas
`string[pyarrow]` or `pd.ArrowDtype` strings). Output: a `CleaningResult`.
"""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from zip_etl.tables import CLEANED_COMPANIES, RAW_COMPANIES
from zip_etl.transform import (
    rules,  # noqa: F401 - importing it declares the rules (rulebook.RULES)
    text,
)
from zip_etl.transform import text_kernels as kernels
from zip_etl.transform.rulebook import RULES, Columns, Rule

# The columns come from the tables' declarations (zip_etl/tables.py), the one place they are declared.
RAW_COLUMNS = RAW_COMPANIES.column_names
CLEANED_COLUMNS = CLEANED_COMPANIES.column_names
TEXT_COLUMNS = [c for c in RAW_COLUMNS if c not in ("raw_id", "updated_at")]

VALUE_RULES = [r for r in RULES if r.kind == "value"]
REJECTION_RULES = [r for r in RULES if r.kind == "rejection"]
REJECTION_REASONS = [r.reason for r in REJECTION_RULES]
"""Every reason a row may be rejected for, in the order the rules apply (the first that applies)."""
RULES_BY_NAME = {r.name: r for r in RULES}


@dataclass
class CleaningResult:
    cleaned: pd.DataFrame
    """Clean rows, `CLEANED_COLUMNS`, downcast, all `pd.ArrowDtype`: strings, Arrow dictionaries for
    text with few distinct values, the smallest integers, UTC timestamps (in the input's unit).
    `pa.Table.from_pandas(cleaned, preserve_index=False)` takes the arrays as they are."""
    rejected: pd.DataFrame
    """Rejected rows with their original raw values, a `reason` (one of `REJECTION_REASONS`) and a
    `detail` for a person (which value, which rule)."""
    unparseable: dict[str, int] = field(default_factory=dict)
    """Values that were present but could not be parsed and became NULL, per cleaned column."""
    duplicate_kept_raw_id: pd.Series | None = None
    """Aligned with `rejected`: for a `duplicate` row, the raw_id of the row that was kept instead
    (to settle duplicates that span chunks); NA for the other reasons."""

    def __post_init__(self) -> None:
        if self.duplicate_kept_raw_id is None:
            self.duplicate_kept_raw_id = pd.Series(
                pd.array([None] * len(self.rejected), dtype=pd.ArrowDtype(pa.int64())),
                index=self.rejected.index,
                name="duplicate_kept_raw_id",
            )


# --- raw columns in, as Arrow ---

_SURROGATE = re.compile("[\udc80-\udcff]")


def _has_invalid_encoding(value: object) -> bool:
    """Text holding bytes that were not UTF-8 (read with "surrogateescape")."""
    return isinstance(value, str) and not value.isascii() and _SURROGATE.search(value) is not None


def _readable_text(value: str) -> str:
    """Text with its undecodable bytes (lone surrogates) as U+FFFD, as the rules read it."""
    return _SURROGATE.sub("\ufffd", value)


@dataclass
class _RawText:
    """One raw text column as Arrow strings, and the values that are not UTF-8."""

    name: str
    values: pa.Array
    """NULL where the raw value is NULL or not a string; each byte that is not UTF-8 as U+FFFD."""
    invalid: np.ndarray | None
    """Text that is not valid UTF-8 (lone surrogates from "surrogateescape", or invalid bytes)."""
    source: pd.Series

    def python_values(self, positions: np.ndarray) -> list:
        """The raw values at `positions` as Python strings, bytes that are not UTF-8 as lone
        surrogates (as a "surrogateescape" read gives them)."""
        if self.source.dtype == object:
            return self.source.to_numpy()[positions].tolist()
        if self.invalid is None:
            return self.values.take(pa.array(positions)).to_pylist()
        source = kernels.text_array(_arrow_text(self.source))
        binary = source.cast(pa.large_binary() if pa.types.is_large_string(source.type) else pa.binary())
        return [None if b is None else b.decode("utf-8", "surrogateescape")
                for b in binary.take(pa.array(positions)).to_pylist()]


def _arrow_text(series: pd.Series) -> pa.Array | None:
    """The Arrow array behind an Arrow-backed column, None for other columns."""
    dtype = series.dtype
    arrow_backed = isinstance(dtype, pd.ArrowDtype) or (
        isinstance(dtype, pd.StringDtype) and str(dtype.storage).startswith("pyarrow")
    )
    if not arrow_backed:
        return None
    values = series.array.__arrow_array__()
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) and values.num_chunks != 1 else values
    return values.chunk(0) if isinstance(values, pa.ChunkedArray) else values


def _raw_text(name: str, series: pd.Series) -> _RawText:
    arrow = _arrow_text(series)
    n = len(series)
    if arrow is None and isinstance(series.dtype, pd.CategoricalDtype):
        series = series.astype(object)
    if arrow is not None:
        is_text = pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type) or (
            pa.types.is_dictionary(arrow.type) and pa.types.is_string(arrow.type.value_type))
        if not is_text:  # not text at all: every value is "not a str" to the rules
            return _RawText(name, pa.nulls(n, pa.string()), None, series)
        values = kernels.text_array(arrow)
        bad = kernels.invalid_utf8(values, kernels.text_bytes(values).nonascii())
        if bad.any():
            column = _RawText(name, values, bad, series)
            readable = [_readable_text(v) for v in column.python_values(np.flatnonzero(bad))]
            column.values = kernels.scatter(values, bad, pa.array(readable, values.type))
            return column
        return _RawText(name, values, None, series)

    objects = series.to_numpy(dtype=object)
    if pd.api.types.infer_dtype(objects, skipna=True) in ("string", "empty"):
        try:
            return _RawText(name, kernels.text_array(pa.array(objects, type=pa.string(), from_pandas=True)), None, series)
        except UnicodeEncodeError:
            pass
    # The slow path, value by value: values that are not str are NULL to the rules, and text with
    # lone surrogates (bytes that were not UTF-8, read with "surrogateescape") is invalid.
    is_str = np.fromiter((isinstance(v, str) for v in objects), dtype=bool, count=n)
    invalid = np.fromiter((_has_invalid_encoding(v) for v in objects), dtype=bool, count=n)
    text_values = [(_readable_text(v) if bad else v) if ok else None
                   for v, ok, bad in zip(objects.tolist(), is_str.tolist(), invalid.tolist())]
    try:
        values = pa.array(text_values, type=pa.string())
    except UnicodeEncodeError:
        row = next(i for i, v in enumerate(text_values) if isinstance(v, str) and not _encodable(v))
        raise ValueError(
            f"column {name!r}, row {row}: text with a lone surrogate that is not an undecodable byte "
            f"(only \\udc80-\\udcff are): {objects[row]!r}"
        ) from None
    return _RawText(name, kernels.text_array(values), invalid if invalid.any() else None, series)


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Columns with at most this share of distinct values are cleaned once per distinct value.
DISTINCT_SHARE = 0.5
DISTINCT_MIN_ROWS = 64
_DISTINCT_SAMPLE = 20_000


def _distinct(values: pa.Array, always: bool = False) -> tuple[np.ndarray, pa.Array] | None:
    """(codes, distinct values) when a column repeats itself enough to be cleaned per distinct value
    (`always`: the partition column, which repeats itself by construction)."""
    n = len(values)
    if always:
        encoded = pc.dictionary_encode(values)
        return _codes(encoded.indices), encoded.dictionary
    if n < DISTINCT_MIN_ROWS:
        return None
    # Rows spread over the whole column (input sorted by zip code repeats itself at the start).
    sample = values.take(pa.array(np.linspace(0, n - 1, _DISTINCT_SAMPLE).astype(np.int64))) if n > _DISTINCT_SAMPLE else values
    if pc.count_distinct(sample, mode="all").as_py() > DISTINCT_SHARE * len(sample):
        return None
    encoded = pc.dictionary_encode(values)
    return _codes(encoded.indices), encoded.dictionary


def _at(values: np.ndarray, codes: np.ndarray, missing) -> np.ndarray:
    """`values[codes]`, with `missing` where a code is -1 (NULL)."""
    return np.append(values, np.array(missing, dtype=values.dtype)).take(codes)  # -1: the appended one


def _codes(indices: pa.Array) -> np.ndarray:
    return indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


@dataclass
class _Coded:
    """A cleaned column: its rows, or codes (-1 for NULL) into its values for the distinct raw values."""

    values: pa.Array
    codes: np.ndarray | None = None

    def rows(self, alive: np.ndarray | None = None) -> pa.Array:
        """Every row's value (only the rows in `alive`, a mask, when given)."""
        if self.codes is None:
            return self.values if alive is None else self.values.filter(pa.array(alive))
        codes = self.codes if alive is None else self.codes[alive]
        return self.values.take(pa.array(codes, mask=codes < 0))

    def take(self, rows: np.ndarray) -> pa.Array:
        if self.codes is None:
            return self.values.take(pa.array(rows))
        codes = self.codes[rows]
        return self.values.take(pa.array(codes, mask=codes < 0))

    def per_row(self, function, missing) -> np.ndarray:
        """`function` (array -> NumPy array) for every row; `missing` for NULL codes."""
        if self.codes is None:
            return function(self.values)
        return _at(function(self.values), self.codes, missing)

    def valid(self) -> np.ndarray:
        return self.per_row(kernels.valid_mask, False)


# --- the rules, applied ---


def _value_rule(rule: Rule, column: _RawText, today: dt.date,
                distinct: tuple[np.ndarray, pa.Array] | None) -> list[_Coded]:
    """The rule over the column (over its distinct values when it repeats itself), one `_Coded` per
    output."""
    source = column.values if distinct is None else distinct[1]
    result = rule.function(source, today=today) if rule.takes_today else rule.function(source)
    outputs = result if isinstance(result, tuple) else (result,)
    if len(outputs) != len(rule.cleaned):
        raise ValueError(f"rule {rule.name} ({rule.where}) returned {len(outputs)} columns for {rule.cleaned}")
    coded = []
    for name, output in zip(rule.cleaned, outputs):
        output = _as_array(output)
        if len(output) != len(source):
            raise ValueError(f"rule {rule.name} ({rule.where}) returned {len(output)} values of {name} for "
                             f"{len(source)} raw values: a value rule returns one value per raw value")
        coded.append(_Coded(output, None if distinct is None else distinct[0]))
    return coded


def _as_array(values) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks()
    return values if isinstance(values, pa.Array) else pa.array(values)


def _unparseable(column: _RawText, cleaned: _Coded, distinct: tuple[np.ndarray, pa.Array] | None) -> int:
    """Raw values that have text and cleaned to NULL."""
    if distinct is None:
        present = text.has_text(column.values)
    else:
        present = _at(text.has_text(distinct[1]), distinct[0], False)
    return int(np.count_nonzero(present & ~cleaned.valid()))


def _not_utf8(texts: dict[str, _RawText], n: int) -> pa.Array:
    """Per row: its text columns that are not UTF-8, joined by ", "; NULL where there is none."""
    names = [(column.name, column.invalid) for column in texts.values() if column.invalid is not None]
    if not names:
        return pa.nulls(n, pa.string())
    out = [None] * n
    for row in np.flatnonzero(np.logical_or.reduce([invalid for _, invalid in names])).tolist():
        out[row] = ", ".join(name for name, invalid in names if invalid[row])
    return pa.array(out, pa.string())


@dataclass
class _Rejected:
    rule: Rule
    rows: np.ndarray
    """Positions of the rows the rule rejected."""
    fields: dict
    """The values the rule named for its detail, for those rows."""


def _rejections(raw: dict[str, pa.Array], clean: dict[str, _Coded], n: int) -> list[_Rejected]:
    """Each rejection rule over the rows the earlier ones kept."""
    alive = np.ones(n, dtype=bool)
    out = []
    for rule in REJECTION_RULES:
        everyone = bool(alive.all())
        mask = None if everyone else alive.copy()
        raw_view = Columns("raw", list(raw), lambda name, m=mask: raw[name] if m is None else raw[name].filter(pa.array(m)))
        clean_view = Columns("clean", list(clean), lambda name, m=mask: clean[name].rows(m))
        rejects = rule.function(raw_view, clean_view)
        candidates = np.arange(n) if everyone else np.flatnonzero(alive)
        if len(rejects.where) != len(candidates):
            raise ValueError(f"rule {rule.name} ({rule.where}) returned {len(rejects.where)} values for "
                             f"{len(candidates)} rows")
        fields = {k: (v.filter(pa.array(rejects.where)) if isinstance(v, (pa.Array, pa.ChunkedArray))
                      else v[rejects.where] if isinstance(v, np.ndarray) else v)
                  for k, v in rejects.fields.items()}
        rows = candidates[rejects.where]
        alive[rows] = False
        out.append(_Rejected(rule, rows, fields))
    return out


def _detail(rejection: _Rejected, raw: dict[str, pa.Array], clean: dict[str, _Coded]) -> pa.Array:
    """The rule's detail template (`str.format`) for each of its rows."""
    parts: list = []
    for literal, name, spec, conversion in string.Formatter().parse(rejection.rule.detail):
        if literal:
            parts.append(literal)
        if name is None:
            continue
        kind, _, column = name.partition(".")
        if kind == "raw" and column:
            values = raw[column].take(pa.array(rejection.rows))
        elif kind == "clean" and column:
            values = clean[column].take(rejection.rows)
        elif name in rejection.fields:
            values = rejection.fields[name]
        else:
            raise ValueError(f"rule {rejection.rule.name} ({rejection.rule.where}): its detail names {{{name}}}, "
                             "which is neither raw.<column>, clean.<name> nor a value it passes to reject()")
        parts.append(_formatted(values, spec, conversion))
    if all(isinstance(part, str) for part in parts):  # the same detail for every row
        return pa.array(["".join(parts)] * len(rejection.rows), pa.string())
    return pc.binary_join_element_wise(*parts, "")


def _formatted(values, spec: str, conversion: str | None) -> pa.Array | str:
    """`format(value, spec)` (after `!r` / `!s`) of each value, as Python formats it."""
    if not isinstance(values, (pa.Array, pa.ChunkedArray, np.ndarray)):
        return format(repr(values) if conversion == "r" else values, spec)
    arrow = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(values)
    plain = not spec and conversion != "r"
    if plain and (pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type)):
        return pc.fill_null(arrow, "None")
    if plain and pa.types.is_integer(arrow.type):
        return pc.fill_null(arrow.cast(pa.string()), "None")
    convert = {"r": repr, "s": str, "a": ascii}.get(conversion, lambda v: v)
    return pa.array([format(convert(v), spec) for v in arrow.to_pylist()], pa.string())


def _raw_ids(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(raw ids as int64, valid)."""
    arrow = _arrow_text(series) if isinstance(series.dtype, pd.ArrowDtype) else None
    if arrow is not None:
        arrow = arrow.cast(pa.int64())
        return arrow.fill_null(0).to_numpy(zero_copy_only=False), kernels.valid_mask(arrow)
    ids = pd.array(series, dtype="Int64")
    return ids.to_numpy(dtype="int64", na_value=0), ~ids.isna()


def _timestamps(series: pd.Series) -> tuple[pa.Array, pa.Array]:
    """(source_updated_at as an Arrow UTC timestamp array in the input's unit, the same in
    microseconds as PostgreSQL keeps them: what the rules read)."""
    if isinstance(series.dtype, pd.ArrowDtype) and pa.types.is_timestamp(series.dtype.pyarrow_dtype):
        arrow = _arrow_text(series)
        unit = arrow.type.unit
        if arrow.type.tz is not None and arrow.type.tz != "UTC":
            arrow = arrow.cast(pa.timestamp(unit, tz="UTC"))
        elif arrow.type.tz is None:
            arrow = pa.Array.from_buffers(pa.timestamp(unit, tz="UTC"), len(arrow), arrow.buffers(), arrow.null_count, arrow.offset)
        ints = arrow.cast(pa.int64()).fill_null(np.iinfo(np.int64).min).to_numpy(zero_copy_only=False)
        if unit == "us":
            return arrow, arrow
        micros = ints.view(f"datetime64[{unit}]").astype("datetime64[us]").astype(np.int64)
        return arrow, _microseconds(micros)
    stamps = pd.to_datetime(series, utc=True)
    return pa.array(stamps), _microseconds(stamps.to_numpy(dtype="datetime64[us]").astype("int64"))


def _microseconds(micros: np.ndarray) -> pa.Array:
    """UTC timestamps in microseconds from int64 (NaT, the smallest int64, as NULL)."""
    return pa.array(micros, type=pa.timestamp("us", tz="UTC"), mask=micros == np.iinfo(np.int64).min)


def _rows_as_they_came(raw: pd.DataFrame, texts: dict[str, _RawText], rows: np.ndarray) -> pd.DataFrame:
    """`raw.iloc[rows]` (every column, values and dtypes as they came), taking Arrow text from the
    contiguous arrays already made of it (pandas would take from the chunks, merging them first)."""
    out = {}
    for name, column in raw.items():
        text = texts.get(name)
        if (text is not None and text.invalid is None and isinstance(column.dtype, pd.ArrowDtype)
                and column.dtype.pyarrow_dtype == text.values.type):
            out[name] = pd.Series(pd.arrays.ArrowExtensionArray(text.values.take(pa.array(rows))), name=name)
        else:
            out[name] = column.iloc[rows].reset_index(drop=True)
    return pd.DataFrame(out, columns=raw.columns)


def _readable(rejected: pd.DataFrame, texts: dict[str, _RawText], rows: np.ndarray) -> pd.DataFrame:
    """Arrow text that is not valid UTF-8 cannot be read back as str: such columns of the rejected
    rows become Python strings with the bad bytes as lone surrogates, as a "surrogateescape" read
    would give them."""
    for name, column in texts.items():
        if column.invalid is not None and column.source.dtype != object:
            rejected[name] = pd.Series(column.python_values(rows), dtype=object)
    return rejected


# --- the transform ---


def clean_companies(raw: pd.DataFrame, *, today: dt.date | None = None) -> CleaningResult:
    """Clean raw rows of one or more zip codes (each row's partition is its `zip_code`)."""
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"raw rows lack the columns {missing}; expected {RAW_COLUMNS}")
    kernels.check_unicode_tables()
    n = len(raw)  # rows are addressed by position throughout: the index is not read
    today = today or dt.date.today()
    texts = {c: _raw_text(c, raw[c]) for c in TEXT_COLUMNS}
    raw_id, raw_id_valid = _raw_ids(raw["raw_id"])
    updated_at, updated_at_us = _timestamps(raw["updated_at"])

    clean: dict[str, _Coded] = {}
    unparseable: dict[str, int] = {}
    for rule in VALUE_RULES:
        column = texts[rule.raw]
        distinct = _distinct(column.values, always=rule.raw == RAW_COMPANIES.partition_column)
        outputs = _value_rule(rule, column, today, distinct)
        clean.update(zip(rule.cleaned, outputs))
        if rule.counts_unparseable:
            unparseable[rule.cleaned[0]] = _unparseable(column, outputs[0], distinct)

    raw_columns = {name: column.values for name, column in texts.items()}
    raw_columns.update(raw_id=pa.array(raw_id, mask=~raw_id_valid), updated_at=updated_at_us,
                       not_utf8=_not_utf8(texts, n))
    rejections = _rejections(raw_columns, clean, n)
    reason = np.zeros(n, dtype=np.int8)
    for code, rejection in enumerate(rejections, 1):
        reason[rejection.rows] = code

    rejected_rows = np.flatnonzero(reason)
    rejected = _readable(_rows_as_they_came(raw, texts, rejected_rows), texts, rejected_rows)
    details, kept_ids = _details_in_row_order(rejections, raw_columns, clean)
    rejected["reason"] = pd.Series(
        pd.array(np.array(["", *REJECTION_REASONS], dtype=object)[reason[rejected_rows]].tolist(),
                 dtype=pd.ArrowDtype(pa.string())))
    rejected["detail"] = pd.Series(pd.arrays.ArrowExtensionArray(details))

    keep = np.flatnonzero(reason == 0)
    columns = {}
    for name in CLEANED_COLUMNS:
        if name == "raw_id":
            columns[name] = _int_output(raw_id[keep], raw_id_valid[keep])
        elif name == "source_updated_at":
            columns[name] = pd.Series(pd.arrays.ArrowExtensionArray(updated_at.take(pa.array(keep))))
        elif name not in clean:
            raise ValueError(f"no rule makes the cleaned column {name!r} (rules.py)")
        elif pa.types.is_integer(clean[name].values.type):
            values = clean[name].take(keep)
            columns[name] = _int_output(values.fill_null(0).to_numpy(zero_copy_only=False), kernels.valid_mask(values))
        else:
            columns[name] = _text_output(clean[name], keep)
    return CleaningResult(
        cleaned=pd.DataFrame(columns),
        rejected=rejected,
        unparseable=unparseable,
        duplicate_kept_raw_id=pd.Series(pd.arrays.ArrowExtensionArray(kept_ids), name="duplicate_kept_raw_id"),
    )


# The reasons each partition's metadata counts, in this order (the transform contract's optional
# attribute, zip_etl/table_cleaning.py).
clean_companies.rejection_reasons = tuple(REJECTION_REASONS)


def _details_in_row_order(rejections: list[_Rejected], raw: dict[str, pa.Array],
                          clean: dict[str, _Coded]) -> tuple[pa.Array, pa.Array]:
    """(detail, kept raw_id of a duplicate) for each rejected row, in row order."""
    positions, details, kept = [], [], []
    for rejection in rejections:
        if not len(rejection.rows):
            continue
        positions.append(rejection.rows)
        details.append(_detail(rejection, raw, clean).cast(pa.string()))
        kept_raw_id = rejection.fields.get("kept_raw_id") if rejection.rule.reason == "duplicate" else None
        kept.append(kept_raw_id.cast(pa.int64()) if kept_raw_id is not None else pa.nulls(len(rejection.rows), pa.int64()))
    if not positions:
        return pa.array([], pa.string()), pa.array([], pa.int64())
    order = pa.array(np.argsort(np.concatenate(positions), kind="stable"))
    return pa.concat_arrays(details).take(order), pa.concat_arrays(kept).take(order)


# --- output columns, downcast as they are built (rule 7) ---


def _arrow_series(values: pa.Array) -> pd.Series:
    return pd.Series(pd.arrays.ArrowExtensionArray(values))


def _dictionary(codes: np.ndarray, values: pa.Array) -> pd.Series:
    """An Arrow dictionary column (pandas' categorical, Arrow-native: no Python objects for the
    distinct values) from codes into `values`, -1 for NULL; the smallest index type."""
    index_type = next(t for t in (np.int8, np.int16, np.int32, np.int64) if len(values) <= np.iinfo(t).max)
    indices = pa.array(codes.astype(index_type), mask=codes < 0)
    return _arrow_series(pa.DictionaryArray.from_arrays(indices, values.cast(pa.string())))


def _few(distinct: int, rows: int, ratio: float = 0.5) -> bool:
    return rows > 0 and distinct <= ratio * rows


def _text_output(text: _Coded, keep: np.ndarray) -> pd.Series:
    """Kept rows of a cleaned text column: an Arrow dictionary when it has few distinct values (at
    most half the rows), else Arrow strings."""
    if text.codes is None:
        values = text.values.take(pa.array(keep))
        at_least = kernels.distinct_at_least(values)
        if not _few(at_least, len(keep)):
            return _arrow_series(values)
        encoded = pc.dictionary_encode(values)
        codes, categories = _codes(encoded.indices), encoded.dictionary
        if not _few(len(categories), len(keep)):
            return _arrow_series(values)
        return _dictionary(codes, categories)
    # Distinct raw values may clean to the same text (`NY`, ` ny`): one category each.
    encoded = pc.dictionary_encode(text.values)
    entry, categories = _codes(encoded.indices), encoded.dictionary
    rows = text.codes[keep]
    codes = _at(entry, rows, -1)
    used = np.zeros(len(categories), dtype=bool)
    used[codes[codes >= 0]] = True
    if not _few(int(used.sum()), len(keep)):
        return _arrow_series(categories.take(pa.array(codes, mask=codes < 0)))
    renumber = np.cumsum(used) - 1
    codes = _at(renumber, codes, -1)
    return _dictionary(codes, categories.filter(pa.array(used)))


_INT_TYPES = [("Int8", np.int8), ("Int16", np.int16), ("Int32", np.int32), ("Int64", np.int64)]
_ARROW_INT_TYPES = {"Int8": pa.int8(), "Int16": pa.int16(), "Int32": pa.int32(), "Int64": pa.int64()}


def _smallest_int(low: int, high: int) -> str:
    for name, np_type in _INT_TYPES:
        info = np.iinfo(np_type)
        if info.min <= low and high <= info.max:
            return name
    return "Int64"


def _int_output(values: np.ndarray, valid: np.ndarray) -> pd.Series:
    """The smallest Arrow integer type that holds the valid values (int8 when there are none)."""
    name = _smallest_int(int(values[valid].min()), int(values[valid].max())) if valid.any() else "Int8"
    np_type = dict(_INT_TYPES)[name]
    return _arrow_series(pa.array(values.astype(np_type), mask=~valid, type=_ARROW_INT_TYPES[name]))


def smallest_int_dtype(values: pd.Series):
    """The smallest integer dtype that holds `values`, of the same kind: Arrow integers for an
    Arrow-backed column, else pandas' nullable integers."""
    arrow = isinstance(values.dtype, pd.ArrowDtype)
    if values.notna().sum() == 0:
        name = "Int8"
    else:
        name = _smallest_int(int(values.min()), int(values.max()))
    return pd.ArrowDtype(_ARROW_INT_TYPES[name]) if arrow else name


def downcast(df: pd.DataFrame, *, category_max_ratio: float = 0.5) -> pd.DataFrame:
    """Shrink a frame in memory without changing a value: small ints, categoricals for repeats."""
    out = {}
    for name, column in df.items():
        if isinstance(column.dtype, pd.CategoricalDtype):
            out[name] = column
        elif pd.api.types.is_integer_dtype(column.dtype):
            out[name] = column.astype(smallest_int_dtype(column))
        elif column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
            arrow = _arrow_text(column)
            if arrow is not None:
                encoded = pc.dictionary_encode(kernels.text_array(arrow))
                few = _few(len(encoded.dictionary), len(column), category_max_ratio)
                out[name] = _dictionary(_codes(encoded.indices), encoded.dictionary) if few else column
                if few:
                    out[name].index = column.index
                continue
            distinct = column.nunique(dropna=True)
            if _few(distinct, len(column), category_max_ratio):  # categories in order of appearance
                codes, uniques = pd.factorize(column, use_na_sentinel=True)
                out[name] = pd.Categorical.from_codes(codes, categories=uniques)
            else:
                out[name] = column
        else:
            out[name] = column
    return pd.DataFrame(out, index=df.index)


def frame_bytes(df: pd.DataFrame) -> int:
    """Bytes a frame holds in memory, strings included."""
    return int(df.memory_usage(deep=True, index=False).sum())


def _by_zip(counts: pd.Series | pd.DataFrame) -> pd.Series | pd.DataFrame:
    counts.index = pd.Index(counts.index.astype(object), dtype=object)
    return counts


def partition_stats(raw: pd.DataFrame, result: CleaningResult, partition_column: str = "zip_code",
                    reasons: Sequence[str] | None = REJECTION_REASONS) -> pd.DataFrame:
    """Rows in, out and rejected by reason, one row per partition (zip code) present in `raw`: a
    column per reason of `reasons` (None: per reason the rows were rejected for), in that order."""
    rows_in = _by_zip(raw.groupby(partition_column, observed=True).size().rename("rows_in"))
    rows_out = _by_zip(result.cleaned.groupby(partition_column, observed=True).size().rename("rows_out"))
    rejected = (
        result.rejected.groupby([partition_column, "reason"], observed=True).size().unstack(fill_value=0)
        if len(result.rejected)
        else pd.DataFrame(index=rows_in.index)
    )
    if reasons is None:
        reasons = sorted(str(c) for c in rejected.columns)
    rejected = _by_zip(rejected.reindex(columns=reasons, fill_value=0).add_prefix("rejected_"))
    rejected.columns = [str(c) for c in rejected.columns]
    stats = pd.concat([rows_in, rows_out, rejected], axis=1).fillna(0).astype("int64")
    stats.index = stats.index.astype(str)
    stats["rows_rejected"] = stats[[f"rejected_{r}" for r in reasons]].sum(axis=1)
    return stats


def duplicate_detail(kept_raw_id: int) -> str:
    """The detail the duplicate rule gives a row rejected in favour of the row `kept_raw_id`."""
    return RULES_BY_NAME["duplicate"].detail.format(kept_raw_id=kept_raw_id)


def normalize_record_ids(values: pd.Series) -> pd.Series:
    """Record ids as the record id rule cleans them: what the duplicate rule compares."""
    cleaned = RULES_BY_NAME["record_id"].function(_raw_text("record_id", values).values)
    return pd.Series(cleaned.to_pylist(), index=values.index, dtype=object)
