"""Where Arrow's Unicode handling differs from CPython's, per code point, and the character classes
the text primitives (`text.py`) need.

The cleaning rules read text as CPython does (`str.upper`, `str.title`, `unicodedata.normalize`,
`str.isspace`), whose Unicode database is `unicodedata.unidata_version`. The primitives run on Arrow,
whose case mappings and normalisation come from utf8proc: simple (one code point to one) case
mappings, and possibly another Unicode version. Rather than trusting that they agree,
`compute_tables()` asks both, code point by code point, and returns the sets where they do not; the
primitives map a value holding such a code point with CPython instead. The sets are frozen in
`_unicode_data.py` (regenerate with ``python -m zip_etl.transform.unicode_tables``); a test
recomputes them, so an upgrade of Python or pyarrow that changes any of them fails the test suite
instead of silently changing the output.

What is compared, for every code point `c` (surrogates excepted: Arrow strings cannot hold them):

- **NFC**: NFC and NFD of `c`, and of `c` next to combining marks of canonical class 1 and 240
  (which tells a class of 0 from any other). A code point that differs, and every code point of
  its decomposition in either library (they may compose differently), is *nfc-unstable*.
- **upper / lower**: `c.upper()`, `c.lower()`, and `("a" + c).lower()` (CPython lowers a final
  capital sigma by its context) against `utf8_upper` / `utf8_lower`.
- **title**: `str.title()` is a one-bit state machine (was the previous code point cased?); the
  output for `c` in both states and the state `c` leaves behind are compared through `c`,
  `"a" + c`, `c + "a"` and `"a" + c + "a"` against `utf8_title`.

Whitespace (`str.isspace`, which is also what `re`'s `\\s` and `str.strip()` use) needs no
comparison: it becomes an explicit character class for Arrow's regular expressions (RE2 reads `\\s`
as ASCII only).
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Iterable
from pathlib import Path

Ranges = tuple[tuple[int, int], ...]

_SURROGATES = range(0xD800, 0xE000)
_PROBE_LOW_CLASS = "\u0334"  # canonical combining class 1
_PROBE_HIGH_CLASS = "\u0345"  # canonical combining class 240


def _ranges(code_points: Iterable[int]) -> Ranges:
    out: list[list[int]] = []
    for cp in sorted(set(code_points)):
        if out and out[-1][1] == cp - 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return tuple((lo, hi) for lo, hi in out)


def _all_code_points() -> list[int]:
    return [cp for cp in range(sys.maxunicode + 1) if cp not in _SURROGATES]


def compute_tables() -> dict[str, Ranges]:
    """Every table `_unicode_data.py` freezes, computed from this Python and this pyarrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    code_points = _all_code_points()
    chars = [chr(cp) for cp in code_points]

    def differs(python: list[str], arrow) -> set[int]:
        arrow_values = arrow.to_pylist()
        return {cp for cp, p, a in zip(code_points, python, arrow_values) if p != a}

    def arrow_of(strings: list[str]):
        return pa.array(strings, type=pa.string())

    single = arrow_of(chars)
    after_a = arrow_of(["a" + c for c in chars])
    before_a = arrow_of([c + "a" for c in chars])
    between_a = arrow_of(["a" + c + "a" for c in chars])

    upper = differs([c.upper() for c in chars], pc.utf8_upper(single))
    lower = differs([c.lower() for c in chars], pc.utf8_lower(single))
    lower |= differs([("a" + c).lower() for c in chars], pc.utf8_lower(after_a))
    title = set()
    for strings, arrow in ((chars, single), (["a" + c for c in chars], after_a),
                           ([c + "a" for c in chars], before_a), (["a" + c + "a" for c in chars], between_a)):
        title |= differs([s.title() for s in strings], pc.utf8_title(arrow))

    nfc = set()
    for form in ("NFC", "NFD"):
        nfc |= differs([unicodedata.normalize(form, c) for c in chars], pc.utf8_normalize(single, form))
        for probe in (c + _PROBE_LOW_CLASS for c in chars), (_PROBE_HIGH_CLASS + c for c in chars):
            strings = list(probe)
            nfc |= differs([unicodedata.normalize(form, s) for s in strings], pc.utf8_normalize(arrow_of(strings), form))
    # A code point whose decomposition differs: its parts may compose in one library and not the
    # other. They compose only all together, so flagging one part is enough: the parts CPython does
    # not know (Arrow's newer Unicode), or all of them if it knows every one.
    unstable = sorted(nfc)
    arrow_parts = pc.utf8_normalize(arrow_of([chr(cp) for cp in unstable]), "NFD").to_pylist()
    for cp, arrow_nfd in zip(unstable, arrow_parts):
        for parts in (arrow_nfd, unicodedata.normalize("NFD", chr(cp))):
            parts = {ord(p) for p in parts} - {cp}
            unknown = {p for p in parts if unicodedata.category(chr(p)) == "Cn"}
            nfc.update(unknown or parts)

    whitespace = {cp for cp, c in zip(code_points, chars) if c.isspace()}
    return {
        "PY_WHITESPACE": _ranges(whitespace),
        "NFC_UNSTABLE": _ranges(nfc),
        "UPPER_UNSTABLE": _ranges(upper),
        "LOWER_UNSTABLE": _ranges(lower),
        "TITLE_UNSTABLE": _ranges(title),
    }


def render_module(tables: dict[str, Ranges]) -> str:
    import pyarrow as pa

    lines = [
        '"""Generated by `python -m zip_etl.transform.unicode_tables`; do not edit. See that module."""',
        "",
        f"PYTHON_UNICODE_VERSION = {unicodedata.unidata_version!r}",
        f"PYARROW_VERSION = {pa.__version__!r}",
        "",
    ]
    for name, ranges in tables.items():
        lines.append(f"{name} = (")
        row: list[str] = []
        for lo, hi in ranges:
            row.append(f"(0x{lo:X}, 0x{hi:X}),")
            if len(row) == 6:
                lines.append("    " + " ".join(row))
                row = []
        if row:
            lines.append("    " + " ".join(row))
        lines.append(")")
        lines.append("")
    return "\n".join(lines)


def without(ranges: Ranges, code_point: int) -> Ranges:
    out = []
    for lo, hi in ranges:
        if lo <= code_point <= hi:
            out += [r for r in ((lo, code_point - 1), (code_point + 1, hi)) if r[0] <= r[1]]
        else:
            out.append((lo, hi))
    return tuple(out)


DATA_MODULE = Path(__file__).with_name("_unicode_data.py")


def regex_class(*tables: Ranges, negate: bool = False) -> str:
    """An RE2 character class (UTF-8 mode) holding exactly the code points of `tables`."""
    merged: list[list[int]] = []
    for lo, hi in sorted(r for table in tables for r in table):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    cut = []  # RE2 reads UTF-8: surrogates are no code points it can match
    for lo, hi in merged:
        if lo < _SURROGATES.start and hi >= _SURROGATES.start:
            cut.append((lo, _SURROGATES.start - 1))
            lo = _SURROGATES.start
        if lo < _SURROGATES.stop and hi >= _SURROGATES.stop:
            lo = _SURROGATES.stop
        if lo in _SURROGATES:
            continue
        cut.append((lo, hi))
    merged = cut
    parts = []
    for lo, hi in merged:
        parts.append(f"\\x{{{lo:X}}}" if lo == hi else f"\\x{{{lo:X}}}-\\x{{{hi:X}}}")
    return ("[^" if negate else "[") + "".join(parts) + "]"


if __name__ == "__main__":
    DATA_MODULE.write_text(render_module(compute_tables()))
    print(f"wrote {DATA_MODULE}")
