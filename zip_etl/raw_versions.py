"""Each zip code's raw data version, computed from the rows a run reads (no other pass over the table).

The version (zip_etl/tables.py) is `<rows>-<md5>`; the md5 is over the text PostgreSQL builds in
`zip_etl.db.ddl.raw_data_versions`, which the refresh and the observations compare with: each row's
`raw_id@updated_at` (the time in whole microseconds since 1970) in raw_id order, joined by commas. As in
SQL, a row whose raw id or update time is NULL counts but adds no text (string_agg leaves NULLs out),
and a zip code without any text has no version (None, SQL's NULL). The same rows give the same string
on both sides, so versions recorded before this was computed here keep comparing.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_HASHED_AT_ONCE = 1_000_000  # rows turned into text at once, for a zip code larger than a chunk


def _pairs(ids: pa.Array, updated: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw ids, microseconds, which rows have both) as numpy arrays."""
    valid = pc.and_(pc.is_valid(ids), pc.is_valid(updated)).to_numpy(zero_copy_only=False)
    ids = pc.fill_null(pc.cast(ids, pa.int64()), 0).to_numpy(zero_copy_only=False)
    micros = pc.fill_null(pc.cast(pc.cast(updated, pa.timestamp("us", tz=getattr(updated.type, "tz", None))),
                                  pa.int64()), 0).to_numpy(zero_copy_only=False)
    return ids, micros, valid


def _text(ids: np.ndarray, micros: np.ndarray) -> tuple[memoryview, np.ndarray]:
    """The rows' `raw_id@micros,` texts end to end, and where each row's text starts (and the end)."""
    text = pc.binary_join_element_wise(pc.cast(pa.array(ids), pa.string()), "@", pc.cast(pa.array(micros), pa.string()),
                                       ",", "")
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset: text.offset + len(text) + 1]
    return memoryview(text.buffers()[2]), offsets


def _out_of_order(ids: np.ndarray, micros: np.ndarray) -> bool:
    """Does any row come before the previous one in (raw id, microseconds) order?"""
    if len(ids) < 2:
        return False
    step = np.diff(ids)
    return bool(((step < 0) | ((step == 0) & (np.diff(micros) < 0))).any())


def _in_order(ids: np.ndarray, micros: np.ndarray) -> np.ndarray:
    """The order that sorts one zip code's rows by (raw id, microseconds). The rows mostly come in raw
    id order already (the table's physical order), which a stable sort (timsort) finds in one pass."""
    order = np.argsort(ids, kind="stable")
    if (np.diff(ids[order]) == 0).any():  # raw ids repeat (no key on the raw table): the time decides
        order = np.lexsort((micros, ids))
    return order


def zip_code_versions(zip_codes: pa.Array, ids: pa.Array, updated: pa.Array) -> dict[str, str | None]:
    """The version of every zip code of rows whose zip codes come together (each zip code's rows
    one after another, in any order within it)."""
    if not len(zip_codes):
        return {}
    zip_codes = zip_codes.combine_chunks() if isinstance(zip_codes, pa.ChunkedArray) else zip_codes
    changes = np.flatnonzero(pc.not_equal(zip_codes[1:], zip_codes[:-1]).to_numpy(zero_copy_only=False)) + 1
    starts = np.concatenate([[0], changes])
    names = zip_codes.take(pa.array(starts)).to_pylist()
    rows = np.diff(np.concatenate([starts, [len(zip_codes)]]))
    ids, micros, valid = _pairs(ids, updated)
    if not valid.all():
        bounds = np.concatenate([[0], np.cumsum(np.add.reduceat(valid.astype(np.int64), starts))])
        ids, micros = ids[valid], micros[valid]
    else:
        bounds = np.concatenate([starts, [len(ids)]])
    if _out_of_order(ids, micros):  # maybe only where one zip code ends and the next begins
        ids, micros = np.array(ids), np.array(micros)  # writable copies
        for begin, end in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            if _out_of_order(ids[begin:end], micros[begin:end]):
                order = begin + _in_order(ids[begin:end], micros[begin:end])
                ids[begin:end], micros[begin:end] = ids[order], micros[order]
    data, offsets = _text(ids, micros)
    return {
        name: f"{n}-{hashlib.md5(data[offsets[begin]:offsets[end] - 1]).hexdigest()}" if end > begin else None
        for name, n, begin, end in zip(names, rows.tolist(), bounds[:-1].tolist(), bounds[1:].tolist())
    }


class StreamedVersion:
    """The version of one zip code whose rows arrive in parts (a zip code larger than a chunk).

    Its (raw id, microseconds) pairs are kept, 16 bytes a row, and hashed at its end in raw id order
    (sorted first when they came out of that order, which a stable sort finds nearly done): the rows
    of a zip code come in the table's physical order, which is raw id order only until rows are
    updated."""

    def __init__(self):
        self.rows = 0
        self._parts: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, ids: pa.Array, updated: pa.Array) -> None:
        self.rows += len(ids)
        ids, micros, valid = _pairs(ids, updated)
        self._parts.append((ids[valid], micros[valid]) if not valid.all() else (np.array(ids), np.array(micros)))

    def version(self) -> str | None:
        ids = np.concatenate([p[0] for p in self._parts]) if self._parts else np.empty(0, np.int64)
        micros = np.concatenate([p[1] for p in self._parts]) if self._parts else np.empty(0, np.int64)
        self._parts = []
        if not len(ids):
            return None
        if _out_of_order(ids, micros):
            order = _in_order(ids, micros)
            ids, micros = ids[order], micros[order]
        md5 = hashlib.md5()
        for start in range(0, len(ids), _HASHED_AT_ONCE):
            data, offsets = _text(ids[start:start + _HASHED_AT_ONCE], micros[start:start + _HASHED_AT_ONCE])
            md5.update(data[offsets[0]:offsets[-1] - (1 if start + _HASHED_AT_ONCE >= len(ids) else 0)])
        return f"{self.rows}-{md5.hexdigest()}"
