"""Column kernels for the cleaning rules: Arrow string arrays worked on whole, with pyarrow.compute
and with NumPy on their UTF-8 bytes.

Every kernel here is exact to CPython's reading of the rules for the values it decides, and says
which values it cannot decide (an `undecided` mask): those hold a code point where Arrow's Unicode
handling differs from CPython's (`unicode_tables`), and the caller cleans them with the per-value
Python rule instead.

Byte-level work relies on UTF-8: an ASCII byte (< 0x80) is always a whole code point, so ASCII
digits, spaces and control characters can be found, counted and removed byte by byte, and a value
with no byte >= 0x80 is ASCII.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from zip_etl.transform import _unicode_data as tables
from zip_etl.transform.unicode_tables import regex_class, without

# Characters CPython's `\s` / `str.isspace()` / `str.strip()` read as whitespace (NBSP, U+3000 ...).
_WHITESPACE = regex_class(tables.PY_WHITESPACE)
_WHITESPACE_BUT_SPACE = regex_class(without(tables.PY_WHITESPACE, 0x20))
# A run of whitespace that is not already one plain space.
_WHITESPACE_RUN = f"{_WHITESPACE}{{2,}}|{_WHITESPACE_BUT_SPACE}"
_CONTROL_RUN = r"[\x00-\x08\x0e-\x1f\x7f]+"  # not \t \n \v \f \r: those are whitespace
_NFC_UNSTABLE = regex_class(tables.NFC_UNSTABLE)
_UPPER_UNSTABLE = regex_class(tables.UPPER_UNSTABLE)
_LOWER_UNSTABLE = regex_class(tables.LOWER_UNSTABLE)
_TITLE_UNSTABLE = regex_class(tables.TITLE_UNSTABLE)
_NONPRINTABLE = regex_class(tables.PY_NONPRINTABLE)

_CONTROL_BYTES = np.zeros(256, dtype=bool)
_CONTROL_BYTES[[*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F]] = True
# Controls that are not whitespace either: a value of only these is "present" but cleans to NULL.
_CONTROL_NOT_SPACE_BYTES = _CONTROL_BYTES.copy()
_CONTROL_NOT_SPACE_BYTES[0x1C:0x20] = False


def check_unicode_tables() -> None:
    """Refuse to run on a Python or pyarrow whose Unicode handling the frozen tables do not describe."""
    import unicodedata

    arrow_major = pa.__version__.split(".")[0]
    if unicodedata.unidata_version != tables.PYTHON_UNICODE_VERSION or arrow_major != tables.PYARROW_VERSION.split(".")[0]:
        raise RuntimeError(
            f"the cleaning rules' Unicode tables were computed with Python's Unicode "
            f"{tables.PYTHON_UNICODE_VERSION} and pyarrow {tables.PYARROW_VERSION}; this is Unicode "
            f"{unicodedata.unidata_version} and pyarrow {pa.__version__}: regenerate them "
            "(python -m zip_etl.transform.unicode_tables) and run the differential test"
        )


# --- arrays and their buffers ---


def text_array(values) -> pa.Array:
    """One contiguous Arrow string or large_string array from an array, chunked array or dictionary."""
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks == 1:
            values = values.chunk(0)
        elif values.num_chunks == 0:
            values = pa.array([], type=pa.string())
        else:
            try:
                values = values.combine_chunks()
            except pa.ArrowInvalid:  # over 2 GiB of text: 64-bit offsets
                values = values.cast(pa.large_string()).combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    if pa.types.is_large_string(values.type):
        b = text_bytes(values)
        if b.data.size <= np.iinfo(np.int32).max:  # one string type downstream while it fits
            values = values.cast(pa.string())
    return values


@dataclass
class Bytes:
    """The UTF-8 bytes of a string array: value i is data[starts[i]:ends[i]]."""

    data: np.ndarray  # uint8, from the first value's start to the last value's end
    starts: np.ndarray  # int64, relative to data
    ends: np.ndarray
    valid: np.ndarray  # bool

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    def row_any(self, byte_flags: np.ndarray) -> np.ndarray:
        """Per value: does any of its bytes have the flag (`byte_flags` aligned with `data`)?"""
        out = np.zeros(len(self.starts), dtype=bool)
        nonempty = self.ends > self.starts
        if byte_flags.size and nonempty.any():
            out[nonempty] = np.logical_or.reduceat(byte_flags, self.starts[nonempty])
        return out

    def row_count(self, byte_flags: np.ndarray) -> np.ndarray:
        out = np.zeros(len(self.starts), dtype=np.int64)
        nonempty = self.ends > self.starts
        if byte_flags.size and nonempty.any():
            out[nonempty] = np.add.reduceat(byte_flags.view(np.uint8), self.starts[nonempty], dtype=np.int64)
        return out

    def byte_at(self, position: np.ndarray | int, *, from_end: bool = False) -> np.ndarray:
        """Each value's byte at `position` (or `position` from its end), 0 where it has none."""
        index = (self.ends - 1 - position) if from_end else (self.starts + position)
        inside = (index >= self.starts) & (index < self.ends)
        if not self.data.size:
            return np.zeros(len(self.starts), dtype=np.uint8)
        return np.where(inside, self.data[np.clip(index, 0, self.data.size - 1)], 0).astype(np.uint8)

    def nonascii(self) -> np.ndarray:
        return self.row_any(self.data >= 0x80)


def valid_mask(values: pa.Array) -> np.ndarray:
    if values.null_count == 0:
        return np.ones(len(values), dtype=bool)
    return values.is_valid().to_numpy(zero_copy_only=False)


def text_bytes(values: pa.Array) -> Bytes:
    n = len(values)
    offsets_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
    buffers = values.buffers()
    if n == 0 or buffers[1] is None:
        empty = np.zeros(n, dtype=np.int64)
        return Bytes(np.zeros(0, dtype=np.uint8), empty, empty.copy(), valid_mask(values))
    offsets = np.frombuffer(buffers[1], dtype=offsets_type)[values.offset : values.offset + n + 1].astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, dtype=np.uint8)
    first = offsets[0]
    return Bytes(data[first : offsets[-1]], offsets[:-1] - first, offsets[1:] - first, valid_mask(values))


def from_bytes(lengths: np.ndarray, data: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """A string array from each value's byte length and all values' bytes, back to back."""
    n = len(lengths)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    large = offsets[-1] > np.iinfo(np.int32).max
    offsets = offsets if large else offsets.astype(np.int32)
    validity, null_count = None, 0
    if valid is not None and not valid.all():
        validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
        null_count = int(n - np.count_nonzero(valid))
    return pa.Array.from_buffers(
        pa.large_string() if large else pa.string(),
        n,
        [validity, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data, dtype=np.uint8))],
        null_count=null_count,
    )


def keep_bytes(source: Bytes, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, data) of every value with only its bytes flagged in `keep`."""
    lengths = source.row_count(keep)
    return lengths, source.data[keep]


def fixed_width(columns: list[np.ndarray], valid: np.ndarray) -> pa.Array:
    """A string array whose valid values are the bytes `columns[0][i], columns[1][i], ...`."""
    width = len(columns)
    matrix = np.stack(columns, axis=1)[valid] if len(valid) else np.zeros((0, width), dtype=np.uint8)
    return from_bytes(np.where(valid, width, 0), matrix.reshape(-1), valid)


def scatter(values: pa.Array, mask: np.ndarray, replacements: pa.Array) -> pa.Array:
    """`values` with the positions in `mask` taken, in order, from `replacements`."""
    if not mask.any():
        return values
    if mask.all():
        return replacements.cast(values.type)
    return pc.replace_with_mask(values, pa.array(mask), replacements.cast(values.type))


def matches(values: pa.Array, mask: np.ndarray, pattern: str) -> np.ndarray:
    """Per value: is it in `mask` and does `pattern` (RE2) match somewhere in it?"""
    out = np.zeros(len(values), dtype=bool)
    if mask.any():
        found = pc.match_substring_regex(values.filter(pa.array(mask)), pattern)
        out[mask] = found.fill_null(False).to_numpy(zero_copy_only=False)
    return out


# --- rule 0: text that is not UTF-8 ---


def invalid_utf8(values: pa.Array, nonascii: np.ndarray) -> np.ndarray:
    """Values that are not valid UTF-8 (only possible where a byte >= 0x80 is)."""
    bad = np.zeros(len(values), dtype=bool)
    if not nonascii.any():
        return bad
    subset = values.filter(pa.array(nonascii))
    try:
        subset.validate(full=True)
        return bad
    except pa.ArrowInvalid:
        pass
    # Rare (a SQL_ASCII source read without decoding): find the bad values one by one.
    binary = subset.cast(pa.binary()) if pa.types.is_string(subset.type) else subset.cast(pa.large_binary())
    flags = []
    for raw in binary.to_pylist():
        try:
            raw is None or raw.decode("utf-8")
            flags.append(False)
        except UnicodeDecodeError:
            flags.append(True)
    bad[nonascii] = flags
    return bad


# --- rule 1: text ---


@dataclass
class Normalized:
    values: pa.Array
    """Text with controls removed, NFC, whitespace collapsed, trimmed; NULL where empty."""
    undecided: np.ndarray
    """Values holding a code point whose NFC Arrow and CPython may disagree on."""
    present: np.ndarray
    """Values that are not NULL and not only whitespace (CPython's `value.strip() != ''`)."""


def normalize(values: pa.Array) -> Normalized:
    """`normalize_text` on every value: NFC, controls removed, whitespace collapsed and trimmed, ''
    to NULL. Values that are already clean (printable ASCII, single inner spaces, no space at
    either end) are kept as they are; only the others go through the regular expressions."""
    b = text_bytes(values)
    n = len(values)
    data = b.data
    special = (data < 0x20) | (data > 0x7E)
    if data.size > 1:
        special[:-1] |= (data[:-1] == 0x20) & (data[1:] == 0x20)
    dirty = b.row_any(special)
    dirty |= b.byte_at(0) == 0x20
    dirty |= b.byte_at(0, from_end=True) == 0x20
    dirty |= b.lengths == 0
    dirty &= b.valid
    has_control = b.row_any(_CONTROL_NOT_SPACE_BYTES[data]) if data.size else np.zeros(n, dtype=bool)
    undecided = np.zeros(n, dtype=bool)
    if not dirty.any():
        return Normalized(values, undecided, b.valid.copy())

    subset = values.filter(pa.array(dirty))
    nonascii_subset = text_bytes(subset).nonascii()
    if nonascii_subset.any():
        undecided[dirty] = matches(subset, nonascii_subset, _NFC_UNSTABLE)
    cleaned = pc.replace_substring_regex(subset, _CONTROL_RUN, "")
    if nonascii_subset.any():
        # NFC before whitespace, as CPython does; ASCII text is its own NFC.
        mask = pa.array(nonascii_subset)
        cleaned = pc.replace_with_mask(cleaned, mask, pc.utf8_normalize(cleaned.filter(mask), "NFC"))
    cleaned = pc.replace_substring_regex(cleaned, _WHITESPACE_RUN, " ")
    cleaned = pc.utf8_trim(cleaned, " ")
    cleaned = pc.if_else(pc.equal(cleaned, ""), pa.scalar(None, cleaned.type), cleaned)
    out = scatter(values, dirty, cleaned)
    present = valid_mask(out) | (b.valid & has_control)
    return Normalized(out, undecided, present)


# --- case mappings ---


def _case_map(values: pa.Array, function, unstable: str) -> tuple[pa.Array, np.ndarray]:
    nonascii = text_bytes(values).nonascii()
    return function(values), matches(values, nonascii, unstable)


def upper(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """`str.upper()`, and the values it cannot decide (ß -> SS and other full mappings)."""
    return _case_map(values, pc.utf8_upper, _UPPER_UNSTABLE)


def lower(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    return _case_map(values, pc.utf8_lower, _LOWER_UNSTABLE)


def title(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """`str.title()`: the first cased letter after an uncased character upper-cased, the rest lower."""
    return _case_map(values, pc.utf8_title, _TITLE_UNSTABLE)


# --- repr, for the details shown to a person ---


def python_repr(values: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """`repr(value)` of every (non-NULL) value; undecided where a non-ASCII character is one repr
    escapes (not printable to CPython)."""
    b = text_bytes(values)
    undecided = matches(values, b.nonascii(), _NONPRINTABLE)
    has_single = b.row_any(b.data == ord("'"))
    has_double = b.row_any(b.data == ord('"'))
    double_quoted = has_single & ~has_double
    text = pc.replace_substring(values, "\\", "\\\\")
    if (has_single & ~double_quoted).any():
        single = pa.array(has_single & ~double_quoted)
        text = pc.replace_with_mask(text, single, pc.replace_substring(text.filter(single), "'", "\\'"))
    controls = np.unique(b.data[_CONTROL_BYTES[b.data] | ((b.data >= 0x09) & (b.data <= 0x0D))]) if b.data.size else []
    for code in controls.tolist() if len(controls) else []:
        escaped = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}.get(code, f"\\x{code:02x}")
        text = pc.replace_substring(text, chr(code), escaped)
    quote = pc.if_else(pa.array(double_quoted), '"', "'")
    return pc.binary_join_element_wise(quote, text, quote, ""), undecided


# --- distinct values, cheaply bounded ---

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX_1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX_2
    return x ^ (x >> np.uint64(31))


def fingerprints(values: pa.Array) -> np.ndarray:
    """A 64-bit number per value from its length and its first and last eight bytes: equal values
    have equal fingerprints (NULL has its own), so there are at most as many fingerprints as values."""
    b = text_bytes(values)
    n = len(values)
    lengths = b.lengths
    padded = np.zeros(b.data.size + 16, dtype=np.uint8)
    padded[8 : 8 + b.data.size] = b.data
    # Every 8-byte window of the bytes, one per start byte (unaligned reads).
    windows = np.ndarray(shape=(b.data.size + 9,), dtype="<u8", buffer=padded, strides=(1,))
    short = np.minimum(lengths, 8).astype(np.uint64)
    keep = np.where(short == 8, np.uint64(0xFFFFFFFFFFFFFFFF), (np.uint64(1) << (short * np.uint64(8))) - np.uint64(1))
    head = windows[b.starts + 8] & keep
    tail = windows[np.maximum(b.ends, b.starts + 8)]  # the last 8 bytes (window ending at `ends`)
    tail = np.where(lengths > 8, tail, 0).astype(np.uint64)
    with np.errstate(over="ignore"):
        out = _mix(_mix(lengths.astype(np.uint64) ^ head) ^ tail)
    out[~b.valid] = 0
    return out if n else np.zeros(0, dtype=np.uint64)


def distinct_at_least(values: pa.Array) -> int:
    """A lower bound of the number of distinct non-NULL values (exact for values up to 16 bytes,
    unless two fingerprints collide)."""
    prints = fingerprints(values)
    valid = valid_mask(values)
    return len(pd.unique(prints[valid]))
