"""The text primitives the cleaning rules are written with: Arrow string arrays in, Arrow arrays out,
each exactly what CPython does to the text, and fast.

A rule (`rules.py`) is written with these, `pyarrow.compute` (`pc`) and NumPy. Where Arrow's Unicode
handling differs from CPython's, these functions decide it, once for every rule:

- Case mappings are CPython's `str.upper()`, `str.lower()`, `str.title()` (full mappings: `ß`
  upper-cases to `SS`): `upper`, `lower`, `title` run Arrow's (utf8proc) on the values it maps the
  same way and CPython's on the few others (the tables of `unicode_tables`). A rule never calls
  `pc.utf8_upper`, `pc.utf8_lower`, `pc.utf8_title` or `pc.utf8_normalize`; for ASCII letters only,
  `pc.ascii_lower` and `pc.ascii_upper` are exact and fine.
- Regular expressions are RE2's (`pc.match_substring_regex`, `pc.replace_substring_regex`), run on
  normalised text: there `\\d` and `[0-9]` are the ASCII digits (the only digits a rule reads), and
  the only whitespace left is the space. RE2's `(?i)` (and `ignore_case=True`) folds case the Unicode
  way (`ſ` matches `s`, the Kelvin sign `K` matches `k`); no rule wants that, so rules lower-case the
  text first instead (`pc.ascii_lower`: ASCII letters only).
- Digits are ASCII digits (`ascii_digits`, `to_number`): other scripts' digits (`٤٥`) are not digits.

`zip_etl_tests/test_rules.py` keeps `rules.py` to these. Every function keeps NULL as NULL.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zip_etl.transform import text_kernels as kernels

_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # not \t \n \v \f \r: those are whitespace


def normalize(values: pa.Array) -> pa.Array:
    """Text as the rules read it: control characters removed (U+0000-U+0008, U+000E-U+001F, U+007F;
    the C1 controls are kept), then Unicode NFC, then every run of whitespace (what CPython's
    `str.isspace()` calls whitespace: tabs, newlines, NBSP, U+3000 ...) one space, the ends trimmed;
    empty becomes NULL."""
    found = kernels.normalize(values)
    if found is None:
        return values
    cleaned = found.cleaned
    if found.undecided.any():  # NFC by CPython where Arrow's may differ
        raw = values.filter(pa.array(found.dirty)).filter(pa.array(found.undecided)).to_pylist()
        cleaned = kernels.scatter(cleaned, found.undecided, pa.array([_normalize_one(v) for v in raw], pa.string()))
    return kernels.scatter(values, found.dirty, cleaned)


def _normalize_one(value: str) -> str | None:
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", _CONTROL.sub("", value))).strip() or None


def has_text(values: pa.Array) -> np.ndarray:
    """Per value (a NumPy bool array): not NULL and not only whitespace (CPython's `value.strip()`
    is not empty). A value of only control characters has text, though it normalises to NULL."""
    return ~kernels.whitespace_only(values)


def _cased(values: pa.Array, mapping, python) -> pa.Array:
    mapped, undecided = mapping(values)
    if not undecided.any():
        return mapped
    raw = values.filter(pa.array(undecided)).to_pylist()
    return kernels.scatter(mapped, undecided, pa.array([python(v) for v in raw], pa.string()))


def upper(values: pa.Array) -> pa.Array:
    """CPython's `str.upper()` (`ß` -> `SS`, `ﬁ` -> `FI`)."""
    return _cased(values, kernels.upper, str.upper)


def lower(values: pa.Array) -> pa.Array:
    """CPython's `str.lower()` (`İ` -> `i̇`, a final `Σ` -> `ς`)."""
    return _cased(values, kernels.lower, str.lower)


def title(values: pa.Array) -> pa.Array:
    """CPython's `str.title()`: each cased letter that follows an uncased character upper-cased (title
    case), the others lower-cased: `o'malley's` -> `O'Malley'S`, `1st` -> `1St`."""
    return _cased(values, kernels.title, str.title)


def ascii_digits(values: pa.Array) -> pa.Array:
    """The ASCII digits 0-9 of each value, in order, as text: `(212) 555-0123` -> `2125550123`,
    `ext` -> `` (empty)."""
    return kernels.ascii_digits(values)


def to_number(values: pa.Array, suffixes: dict[str, float] | None = None) -> pa.Array:
    """The number each value writes, as float64 (exactly as CPython's `float()` reads it), NULL where
    it writes none. A number is an optional sign, then ASCII digits with an optional decimal point
    (`12`, `-3.5`, `+.5`, `12.`) and nothing else: no spaces, no exponent (`4e3`), no `inf` or `nan`,
    no other scripts' digits. With `suffixes` ({suffix: multiplier}), a value may end with one of
    them (the longest it ends with) and is multiplied by it: with {"k": 1e3}, `2.5k` -> 2500.0."""
    numbers, multiplier = kernels.read_numbers(values, suffixes or {})
    if suffixes:
        numbers = pc.multiply(numbers, pa.array(multiplier))
    return numbers


def lookup(values: pa.Array, mapping: dict) -> pa.Array:
    """Each value's entry in `mapping` (compared exactly), NULL for values it does not hold."""
    keys, entries = pa.array(list(mapping)), pa.array(list(mapping.values()))
    return pc.take(entries, pc.index_in(values, value_set=keys))


def remove_characters(values: pa.Array, characters: str) -> pa.Array:
    """Every occurrence of each of `characters` removed: `remove_characters(v, ",_")` makes `1,000_000`
    `1000000`."""
    ascii_characters = "".join(c for c in characters if c.isascii())
    values = kernels.remove_bytes(values, ascii_characters.encode()) if ascii_characters else values
    for character in characters:
        if not character.isascii():
            values = pc.replace_substring(values, character, "")
    return values


def remove_prefix(values: pa.Array, prefix: str) -> pa.Array:
    """CPython's `str.removeprefix()`: `prefix` removed from the values that start with it."""
    return kernels.remove_affix(values, prefix, at_start=True)


def remove_suffix(values: pa.Array, suffix: str) -> pa.Array:
    """CPython's `str.removesuffix()`: `suffix` removed from the values that end with it."""
    return kernels.remove_affix(values, suffix, at_start=False)
