"""Byte-level kernels behind the text primitives (`text.py`): Arrow string arrays worked on whole,
with pyarrow.compute and with NumPy on their UTF-8 bytes. No rule lives here: these know text, not
companies.

Byte-level work relies on UTF-8: an ASCII byte (< 0x80) is always a whole code point, so ASCII
digits, spaces and control characters can be found, counted and removed byte by byte, and a value
with no byte >= 0x80 is ASCII.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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

_WHITESPACE_ONLY = f"^{_WHITESPACE}*$"

_PY_WHITESPACE_OR_NONASCII_BYTES = np.zeros(256, dtype=bool)
_PY_WHITESPACE_OR_NONASCII_BYTES[[*range(0x09, 0x0E), *range(0x1C, 0x21), *range(0x80, 0x100)]] = True
_CONTROL_BYTES = np.zeros(256, dtype=bool)
_CONTROL_BYTES[[*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F]] = True


def check_unicode_tables() -> None:
    """Refuse to run on a Python or pyarrow whose Unicode handling the frozen tables do not describe."""
    import unicodedata

    arrow_major = pa.__version__.split(".")[0]
    if unicodedata.unidata_version != tables.PYTHON_UNICODE_VERSION or arrow_major != tables.PYARROW_VERSION.split(".")[0]:
        raise RuntimeError(
            f"the cleaning rules' Unicode tables were computed with Python's Unicode "
            f"{tables.PYTHON_UNICODE_VERSION} and pyarrow {tables.PYARROW_VERSION}; this is Unicode "
            f"{unicodedata.unidata_version} and pyarrow {pa.__version__}: regenerate them "
            "(python -m zip_etl.transform.unicode_tables) and run the transform's tests"
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

    def count_in(self, byte_flags: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> np.ndarray:
        """Per value: how many of its bytes in [lo, hi) (default: all of them) have the flag."""
        lo = self.starts if lo is None else lo
        hi = self.ends if hi is None else hi
        return count_in_ranges(byte_flags, lo, hi)

    def row_any(self, byte_flags: np.ndarray) -> np.ndarray:
        """Per value: does any of its bytes have the flag (`byte_flags` aligned with `data`)?"""
        n = len(self.starts)
        if not byte_flags.any():
            return np.zeros(n, dtype=bool)
        if np.count_nonzero(byte_flags) * 4 < n:  # few: find the values holding them
            out = np.zeros(n, dtype=bool)
            out[np.searchsorted(self.ends, np.flatnonzero(byte_flags), side="right")] = True
            return out
        return any_in_ranges(byte_flags, self.starts, self.ends)

    def at(self, positions: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> np.ndarray:
        """The byte at each value's absolute position in `data`, 0 where that is outside [lo, hi)."""
        lo = self.starts if lo is None else lo
        hi = self.ends if hi is None else hi
        if not self.data.size:
            return np.zeros(len(positions), dtype=np.uint8)
        inside = (positions >= lo) & (positions < hi)
        return self.data.take(positions, mode="clip") * inside

    def nonascii(self) -> np.ndarray:
        return self.row_any(self.data >= 0x80)


_LONG = 56  # bits a 64-bit window holds after a shift of up to 7
_LOW_BITS = np.array([(1 << i) - 1 for i in range(_LONG + 1)], dtype=np.uint64)


def _popcount(words: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    table = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)
    return table[words.view(np.uint8).reshape(-1, 8)].sum(axis=1, dtype=np.uint8)


def _ranges_bits(flags: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """The flags of each range [lo, hi) up to 56 long as the low bits of a uint64 (flags packed
    8 to a byte, one unaligned 64-bit read per range), and which ranges are longer."""
    bits = np.packbits(flags, bitorder="little")
    padded = np.zeros(bits.size + 8, dtype=np.uint8)
    padded[: bits.size] = bits
    windows = np.ndarray(shape=(bits.size + 1,), dtype="<u8", buffer=padded, strides=(1,))
    span = hi - lo
    long = span > _LONG
    words = windows[lo >> 3] >> (lo & 7).astype(np.uint64)  # fancy indexing: take() is slow unaligned
    return words & _LOW_BITS.take(span, mode="clip"), long


def _long_ranges(flags: np.ndarray, lo: np.ndarray, hi: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Flags set in the ranges of `rows` (long ones): their flags back to back, summed per range."""
    lengths = hi[rows] - lo[rows]
    ends = np.cumsum(lengths)
    index = np.arange(ends[-1], dtype=np.int64) + np.repeat(lo[rows] - (ends - lengths), lengths)
    totals = np.concatenate([[0], np.cumsum(flags[index], dtype=np.int64)])
    return totals[ends] - totals[ends - lengths]


def count_in_ranges(flags: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """For each range [lo[i], hi[i]) of `flags` (lo <= hi), how many are set."""
    if not len(lo) or not flags.any():
        return np.zeros(len(lo), dtype=np.int64)
    words, long = _ranges_bits(flags, lo, hi)
    out = _popcount(words).astype(np.int64)
    if long.any():
        rows = np.flatnonzero(long)
        out[rows] = _long_ranges(flags, lo, hi, rows)
    return out


def any_in_ranges(flags: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    if not len(lo) or not flags.any():
        return np.zeros(len(lo), dtype=bool)
    words, long = _ranges_bits(flags, lo, hi)
    out = words != 0
    if long.any():
        rows = np.flatnonzero(long)
        out[rows] = _long_ranges(flags, lo, hi, rows) > 0
    return out


def valid_mask(values: pa.Array) -> np.ndarray:
    if values.null_count == 0:
        return np.ones(len(values), dtype=bool)
    bitmap = values.buffers()[0]
    if bitmap is None:  # e.g. a null-typed array
        return values.is_valid().to_numpy(zero_copy_only=False)
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return bits[values.offset : values.offset + len(values)].astype(bool)


def text_bytes(values: pa.Array) -> Bytes:
    n = len(values)
    offsets_type = np.int64 if pa.types.is_large_string(values.type) else np.int32
    buffers = values.buffers()
    if n == 0 or buffers[1] is None:
        empty = np.zeros(n, dtype=np.int64)
        return Bytes(np.zeros(0, dtype=np.uint8), empty, empty.copy(), valid_mask(values))
    # Offsets stay in their own width (no copy): positions in the bytes fit in it.
    offsets = np.frombuffer(buffers[1], dtype=offsets_type)[values.offset : values.offset + n + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, dtype=np.uint8)
    first = offsets[0]
    if first:
        offsets = offsets - first
    return Bytes(data[first : first + offsets[-1]], offsets[:-1], offsets[1:], valid_mask(values))


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


def scatter(values: pa.Array, mask: np.ndarray, replacements: pa.Array) -> pa.Array:
    """`values` with the positions in `mask` taken, in order, from `replacements`."""
    if not mask.any():
        return values
    replacements = replacements.cast(values.type)
    if mask.all():
        return replacements
    n = len(values)
    index = np.arange(n, dtype=np.int64)
    index[mask] = n + np.arange(len(replacements), dtype=np.int64)
    return pa.concat_arrays([values, replacements]).take(pa.array(index))


def matches(values: pa.Array, mask: np.ndarray, pattern: str) -> np.ndarray:
    """Per value: is it in `mask` and does `pattern` (RE2) match somewhere in it?"""
    out = np.zeros(len(values), dtype=bool)
    if mask.any():
        found = pc.match_substring_regex(values.filter(pa.array(mask)), pattern)
        out[mask] = found.fill_null(False).to_numpy(zero_copy_only=False)
    return out


# --- text that is not UTF-8 ---


def invalid_utf8(values: pa.Array, nonascii: np.ndarray) -> np.ndarray:
    """Values that are not valid UTF-8 (only possible where a byte >= 0x80 is)."""
    bad = np.zeros(len(values), dtype=bool)
    if not nonascii.any():
        return bad
    try:
        values.validate(full=True)
        return bad
    except pa.ArrowInvalid:
        pass
    subset = values.filter(pa.array(nonascii))
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


# --- normalising text ---


@dataclass
class Normalized:
    """The values that were not clean as they came (`dirty`) and their normalised text (`cleaned`,
    in order), with those of them holding a code point whose NFC Arrow and CPython may disagree on
    (`undecided`, aligned with `cleaned`)."""

    dirty: np.ndarray
    cleaned: pa.Array
    undecided: np.ndarray


def normalize(values: pa.Array) -> Normalized | None:
    """Controls removed, NFC, whitespace collapsed and trimmed, '' to NULL, for the values that need
    it; None when every value is clean already (printable ASCII, single inner spaces, no space at
    either end). Only the others go through the regular expressions."""
    b = text_bytes(values)
    data = b.data
    if data.size:
        special = (data - np.uint8(0x20)) > 0x5E  # below 0x20 or above 0x7E (uint8 wraps)
        space = data == 0x20
        special[:-1] |= space[:-1] & space[1:]  # a double space
        dirty = b.row_any(special)
        dirty |= space.take(b.starts, mode="clip") & (b.ends > b.starts)
        dirty |= space.take(b.ends - 1, mode="clip") & (b.ends > b.starts)
        found = data[np.flatnonzero(special)]
        any_control = bool(_CONTROL_BYTES[found].any())
        # Whitespace runs to collapse: ASCII whitespace but the space, maybe Unicode whitespace,
        # double spaces, and spaces that meet once the controls between them are gone.
        needs_runs = any_control or bool((found >= 0x80).any() or ((found >= 0x09) & (found <= 0x0D)).any()
                                         or (space[:-1] & space[1:]).any())
    else:
        dirty = np.zeros(len(values), dtype=bool)
        any_control = needs_runs = False
    dirty |= b.lengths == 0
    dirty &= b.valid
    if not dirty.any():
        return None

    subset = values.filter(pa.array(dirty))
    nonascii = text_bytes(subset).nonascii()
    cleaned = subset
    undecided = np.zeros(len(subset), dtype=bool)
    if any_control:
        cleaned = pc.replace_substring_regex(cleaned, _CONTROL_RUN, "")
    if nonascii.any():
        undecided = matches(subset, nonascii, _NFC_UNSTABLE)
        # NFC before whitespace, as CPython does; ASCII text is its own NFC.
        mask = pa.array(nonascii)
        cleaned = pc.replace_with_mask(cleaned, mask, pc.utf8_normalize(cleaned.filter(mask), "NFC"))
    if needs_runs:
        cleaned = pc.replace_substring_regex(cleaned, _WHITESPACE_RUN, " ")
    cleaned = pc.utf8_trim(cleaned, " ")
    cleaned = pc.if_else(pc.equal(cleaned, ""), pa.scalar(None, cleaned.type), cleaned)
    return Normalized(dirty, cleaned, undecided)


def whitespace_only(values: pa.Array) -> np.ndarray:
    """Per value: NULL, or only whitespace as CPython reads it (`value.strip() == ''`)."""
    b = text_bytes(values)
    first = b.at(b.starts)
    out = ~b.valid.copy()
    # Most values start with an ASCII character that is no whitespace; the others are looked at whole.
    look = np.flatnonzero(b.valid & ((b.lengths == 0) | _PY_WHITESPACE_OR_NONASCII_BYTES[first]))
    if not look.size:
        return out
    subset = values.take(pa.array(look))
    sb = text_bytes(subset)
    other = sb.row_any(~_PY_WHITESPACE_OR_NONASCII_BYTES[sb.data])  # an ASCII byte that is no whitespace
    maybe = ~other & sb.nonascii()
    only = ~other
    if maybe.any():
        only[maybe] = matches(subset, maybe, _WHITESPACE_ONLY)[maybe]
    out[look] = only
    return out


def remove_bytes(values: pa.Array, characters: bytes) -> pa.Array:
    """Each of the ASCII `characters` removed from every value."""
    b = text_bytes(values)
    table = np.zeros(256, dtype=bool)
    table[list(characters)] = True
    drop = table[b.data]
    if not drop.any():
        return values
    return from_bytes(b.lengths - b.count_in(drop), b.data[~drop], b.valid)


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


# --- digits and numbers ---


def ascii_digits(values: pa.Array) -> pa.Array:
    """The ASCII digits of each value, in order, as text; NULL stays NULL."""
    b = text_bytes(values)
    digit = (b.data - np.uint8(0x30)) < 10
    return from_bytes(np.where(b.valid, b.count_in(digit), 0), b.data[digit], b.valid)


def remove_affix(values: pa.Array, affix: str, *, at_start: bool) -> pa.Array:
    """`affix` removed from the start (or end) of the values that start (end) with it. Comparing
    UTF-8 bytes is comparing code points: no code point's bytes end or start inside another's."""
    word = affix.encode()
    b = text_bytes(values)
    at = b.starts if at_start else b.ends - len(word)
    hit = b.valid & (b.lengths >= len(word))
    for offset, byte in enumerate(word):
        hit &= b.at(at + offset) == byte
    if not word or not hit.any():
        return values
    keep = np.ones(b.data.size, dtype=bool)
    keep[(at[hit][:, None] + np.arange(len(word))).ravel()] = False
    return from_bytes(b.lengths - len(word) * hit, b.data[keep], b.valid)


def read_numbers(values: pa.Array, suffixes: dict[str, float]) -> tuple[pa.Array, np.ndarray]:
    """(the number each value writes, float64 as CPython's float() reads it, NULL where it writes
    none; the multiplier of the suffix it ends with, 1 where none). A number is an optional sign,
    then ASCII digits with an optional decimal point (`12`, `-3.5`, `.5`, `12.`), then optionally
    one of `suffixes` (the longest it ends with), and nothing else."""
    b = text_bytes(values)
    n = len(values)
    start, end = b.starts.astype(np.int64), b.ends.astype(np.int64)
    multiplier = np.ones(n, dtype=np.float64)
    suffixed = np.zeros(n, dtype=bool)
    words = sorted(((word.encode(), factor) for word, factor in suffixes.items() if word), key=lambda w: -len(w[0]))
    if words:  # the values whose last byte ends a suffix, then each suffix, the longest first
        rows = np.flatnonzero(np.isin(b.at(end - 1), [word[-1] for word, _ in words]))
        lo, hi = start[rows], end[rows]
        found = np.zeros(len(rows), dtype=bool)
        for word, factor in words:
            ends = ~found & (hi - lo >= len(word))
            for k, byte in enumerate(reversed(word), 1):
                ends &= b.at(hi - k, lo, hi) == byte
            multiplier[rows[ends]] = factor
            found |= ends
            hi[ends] -= len(word)
        suffixed[rows] = found
        end[rows] = hi
    first = b.at(start, start, end)
    body = start + ((first == ord("+")) | (first == ord("-")))
    digits = b.count_in((b.data - np.uint8(0x30)) < 10, body, end)
    dots = b.count_in(b.data == ord("."), body, end)
    ok = b.valid & (digits >= 1) & (dots <= 1) & (digits + dots == end - body)
    # The values without a suffix are read as they are (the others masked out, no copy); those with
    # one from their bytes up to it.
    plain = ok & ~suffixed
    numbers = _with_validity(values, plain).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False, writable=True)
    cut = ok & suffixed
    if cut.any():
        rows = np.flatnonzero(cut)
        lengths = end[rows] - start[rows]
        index = np.repeat(start[rows] - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
        numbers[rows] = pc.cast(from_bytes(lengths, b.data[index]), pa.float64()).to_numpy(zero_copy_only=False)
    return pa.array(numbers, mask=~ok), multiplier


def _with_validity(values: pa.Array, valid: np.ndarray) -> pa.Array:
    """`values` with NULL wherever `valid` is false (the same buffers, a new validity bitmap)."""
    buffers = values.buffers()
    if values.offset:
        values = values.take(pa.array(np.arange(len(values))))  # rare: a slice, made whole
        buffers = values.buffers()
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(values.type, len(values), [bitmap, *buffers[1:]], null_count=int(len(valid) - valid.sum()))


# --- distinct values, cheaply bounded ---

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def mix(x: np.ndarray) -> np.ndarray:
    """A 64-bit mixing function (splitmix64's finaliser)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _MIX_1
    x = x ^ (x >> np.uint64(27))
    x = x * _MIX_2
    return x ^ (x >> np.uint64(31))


_BYTE_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_K1, _K2, _K3 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def fingerprints(values: pa.Array) -> np.ndarray:
    """A 64-bit number per value from its length and its first and last eight bytes: equal values
    have equal fingerprints (NULL has its own), so there are at most as many fingerprints as values."""
    b = text_bytes(values)
    n = len(values)
    if not n:
        return np.zeros(0, dtype=np.uint64)
    lengths = b.lengths
    padded = np.zeros(b.data.size + 8, dtype=np.uint8)
    padded[: b.data.size] = b.data
    # Every 8-byte window of the bytes, one per start byte (unaligned reads, by fancy indexing).
    windows = np.ndarray(shape=(b.data.size + 1,), dtype="<u8", buffer=padded, strides=(1,))
    head = windows[b.starts] & _BYTE_MASKS.take(lengths, mode="clip")
    tail = windows[np.maximum(b.ends - 8, b.starts)] * (lengths > 8)  # the last eight bytes
    with np.errstate(over="ignore"):
        out = (head ^ (lengths.astype(np.uint64) * _K3)) * _K1
        out ^= out >> np.uint64(32)
        out ^= tail
        out *= _K2
        out ^= out >> np.uint64(29)
    out[~b.valid] = 0
    return out


def _distinct_buckets(hashes: np.ndarray) -> int:
    """How many buckets (of about 4 per hash) the hashes fall in: at most the distinct hashes."""
    bits = max(10, (4 * hashes.size).bit_length())
    seen = np.zeros(1 << bits, dtype=bool)
    with np.errstate(over="ignore"):  # the bucket: the top bits of a multiplicative hash
        seen[((hashes * _K1) >> np.uint64(64 - bits)).astype(np.int64)] = True
    return int(np.count_nonzero(seen))


def distinct_at_least(values: pa.Array) -> int:
    """A lower bound of the number of distinct non-NULL values, cheap: equal values share a
    fingerprint and a bucket, so distinct values are at least the buckets used."""
    return _distinct_buckets(fingerprints(values)[valid_mask(values)])
