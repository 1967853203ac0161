"""Rows compared with each other: `first_of_each_group`, what the duplicate rule is written with.

Fast on a million rows because most rows share their key with no other: rows are hashed by their
key first, and only rows whose hash repeats are sorted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from zip_etl.transform import text_kernels as kernels

_LAST = np.iinfo(np.int64).max
_FIRST = np.iinfo(np.int64).min


def first_of_each_group(by: list[pa.Array], order: list[tuple[pa.Array, str]]) -> np.ndarray:
    """For each row, the position of the first row of its group: rows whose values of `by` are all
    equal (NULL equal to NULL) form a group, ordered by `order`, a list of (values, "ascending" or
    "descending") as SQL's ORDER BY, NULL after every value when ascending and before every value
    when descending (as PostgreSQL sorts them). A row alone in its group is its own first row."""
    n = len(by[0])
    first = np.arange(n, dtype=np.int64)
    if n < 2:
        return first
    # Rows that may share their key: the same 64-bit hash of it; equal keys always do. Then the
    # exact keys, for those rows only.
    with np.errstate(over="ignore"):
        hashed = np.zeros(n, dtype=np.uint64)
        for values in by:
            hashed = kernels.mix(hashed ^ _hashes(values))
    rows = np.flatnonzero(_repeated(hashed))
    if rows.size < 2:
        return first
    key = np.zeros(rows.size, dtype=np.int64)
    for values in by:
        codes, _ = pd.factorize(_codes(values.take(pa.array(rows))))
        key = pd.factorize(key * (int(codes.max()) + 2) + codes)[0]
    repeated = pd.Series(key).duplicated(keep=False).to_numpy()
    rows, key = rows[repeated], key[repeated]
    if not rows.size:
        return first
    sort_keys = [_sort_key(values.take(pa.array(rows)), direction) for values, direction in reversed(order)]
    ordered = np.lexsort((*sort_keys, key))
    rows, key = rows[ordered], key[ordered]
    starts = np.ones(len(rows), dtype=bool)
    starts[1:] = key[1:] != key[:-1]
    group_start = np.maximum.accumulate(np.where(starts, np.arange(len(rows)), 0))
    first[rows] = rows[group_start]
    return first


def _hashes(values: pa.Array) -> np.ndarray:
    """A 64-bit number per value, equal for equal values (NULL has its own)."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return kernels.fingerprints(values)
    return kernels.mix(_codes(values).astype(np.uint64))


def _codes(values: pa.Array) -> np.ndarray:
    """Integers equal where values are equal (NULL as -1 for text, its own value otherwise)."""
    if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
        return pc.dictionary_encode(values).indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    numbers = values.cast(pa.int64()) if not pa.types.is_integer(values.type) else values
    return numbers.fill_null(_LAST).to_numpy(zero_copy_only=False).astype(np.int64)


def _sort_key(values: pa.Array, direction: str) -> np.ndarray:
    """int64 that sorts ascending as `values` sort in `direction` (NULL as the largest value)."""
    if direction not in ("ascending", "descending"):
        raise ValueError(f"order is 'ascending' or 'descending', not {direction!r}")
    if pa.types.is_timestamp(values.type):
        values = values.cast(pa.int64())
    numbers = values.cast(pa.int64()).to_numpy(zero_copy_only=False) if values.null_count == 0 else \
        values.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
    valid = kernels.valid_mask(values)
    if direction == "ascending":
        return np.where(valid, numbers, _LAST)
    return np.where(valid, -numbers, _FIRST)


def _repeated(hashes: np.ndarray) -> np.ndarray:
    """The hashes that may occur more than once: all that do, and a few that share their top bits
    with one that does (a sort, which NumPy does fast for integers, then a table of those bits)."""
    ordered = np.sort(hashes)
    again = ordered[1:][ordered[1:] == ordered[:-1]]
    if not again.size:
        return np.zeros(len(hashes), dtype=bool)
    bits = max(10, (8 * again.size).bit_length())
    table = np.zeros(1 << bits, dtype=bool)
    table[(again >> np.uint64(64 - bits)).astype(np.int64)] = True
    return table[(hashes >> np.uint64(64 - bits)).astype(np.int64)]
