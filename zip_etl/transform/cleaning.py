"""The cleaning rules for raw company records: pandas on Arrow, no Dagster, no SQL.

Change this module to change what "clean" means; its tests need no database. Each rule is
written twice: once per value (`normalize_text`, `parse_phone`, ...: the rule as CPython reads it,
easy to check by eye) and once vectorised over whole columns (`normalize_texts`, `parse_phones`,
...: what runs). The vectorised rules leave to the per-value ones the few values they cannot
decide exactly (text holding a character whose Unicode handling differs between Arrow and
CPython, see `unicode_tables`), and say how many (`CleaningResult.fallback_rows`). A rule changed
in one place must be changed in the other; `zip_etl_tests/test_transform_differential.py` compares
the vectorised rules with the per-value ones as first written (`zip_etl_tests/reference_cleaning.py`),
so a change of what "clean" means updates that copy too.

Input: one or many zip codes' raw rows (`RAW_COLUMNS`, text as upstream sent it: object, pandas
`string[pyarrow]` or `pd.ArrowDtype` strings). Output: the cleaned rows (`CLEANED_COLUMNS`, typed,
downcast, Arrow-backed) and the rejected rows with the reason, so that for every zip code
``rows in = rows out + rows rejected``.

Rules, in order:

0. **Encoding**: a row with any text that is not valid UTF-8 (possible when the raw database is
   SQL_ASCII) is rejected (`invalid_encoding`); the quarantine shows the bytes as `\\xNN`. Such
   bytes come as lone surrogates U+DC80-U+DCFF (read with "surrogateescape") or as invalid UTF-8
   in an Arrow column; other lone surrogates cannot come from a database read and are refused
   with an error naming the column and row.
1. **Text** (name, address, city, industry, record id): control characters removed (U+0000-U+0008,
   U+000E-U+001F, U+007F; NUL included, which PostgreSQL cannot store; other characters, e.g. the
   C1 controls, are kept); then Unicode NFC; then every run of whitespace (what Python's
   `str.isspace()` calls whitespace: spaces, tabs, newlines, carriage returns, and also NBSP,
   U+0085, U+2000-U+200A, U+3000 ...) becomes one space; ends trimmed; empty becomes NULL. The
   literal text `\\N`, backslashes and quotes are ordinary text and kept.
   City is title-cased (as Python's `str.title()`: `o'malley's` -> `O'Malley'S`), state
   upper-cased and, without dots, must be a USPS code (or a full state name, mapped to its code),
   else NULL. Industry is mapped to a canonical label (its lower-cased text), else title-cased.
   Record ids are upper-cased. Case mappings are Python's (full mappings: `ß` upper-cases to `SS`).
2. **Required values**: a row with no record id (`missing_record_id`) or no company name
   (`missing_company_name`) is rejected, and so is a record id over 200 characters
   (`record_id_too_long`: it is half of the table's key, and no real id is that long).
3. **Postal code vs partition**: the address's postal code may be `12345`, `12345-6789`,
   `12345 6789`, `123456789`, or a code that lost its leading zeros (`501` -> `00501`). Its 5-digit
   part must equal the row's partition zip code, else `zip_mismatch`; a value that is no zip code
   at all is `invalid_postal_code`. No postal code: the partition's zip code stands. The +4 part is
   kept as `zip4`: text of exactly four digits, leading zeros kept (`0332`), like the zip code.
4. **Phones**: an extension at the end (`x12`, `ext. 12`, `extension 12`, any case) dropped, then
   digits only, a leading country code 1 dropped; a valid NANP number (10 digits, area code and
   exchange not starting with 0 or 1) becomes E.164 `+1NXXNXXXXXX`; anything else becomes NULL
   (counted, not rejected).
5. **Numbers**: one grammar for every number column: after lower-casing and dropping `,`, `_` and
   spaces, an optional sign, digits with an optional decimal part (`1,200`, ` 45 `, `12.0`, `.5`,
   `12.`); no exponent (`4.2e3` is not a number here). `N/A`, `unknown`, `-`, empty become NULL.
   Employees: a whole number 0..2,147,483,647. Revenue: dollars, an optional leading `$`, a
   `K`/`M`/`MM`/`B`/`BN` suffix and a trailing `USD`; the number as a binary float (as Python's
   `float()` reads it) times the suffix, rounded to whole dollars (halves to even), 0..2**62.
   Founded year: 1800..this year. Out-of-range or unparseable values become NULL (counted, not
   rejected: a value counts when it is present, i.e. not NULL and not only whitespace).
   Digits are the ASCII digits 0-9 wherever a rule reads digits (postal codes, phones, numbers):
   other scripts' digits (`٤٥`) are not read as numbers.
6. **Duplicates**: rows with the same zip code and record id are one company; the most recently
   updated row is kept (compared to the microsecond; ties: the lowest raw id), the others are
   rejected as `duplicate`, their detail naming the raw id kept.
7. **Downcast**: integer columns take the smallest integer type that holds their values (Arrow
   integers); text columns with few distinct values (at most half the rows) become dictionary
   encoded (Arrow dictionaries, pandas' categoricals in Arrow form).
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from zip_etl.tables import CLEANED_COMPANIES, RAW_COMPANIES
from zip_etl.transform import text_kernels as kernels

# The columns come from the tables' declarations (zip_etl/tables.py), the one place they are declared.
RAW_COLUMNS = RAW_COMPANIES.column_names
CLEANED_COLUMNS = CLEANED_COMPANIES.column_names

REJECTION_REASONS = [
    "invalid_encoding",
    "missing_record_id",
    "record_id_too_long",
    "missing_company_name",
    "invalid_postal_code",
    "zip_mismatch",
    "duplicate",
]

INT32_MAX = 2_147_483_647
INT64_MAX = 9_223_372_036_854_775_807
MIN_FOUNDED_YEAR = 1800
MAX_RECORD_ID_LENGTH = 200

US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
    "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
    "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
    "PR": "Puerto Rico", "VI": "Virgin Islands", "GU": "Guam", "AS": "American Samoa",
    "MP": "Northern Mariana Islands", "FM": "Federated States of Micronesia",
    "MH": "Marshall Islands", "PW": "Palau", "AA": "Armed Forces Americas",
    "AE": "Armed Forces Europe", "AP": "Armed Forces Pacific",
}
_STATE_BY_NAME = {name.upper(): code for code, name in US_STATES.items()}

INDUSTRIES = {
    "retail": "Retail",
    "restaurant": "Restaurants",
    "restaurants": "Restaurants",
    "food service": "Restaurants",
    "construction": "Construction",
    "healthcare": "Healthcare",
    "health care": "Healthcare",
    "technology": "Technology",
    "tech": "Technology",
    "software": "Technology",
    "professional services": "Professional Services",
    "manufacturing": "Manufacturing",
    "real estate": "Real Estate",
    "finance": "Finance",
    "financial services": "Finance",
    "education": "Education",
    "transportation": "Transportation",
    "logistics": "Transportation",
}

_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")  # not \t \n \v \f \r: those are whitespace
_SURROGATE = re.compile("[\udc80-\udcff]")
_NUMBER_NULLS = {"", "n/a", "na", "none", "null", "unknown", "-", "--", "?", "nan"}
# Digits are ASCII (re.ASCII): `\d` would also match other scripts' digits, which float() reads.
_POSTAL = re.compile(r"^(\d{5})(?:[- ]?(\d{4}))?$", re.ASCII)
_SHORT_POSTAL = re.compile(r"^\d{3,4}$", re.ASCII)
_EXTENSION = re.compile(r"(?i) ?(?:x|ext\.?|extension) ?\d+$", re.ASCII)
_NON_DIGITS = re.compile(r"[^0-9]")
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"
_WHOLE_NUMBER = re.compile(rf"^{_NUMBER}$", re.ASCII)
_REVENUE_SUFFIX = {"k": 1e3, "m": 1e6, "mm": 1e6, "b": 1e9, "bn": 1e9}
_REVENUE = re.compile(rf"^\$?({_NUMBER})(k|m|mm|b|bn)?$", re.ASCII)
MAX_REVENUE = 2**62


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
    fallback_rows: int = 0
    """Rows that had at least one value cleaned by the per-value Python rules rather than the
    vectorised ones (text the vectorised rules cannot decide exactly, see `text_kernels`)."""
    fallback_values: dict[str, int] = field(default_factory=dict)
    """Those values, per raw column."""

    def __post_init__(self) -> None:
        if self.duplicate_kept_raw_id is None:
            self.duplicate_kept_raw_id = pd.Series(
                pd.array([None] * len(self.rejected), dtype=pd.ArrowDtype(pa.int64())),
                index=self.rejected.index,
                name="duplicate_kept_raw_id",
            )


# --- per-value rules: each rule on one Python value, as CPython reads it. They are the rules'
# --- reference reading; the vectorised rules below agree with them on every value they decide and
# --- leave the rest (`undecided`) to them ---


def normalize_text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    if value.isascii() and value.isprintable() and "  " not in value and value[:1] != " " and value[-1:] != " ":
        return value or None  # already clean: the common case, no regex needed
    text = _WHITESPACE.sub(" ", unicodedata.normalize("NFC", _CONTROL.sub("", value))).strip()
    return text or None


def has_invalid_encoding(value: object) -> bool:
    """Text holding bytes that were not UTF-8 (read with "surrogateescape")."""
    return isinstance(value, str) and not value.isascii() and _SURROGATE.search(value) is not None


def normalize_state(value: object) -> str | None:
    text = normalize_text(value)
    if text is None:
        return None
    text = text.upper().replace(".", "")
    if text in US_STATES:
        return text
    return _STATE_BY_NAME.get(text)


def normalize_industry(value: object) -> str | None:
    text = normalize_text(value)
    if text is None:
        return None
    return INDUSTRIES.get(text.lower(), text.title())


def parse_postal_code(value: object) -> tuple[str | None, str | None, bool]:
    """(zip5, zip4, valid). A missing value is valid with no zip5: the partition's code stands."""
    text = normalize_text(value)
    if text is None:
        return None, None, True
    match = _POSTAL.match(text)
    if match:
        return match.group(1), match.group(2), True
    if _SHORT_POSTAL.match(text):
        return text.zfill(5), None, True
    return None, None, False


def parse_phone(value: object) -> str | None:
    text = normalize_text(value)
    if text is None:
        return None
    digits = _NON_DIGITS.sub("", _EXTENSION.sub("", text))
    if len(digits) == 11 and digits[0] == "1":
        digits = digits[1:]
    if len(digits) != 10 or digits[0] in "01" or digits[3] in "01":
        return None
    return "+1" + digits


def _number_text(value: object) -> str | None:
    text = normalize_text(value)
    if text is None:
        return None
    text = text.lower().replace(",", "").replace("_", "").replace(" ", "")
    return None if text in _NUMBER_NULLS else text


def parse_whole_number(value: object, low: int, high: int) -> int | None:
    text = _number_text(value)
    if text is None or not _WHOLE_NUMBER.match(text):
        return None
    number = float(text)
    if not number.is_integer() or not low <= number <= high:
        return None
    return int(number)


def parse_revenue(value: object) -> int | None:
    text = _number_text(value)
    if text is None:
        return None
    text = text.removesuffix("usd")
    match = _REVENUE.match(text)
    if not match:
        return None
    dollars = float(match.group(1)) * _REVENUE_SUFFIX.get(match.group(2) or "", 1)
    if not 0 <= dollars <= MAX_REVENUE:
        return None
    return int(round(dollars))


def _is_present(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


# --- vectorised rules: each reads a whole column (an Arrow string array, raw values) and returns the
# --- rule's result for every value, plus the values it cannot decide exactly (`undecided`), which
# --- `clean_companies` settles with the per-value rules above ---


@dataclass
class Texts:
    values: kernels.Parts
    """The cleaned text (Arrow strings, NULL where none), in parts until rows are taken."""
    present: np.ndarray
    """The raw value is text that is not only whitespace (`_is_present`)."""
    undecided: np.ndarray

    def settle(self, positions: np.ndarray, python_values: list) -> None:
        mask = np.zeros(len(self.values), dtype=bool)
        mask[positions] = True
        merged = self.values.merged()
        self.values = kernels.Parts(kernels.scatter(merged, mask, pa.array(python_values, type=pa.string())))


@dataclass
class Numbers:
    values: np.ndarray
    """int64; meaningful where `valid`."""
    valid: np.ndarray
    present: np.ndarray
    undecided: np.ndarray

    def settle(self, positions: np.ndarray, python_values: list) -> None:
        self.valid[positions] = [v is not None for v in python_values]
        self.values[positions] = [0 if v is None else v for v in python_values]

    def take(self, codes: np.ndarray) -> Numbers:
        return Numbers(_at(self.values, codes, 0), _at(self.valid, codes, False), _at(self.present, codes, False),
                       _at(self.undecided, codes, False))


@dataclass
class PostalCodes:
    zip5: np.ndarray
    """int64, -1 where none; the five digits as a number (`00501` is 501)."""
    zip4: np.ndarray
    """int64, -1 where none."""
    valid: np.ndarray
    undecided: np.ndarray

    def settle(self, positions: np.ndarray, python_values: list) -> None:
        self.zip5[positions] = [-1 if z5 is None else int(z5) for z5, _, _ in python_values]
        self.zip4[positions] = [-1 if z4 is None else int(z4) for _, z4, _ in python_values]
        self.valid[positions] = [ok for _, _, ok in python_values]

    def take(self, codes: np.ndarray) -> PostalCodes:
        return PostalCodes(_at(self.zip5, codes, -1), _at(self.zip4, codes, -1), _at(self.valid, codes, True),
                           _at(self.undecided, codes, False))


def normalize_texts(raw: pa.Array) -> Texts:
    """`normalize_text` on a column."""
    text = kernels.normalize(raw)
    return Texts(text.as_parts(), text.present, text.undecided)


def _cased(raw: pa.Array, mapping) -> Texts:
    text = kernels.normalize(raw)
    parts = text.as_parts()
    base, undecided = mapping(parts.base)
    if parts.mask is None:
        return Texts(kernels.Parts(base), text.present, text.undecided | undecided)
    patch, undecided[parts.mask] = mapping(parts.patch)
    return Texts(kernels.Parts(base, parts.mask, patch), text.present, text.undecided | undecided)


def upper_texts(raw: pa.Array) -> Texts:
    """`normalize_text(value).upper()` on a column (record ids)."""
    return _cased(raw, kernels.upper)


def title_texts(raw: pa.Array) -> Texts:
    """`normalize_text(value).title()` on a column (cities)."""
    return _cased(raw, kernels.title)


_STATE_KEYS = pa.array([*US_STATES, *_STATE_BY_NAME])
_STATE_CODES = pa.array([*US_STATES, *_STATE_BY_NAME.values()])
_INDUSTRY_KEYS = pa.array(list(INDUSTRIES))
_INDUSTRY_LABELS = pa.array(list(INDUSTRIES.values()))


def normalize_states(raw: pa.Array) -> Texts:
    """`normalize_state` on a column."""
    text = _cased(raw, kernels.upper)
    key = pc.replace_substring(text.values.merged(), ".", "")
    codes = pc.take(_STATE_CODES, pc.index_in(key, value_set=_STATE_KEYS))
    return Texts(kernels.Parts(codes), text.present, text.undecided)


def normalize_industries(raw: pa.Array) -> Texts:
    """`normalize_industry` on a column."""
    text = kernels.normalize(raw)
    values = text.values
    lowered, lower_undecided = kernels.lower(values)
    titled, title_undecided = kernels.title(values)
    label = pc.take(_INDUSTRY_LABELS, pc.index_in(lowered, value_set=_INDUSTRY_KEYS))
    return Texts(kernels.Parts(pc.coalesce(label, titled)), text.present,
                 text.undecided | lower_undecided | title_undecided)


def _by_parts(text: kernels.Normalized, read) -> list[np.ndarray]:
    """`read` (normalised text -> per-value arrays) on every value, from the text's two parts."""
    results: list[np.ndarray] = []
    for mask, values in text.parts():
        part = read(values)
        if mask is None:
            results = [a if a.flags.writeable else a.copy() for a in part]
        else:
            for result, values_of_part in zip(results, part):
                result[mask] = values_of_part
    return results


def parse_postal_codes(raw: pa.Array) -> PostalCodes:
    """`parse_postal_code` on a column: byte patterns of the normalised text, ASCII digits only."""
    text = kernels.normalize(raw)
    zip5, zip4, valid = _by_parts(text, _read_postal_codes)
    return PostalCodes(zip5, zip4, valid, text.undecided)


_ZERO_DIGITS = np.uint64(0x3030303030303030)
_HIGH_NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0)
_SIX = np.uint64(0x0606060606060606)


def _digit_values(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eight bytes per word: (each byte's value as a digit, a mask whose byte j is nonzero unless
    byte j is an ASCII digit). XOR with '0' maps exactly the digits to 0-9 and borrows nothing;
    a value v <= 15 is below 10 when v + 6 does not carry into the high nibble."""
    values = words ^ _ZERO_DIGITS
    return values, (values | (values + _SIX)) & _HIGH_NIBBLES


def _read_postal_codes(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(zip5 as a number or -1, zip4 as a number or -1, valid) of normalised postal codes: the
    first ten bytes of each, as two unaligned 64-bit reads, digits checked and converted eight at
    a time (SWAR)."""
    b = kernels.text_bytes(values)
    length, present = b.lengths, b.valid
    padded = np.zeros(b.data.size + 16, dtype=np.uint8)
    padded[: b.data.size] = b.data
    windows = np.ndarray(shape=(b.data.size + 9,), dtype="<u8", buffer=padded, strides=(1,))
    starts = np.asarray(b.starts, dtype=np.int64)
    head, head_other = _digit_values(windows[starts])  # bytes 0-7
    tail, tail_other = _digit_values(windows[starts + 8])  # bytes 8-15

    def digits(first: int, last: int) -> np.ndarray:
        """Bytes first..last (inclusive, within 0-9) are all digits."""
        mask = sum(0xFF << (8 * j) for j in range(first, min(last, 7) + 1))
        ok = (head_other & np.uint64(mask)) == 0
        if last >= 8:
            ok &= (tail_other & np.uint64(sum(0xFF << (8 * (j - 8)) for j in range(max(first, 8), last + 1)))) == 0
        return ok

    five = digits(0, 4)
    plain = present & (length == 5) & five
    joined = present & (length == 9) & five & digits(5, 8)
    separator = (head >> np.uint64(40)) & np.uint64(0xFF)  # byte 5, XOR '0'
    separated = (present & (length == 10) & five & digits(6, 9)
                 & ((separator == (ord("-") ^ 0x30)) | (separator == (ord(" ") ^ 0x30))))
    short3 = present & (length == 3) & digits(0, 2)
    short4 = present & (length == 4) & digits(0, 3)
    full = plain | joined | separated
    # zip5: the first 5 (or 3, 4: zeros in front) digits; zip4: bytes 5-8 or 6-9
    width = np.where(short3, 3, np.where(short4, 4, 5)).astype(np.uint64)
    with np.errstate(over="ignore"):
        zip5 = _eight_digits(head << (np.uint64(8) * (np.uint64(8) - width))).astype(np.int64)
        plus4 = np.where(joined, (head >> np.uint64(40)) | (tail << np.uint64(24)),
                         (head >> np.uint64(48)) | (tail << np.uint64(16)))
        zip4 = _eight_digits(plus4 << np.uint64(32)).astype(np.int64)
    zip5[~(full | short3 | short4)] = -1
    zip4[~(joined | separated)] = -1
    valid = ~present | full | short3 | short4
    return zip5, zip4, valid


_EXTENSION_WORDS = {1: b"x", 3: b"ext", 4: b"ext.", 9: b"extension"}
_MAX_EXTENSION_DIGITS = 64


def parse_phones(raw: pa.Array) -> Numbers:
    """`parse_phone` on a column; `values` are the ten NANP digits as a number (E.164 is `+1` and
    those digits)."""
    text = kernels.normalize(raw)
    values, good, long_extension = _by_parts(text, _read_phones)
    return Numbers(values, good, text.present, text.undecided | long_extension)


def _read_phones(values: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(NANP number, valid, undecided) of normalised phone text, read from its bytes."""
    b = kernels.text_bytes(values)
    n = len(values)
    data = b.data
    is_digit = (data - np.uint8(0x30)) < 10
    count = b.count_in(is_digit)
    extension_digits, undecided = _extensions(b, count)
    kept = count - extension_digits
    digits = data[is_digit] - np.uint8(0x30)
    first = np.cumsum(count) - count
    leading_one = (kept == 11) & (_take(digits, first) == 1)
    rows = np.flatnonzero((kept == 10) | leading_one)
    first = first[rows] + leading_one[rows]
    # The ten digits as a number: eight at once (SWAR on an unaligned 64-bit read), then two.
    padded = np.zeros(digits.size + 8, dtype=np.uint8)
    padded[: digits.size] = digits
    windows = np.ndarray(shape=(digits.size + 1,), dtype="<u8", buffer=padded, strides=(1,))
    eight = _eight_digits(windows[first]).astype(np.int64)  # fancy indexing: take() is slow unaligned
    number = eight * 100 + padded.take(first + 8).astype(np.int64) * 10 + padded.take(first + 9)
    nanp = (padded.take(first) >= 2) & (padded.take(first + 3) >= 2)  # area code, exchange: 2-9
    good = np.zeros(n, dtype=bool)
    good[rows] = nanp
    out = np.zeros(n, dtype=np.int64)
    out[rows] = np.where(nanp, number, 0)
    return out, good & ~undecided, undecided


def _eight_digits(words: np.ndarray) -> np.ndarray:
    """Eight digit values (0-9), first digit in the lowest byte, as the number they write."""
    with np.errstate(over="ignore"):
        words = words * np.uint64(10) + (words >> np.uint64(8))
        low = (words & np.uint64(0x000000FF000000FF)) * np.uint64(0x000F424000000064)
        high = ((words >> np.uint64(16)) & np.uint64(0x000000FF000000FF)) * np.uint64(0x0000271000000001)
        return (low + high) >> np.uint64(32)


def _extensions(b: kernels.Bytes, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`_EXTENSION` (` ?(?:x|ext\\.?|extension) ?\\d+$`, ASCII, any case) read from each value's
    end: (digits of the extension to drop, undecided: an extension of over 64 digits)."""
    n = len(count)
    dropped = np.zeros(n, dtype=np.int64)
    undecided = np.zeros(n, dtype=bool)
    has_x = b.row_any((b.data | 0x20) == ord("x")) & (count > 0)  # every form of it has an x
    if not has_x.any():
        return dropped, undecided
    rows = np.flatnonzero(has_x)
    lo, hi = b.starts[rows], b.ends[rows]
    before = hi - 1  # walks back over the trailing digits
    walking = np.arange(len(rows))
    for _ in range(_MAX_EXTENSION_DIGITS + 1):
        if not walking.size:
            break
        digit = (b.at(before[walking], lo[walking], hi[walking]) - np.uint8(0x30)) < 10
        before[walking[digit]] -= 1
        walking = walking[digit]
    too_long = np.zeros(len(rows), dtype=bool)
    too_long[walking] = True
    run = hi - 1 - before

    end = before - (b.at(before, lo, hi) == ord(" "))  # the optional space before the digits
    found = np.zeros(len(rows), dtype=np.int64)
    for length, word in _EXTENSION_WORDS.items():
        match = np.ones(len(rows), dtype=bool)
        for offset, letter in enumerate(reversed(word)):
            byte = b.at(end - offset, lo, hi)
            match &= (byte == letter) if letter == ord(".") else ((byte | 0x20) == letter)
        found[match & (found == 0)] = length
    matched = (found > 0) & (run >= 1) & ~too_long
    dropped[rows[matched]] = run[matched]
    undecided[rows[too_long]] = True
    return dropped, undecided


def _take(values: np.ndarray, positions: np.ndarray) -> np.ndarray:
    if not values.size:
        return np.zeros(len(positions), dtype=values.dtype)
    return values.take(positions, mode="clip")


def _number_texts(text: pa.Array, *, revenue: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`_number_text` and the number grammar on normalised text, read from its bytes: (number as
    float() reads it, matches the grammar, the suffix's factor, undecided)."""
    n = len(text)
    b = kernels.text_bytes(text)
    nonascii = b.nonascii()
    undecided = np.zeros(n, dtype=bool)
    if nonascii.any():  # Arrow lowers the text that is not ASCII (numpy the rest, below)
        lowered, undecided[nonascii] = kernels.lower(text.filter(pa.array(nonascii)))
        text = kernels.scatter(text, nonascii, lowered)
        b = kernels.text_bytes(text)
        nonascii = b.nonascii()  # the grammar is ASCII: what is still not ASCII is no number
    data = b.data
    upper = (data - np.uint8(0x41)) < 26
    if upper.any():
        data = data | (upper.view(np.uint8) << 5)
    drop = (data == ord(",")) | (data == ord("_")) | (data == ord(" "))
    if drop.any():
        b = kernels.Bytes.from_lengths(data[~drop], b.count_in(~drop), b.valid)
    else:
        b = kernels.Bytes(data, b.starts, b.ends, b.valid)
    start, end = b.starts.copy(), b.ends.copy()
    factor = np.ones(n, dtype=np.float64)
    if revenue:
        usd = ((end - start) >= 3) & (b.at(end - 3) == ord("u")) & (b.at(end - 2) == ord("s")) & (b.at(end - 1) == ord("d"))
        end -= 3 * usd
        start += b.at(start, start, end) == ord("$")
        last, before_last = b.at(end - 1, start, end), b.at(end - 2, start, end)
        k, m, bn, b1 = last == ord("k"), last == ord("m"), (last == ord("n")) & (before_last == ord("b")), last == ord("b")
        mm = m & (before_last == ord("m"))
        end -= (k | m | bn | b1).astype(np.int64) + (mm | bn)
        factor[k] = 1e3
        factor[m] = 1e6
        factor[b1 | bn] = 1e9
    first = b.at(start, start, end)
    body = start + ((first == ord("+")) | (first == ord("-")))
    digits = b.count_in((b.data - np.uint8(0x30)) < 10, body, end)
    dots = b.count_in(b.data == ord("."), body, end)
    ok = b.valid & ~nonascii & (digits >= 1) & (dots <= 1) & (digits + dots == end - body)
    # The number's text: the bytes from its sign to its last digit, '$' and suffix left out.
    keep = np.ones(len(b.data), dtype=bool)
    keep[(start - 1)[start > b.starts]] = False
    for j in range(5):
        cut = end + j < b.ends
        keep[(end + j)[cut]] = False
    number_text = kernels.from_bytes(end - start, b.data[keep], ok)
    number = pc.cast(number_text, pa.float64()).fill_null(0).to_numpy(zero_copy_only=False)
    return number, ok, factor, undecided


def parse_whole_numbers(raw: pa.Array, low: int, high: int) -> Numbers:
    """`parse_whole_number` on a column."""
    text = kernels.normalize(raw)
    number, ok, _, undecided = _by_parts(text, lambda values: _number_texts(values, revenue=False))
    with np.errstate(invalid="ignore"):
        ok &= np.isfinite(number) & (np.floor(number) == number) & (number >= low) & (number <= high)
    return Numbers(np.where(ok, number, 0).astype(np.int64), ok, text.present, text.undecided | undecided)


def parse_revenues(raw: pa.Array) -> Numbers:
    """`parse_revenue` on a column."""
    text = kernels.normalize(raw)
    number, ok, factor, undecided = _by_parts(text, lambda values: _number_texts(values, revenue=True))
    dollars = number * factor
    ok &= (dollars >= 0) & (dollars <= MAX_REVENUE)
    return Numbers(np.where(ok, np.rint(np.where(ok, dollars, 0)), 0).astype(np.int64), ok, text.present,
                   text.undecided | undecided)


# --- raw columns in, as Arrow ---

TEXT_COLUMNS = [c for c in RAW_COLUMNS if c not in ("raw_id", "updated_at")]


@dataclass
class _RawText:
    """One raw text column as Arrow strings, and the values that are not text at all."""

    name: str
    values: pa.Array
    """NULL where the raw value is NULL, not a string, or not valid text."""
    invalid: np.ndarray | None
    """Text that is not valid UTF-8 (lone surrogates from "surrogateescape", or invalid bytes)."""
    source: pd.Series

    def python_values(self, positions: np.ndarray) -> list:
        """The raw values at `positions` as the per-value rules read them."""
        if self.source.dtype == object:
            return self.source.to_numpy()[positions].tolist()
        values = self.values.take(pa.array(positions)).to_pylist()
        if self.invalid is not None:
            binary = _arrow_text(self.source)
            binary = binary.cast(pa.large_binary() if pa.types.is_large_string(binary.type) else pa.binary())
            for i, position in enumerate(positions.tolist()):
                if self.invalid[position]:
                    values[i] = binary[position].as_py().decode("utf-8", "surrogateescape")
        return values


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
            values = pc.if_else(pa.array(bad), pa.scalar(None, values.type), values)
            return _RawText(name, values, bad, series)
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
    invalid = np.fromiter((isinstance(v, str) and has_invalid_encoding(v) for v in objects), dtype=bool, count=n)
    text = np.where(is_str & ~invalid, objects, None)
    try:
        values = pa.array(text, type=pa.string())
    except UnicodeEncodeError:
        row = next(i for i, v in enumerate(text.tolist()) if isinstance(v, str) and not _encodable(v))
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


def _distinct(values: pa.Array) -> tuple[np.ndarray, pa.Array] | None:
    """(codes, distinct values) when a column repeats itself enough to be cleaned per distinct value."""
    n = len(values)
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
    """A cleaned text column: its rows (in parts), or codes (-1 for NULL) into distinct values."""

    values: kernels.Parts | pa.Array
    codes: np.ndarray | None = None

    def per_row(self, function, missing) -> np.ndarray:
        """`function` (array -> NumPy array) for every row; `missing` for NULL codes."""
        if self.codes is None:
            return self.values.per_row(function)
        return _at(function(self.values), self.codes, missing)

    def valid(self) -> np.ndarray:
        return self.per_row(kernels.valid_mask, False)

    def take(self, rows: np.ndarray) -> pa.Array:
        if self.codes is None:
            return self.values.take(rows)
        codes = self.codes[rows]
        return self.values.take(pa.array(codes, mask=codes < 0))


class _Run:
    """Applies the vectorised rules to raw columns, settles what they cannot decide with the
    per-value rules, and counts what the per-value rules did."""

    def __init__(self, n: int):
        self.n = n
        self.fallback_rows = np.zeros(n, dtype=bool)
        self.fallback_values: dict[str, int] = {}

    def _count(self, column: _RawText, rows: np.ndarray) -> None:
        if column.invalid is not None:
            rows = rows | column.invalid
        if rows.any():
            self.fallback_rows |= rows
            self.fallback_values[column.name] = self.fallback_values.get(column.name, 0) + int(rows.sum())

    @staticmethod
    def _decided(column: _RawText, vectorised, python):
        """The vectorised rule over the column (over its distinct values when it repeats itself), the
        values it could not decide settled by the per-value rule; and the distinct values' codes."""
        distinct = _distinct(column.values)
        source = column.values if distinct is None else distinct[1]
        result = vectorised(source)
        settle = np.flatnonzero(result.undecided)
        if settle.size:
            raw = column.python_values(settle) if distinct is None else source.take(pa.array(settle)).to_pylist()
            result.settle(settle, [python(v) for v in raw])
        return result, distinct

    def text(self, column: _RawText, vectorised, python) -> tuple[_Coded, np.ndarray]:
        """(cleaned text, present) of a text rule."""
        result, distinct = self._decided(column, vectorised, python)
        if distinct is None:
            self._count(column, result.undecided)
            return _Coded(result.values), result.present
        codes = distinct[0]
        self._count(column, _at(result.undecided, codes, False))
        return _Coded(result.values.merged(), codes), _at(result.present, codes, False)

    def other(self, column: _RawText, vectorised, python):
        """The per-row result of a rule whose results are numbers (`Numbers`, `PostalCodes`)."""
        result, distinct = self._decided(column, vectorised, python)
        if distinct is not None:
            result = result.take(distinct[0])
        self._count(column, result.undecided)
        return result

    def unparseable(self, column: _RawText, present: np.ndarray, parsed: np.ndarray, python) -> int:
        """Present values that did not parse; rows with invalid text by the per-value rules."""
        count = int(np.count_nonzero(present & ~parsed))
        if column.invalid is not None:
            for value in column.python_values(np.flatnonzero(column.invalid)):
                count += _is_present(value) and python(value) is None
        return count


def _record_id(value):
    text = normalize_text(value)
    return text.upper() if text else None


def _city(value):
    text = normalize_text(value)
    return text.title() if text else None


def _employees(value):
    return parse_whole_number(value, 0, INT32_MAX)


def _raw_ids(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(raw ids as int64, valid)."""
    arrow = _arrow_text(series) if isinstance(series.dtype, pd.ArrowDtype) else None
    if arrow is not None:
        arrow = arrow.cast(pa.int64())
        return arrow.fill_null(0).to_numpy(zero_copy_only=False), kernels.valid_mask(arrow)
    ids = pd.array(series, dtype="Int64")
    return ids.to_numpy(dtype="int64", na_value=0), ~ids.isna()


def _timestamps(series: pd.Series) -> tuple[pa.Array, np.ndarray]:
    """(source_updated_at as an Arrow UTC timestamp array, microseconds as the duplicate rule sorts
    them: int64, NaT as the smallest int64)."""
    if isinstance(series.dtype, pd.ArrowDtype) and pa.types.is_timestamp(series.dtype.pyarrow_dtype):
        arrow = _arrow_text(series)
        unit = arrow.type.unit
        if arrow.type.tz is not None and arrow.type.tz != "UTC":
            arrow = arrow.cast(pa.timestamp(unit, tz="UTC"))
        elif arrow.type.tz is None:
            arrow = pa.Array.from_buffers(pa.timestamp(unit, tz="UTC"), len(arrow), arrow.buffers(), arrow.null_count, arrow.offset)
        ints = arrow.cast(pa.int64()).fill_null(np.iinfo(np.int64).min).to_numpy(zero_copy_only=False)
        if unit == "us":
            micros = ints
        else:
            micros = ints.view(f"datetime64[{unit}]").astype("datetime64[us]").astype(np.int64)
        return arrow, micros
    stamps = pd.to_datetime(series, utc=True)
    micros = stamps.to_numpy(dtype="datetime64[us]").astype("int64")
    return pa.array(stamps), micros


# The ASCII digits of 0..99999, five per number (leading zeros kept).
_FIVE_DIGITS = (np.arange(100_000)[:, None] // 10 ** np.arange(4, -1, -1) % 10 + 0x30).astype(np.uint8)


def _digit_text(numbers: np.ndarray, valid: np.ndarray, width: int, prefix: str = "") -> pa.Array:
    """Each valid number (0 <= number < 10**width, width <= 10) as `prefix` + its `width` decimal
    digits (leading zeros kept)."""
    numbers = np.where(valid, numbers, 0)[valid]
    high, low = np.divmod(numbers, 100_000)
    digits = np.concatenate([_FIVE_DIGITS[high], _FIVE_DIGITS[low]], axis=1)[:, 10 - width:]
    if prefix:
        fixed = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
        digits = np.concatenate([np.broadcast_to(fixed, (len(digits), len(fixed))), digits], axis=1)
    row_width = digits.shape[1]
    return kernels.from_bytes(np.where(valid, row_width, 0), np.ascontiguousarray(digits).reshape(-1), valid)


_DETAIL_INVALID_ENCODING = "text with bytes that are not UTF-8: "
_DETAIL_MISSING_RECORD_ID = "no record id (empty, or only spaces and control characters)"
_DETAIL_MISSING_COMPANY_NAME = "no company name (empty, or only spaces and control characters)"


# --- the transform ---


def clean_companies(raw: pd.DataFrame, *, today: dt.date | None = None) -> CleaningResult:
    """Clean raw rows of one or more zip codes (each row's partition is its `zip_code`)."""
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"raw rows lack the columns {missing}; expected {RAW_COLUMNS}")
    kernels.check_unicode_tables()
    n = len(raw)  # rows are addressed by position throughout: the index is not read
    this_year = (today or dt.date.today()).year
    run = _Run(n)
    texts = {c: _raw_text(c, raw[c]) for c in TEXT_COLUMNS}

    record_id, _ = run.text(texts["record_id"], upper_texts, _record_id)
    name, _ = run.text(texts["company_name"], normalize_texts, normalize_text)
    street, _ = run.text(texts["street_address"], normalize_texts, normalize_text)
    city, _ = run.text(texts["city"], title_texts, _city)
    state, state_present = run.text(texts["state"], normalize_states, normalize_state)
    industry, _ = run.text(texts["industry"], normalize_industries, normalize_industry)
    postal = run.other(texts["postal_code"], parse_postal_codes, parse_postal_code)
    phone = run.other(texts["phone"], parse_phones, _phone_number)
    employees = run.other(texts["employees"], parse_whole_numbers_employees, _employees)
    revenue = run.other(texts["annual_revenue"], parse_revenues, parse_revenue)
    founded = run.other(texts["founded_year"],
                        lambda v: parse_whole_numbers(v, MIN_FOUNDED_YEAR, this_year),
                        lambda v: parse_whole_number(v, MIN_FOUNDED_YEAR, this_year))

    state_valid = state.valid()
    unparseable = {
        "state": run.unparseable(texts["state"], state_present, state_valid, normalize_state),
        "phone": run.unparseable(texts["phone"], phone.present, phone.valid, parse_phone),
        "employees": run.unparseable(texts["employees"], employees.present, employees.valid, _employees),
        "annual_revenue_usd": run.unparseable(texts["annual_revenue"], revenue.present, revenue.valid, parse_revenue),
        "founded_year": run.unparseable(
            texts["founded_year"], founded.present, founded.valid,
            lambda v: parse_whole_number(v, MIN_FOUNDED_YEAR, this_year)),
    }

    # Rules 0, 2, 3: the first that applies is the reason.
    zip_values = texts["zip_code"].values
    zip_encoded = pc.dictionary_encode(zip_values)
    zip_codes, zip_dictionary = _codes(zip_encoded.indices), zip_encoded.dictionary
    zip_entry_number = _five_digit_numbers(zip_dictionary)
    partition_number = np.where(zip_codes >= 0, zip_entry_number[np.maximum(zip_codes, 0)], -2)
    invalid = np.zeros(n, dtype=bool)
    for column in texts.values():
        if column.invalid is not None:
            invalid |= column.invalid
    record_id_valid = record_id.valid()
    record_id_length = record_id.per_row(lambda a: pc.utf8_length(a).fill_null(0).to_numpy(zero_copy_only=False), 0)
    record_id_prints = record_id.per_row(kernels.fingerprints, np.uint64(0))
    checks = [
        invalid,
        ~record_id_valid,
        record_id_length > MAX_RECORD_ID_LENGTH,
        ~name.valid(),
        ~postal.valid,
        (postal.zip5 >= 0) & (postal.zip5 != partition_number),
    ]
    reason = np.select(checks, list(range(1, len(checks) + 1)), 0).astype(np.int8)

    # Rule 6: duplicates among the otherwise valid rows: newest update wins, then the lowest raw id.
    raw_id, raw_id_valid = _raw_ids(raw["raw_id"])
    updated_at, micros = _timestamps(raw["updated_at"])
    duplicate_of = _duplicates(reason == 0, zip_codes, record_id, record_id_prints, micros, raw_id, raw_id_valid)
    duplicate = duplicate_of >= 0
    reason[duplicate] = len(checks) + 1

    rejected_rows = np.flatnonzero(reason)
    kept = reason == 0
    rejected = _rows_as_they_came(raw, texts, rejected_rows)
    details, kept_ids = _details(
        reason[rejected_rows], rejected_rows, texts, record_id_length, postal, zip_values, duplicate_of, raw_id,
        raw_id_valid, zip_codes)
    rejected = _readable(rejected, texts, rejected_rows)
    rejected["reason"] = pd.Series(
        pd.array(np.array(["", *REJECTION_REASONS], dtype=object)[reason[rejected_rows]].tolist(),
                 dtype=pd.ArrowDtype(pa.string())))
    rejected["detail"] = pd.Series(pd.arrays.ArrowExtensionArray(details))

    keep = np.flatnonzero(kept)
    cleaned = pd.DataFrame(
        {
            "zip_code": _text_output(_Coded(zip_dictionary, zip_codes), keep),
            "record_id": _text_output(record_id, keep, record_id_prints),
            "company_name": _text_output(name, keep),
            "street_address": _text_output(street, keep),
            "city": _text_output(city, keep),
            "state": _text_output(state, keep),
            "zip4": _number_text_output(postal.zip4[keep], postal.zip4[keep] >= 0, 4),
            "phone": _number_text_output(phone.values[keep], phone.valid[keep], 10, prefix="+1"),
            "employees": _int_output(employees.values[keep], employees.valid[keep]),
            "annual_revenue_usd": _int_output(revenue.values[keep], revenue.valid[keep]),
            "founded_year": _int_output(founded.values[keep], founded.valid[keep]),
            "industry": _text_output(industry, keep),
            "raw_id": _int_output(raw_id[keep], raw_id_valid[keep]),
            "source_updated_at": pd.Series(pd.arrays.ArrowExtensionArray(updated_at.take(pa.array(keep)))),
        }
    )
    return CleaningResult(
        cleaned=cleaned,
        rejected=rejected,
        unparseable=unparseable,
        duplicate_kept_raw_id=pd.Series(pd.arrays.ArrowExtensionArray(kept_ids), name="duplicate_kept_raw_id"),
        fallback_rows=int(run.fallback_rows.sum()),
        fallback_values=run.fallback_values,
    )


def parse_whole_numbers_employees(raw: pa.Array) -> Numbers:
    return parse_whole_numbers(raw, 0, INT32_MAX)


def _phone_number(value):
    phone = parse_phone(value)
    return None if phone is None else int(phone[2:])


def _five_digit_numbers(values: pa.Array) -> np.ndarray:
    """Each value that is exactly five ASCII digits as a number, else -2."""
    b = kernels.text_bytes(values)
    number = np.zeros(len(values), dtype=np.int64)
    ok = b.valid & (b.lengths == 5)
    for j in range(5):
        c = b.byte_at(j)
        ok &= (c >= 0x30) & (c <= 0x39)
        number = number * 10 + (c.astype(np.int64) - 0x30)
    return np.where(ok, number, -2)


def _duplicates(candidate: np.ndarray, zip_codes: np.ndarray, record_ids: _Coded, prints: np.ndarray,
                micros: np.ndarray, raw_id: np.ndarray, raw_id_valid: np.ndarray) -> np.ndarray:
    """For each row that is a duplicate (same zip code and record id as a newer row, or as an equally
    new row with a lower raw id), the row kept instead; -1 for the others."""
    out = np.full(len(candidate), -1, dtype=np.int64)
    rows = np.flatnonzero(candidate)
    if rows.size < 2:
        return out
    # Rows that may share their key: the same 64-bit hash of (zip code, record id fingerprint);
    # equal keys always do. Then the exact keys, for those rows only.
    with np.errstate(over="ignore"):
        hashed = kernels.mix(prints[rows] ^ kernels.mix(zip_codes[rows].astype(np.uint64)))
    rows = rows[_repeated(hashed)]
    if rows.size < 2:
        return out
    ids = _codes(pc.dictionary_encode(record_ids.take(rows)).indices)
    key = (zip_codes[rows] + 1) * (int(ids.max()) + 2) + ids
    repeated = pd.Series(key).duplicated(keep=False).to_numpy()
    rows, key = rows[repeated], key[repeated]
    if not rows.size:
        return out
    newest = -micros[rows]  # NaT (the smallest int64) stays the smallest, as in the per-value rules
    order = np.lexsort((np.where(raw_id_valid[rows], raw_id[rows], np.iinfo(np.int64).max), newest, key))
    rows, key = rows[order], key[order]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = key[1:] != key[:-1]
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(rows)), 0))
    out[rows[~first]] = rows[group_start[~first]]
    return out


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


def _details(reasons, rows, texts, record_id_length, postal, zip_values, duplicate_of, raw_id, raw_id_valid,
             zip_codes) -> tuple[pa.Array, pa.Array]:
    """(detail, kept raw_id) for each rejected row."""
    m = len(rows)
    parts: list[tuple[np.ndarray, pa.Array]] = []

    def add(code: int, build) -> None:
        where = np.flatnonzero(reasons == code)
        if where.size:
            parts.append((where, build(rows[where])))

    def constant(text: str):
        return lambda r: pa.array(np.full(len(r), text, dtype=object).tolist(), type=pa.string())

    def invalid_encoding(r):
        names = [pc.if_else(pa.array(col.invalid[r] if col.invalid is not None else np.zeros(len(r), bool)),
                            col.name, pa.scalar(None, pa.string())) for col in texts.values()]
        joined = pc.binary_join_element_wise(*names, ", ", null_handling="skip")
        return pc.binary_join_element_wise(_DETAIL_INVALID_ENCODING, joined, "")

    def too_long(r):
        length = pa.array(record_id_length[r]).cast(pa.string())
        return pc.binary_join_element_wise("record id of ", length, f" characters (at most {MAX_RECORD_ID_LENGTH})", "")

    def postal_repr(r):
        column = texts["postal_code"]
        values = column.values.take(pa.array(r))
        text, undecided = kernels.python_repr(values)
        if undecided.any():
            where = np.flatnonzero(undecided)
            text = kernels.scatter(text, undecided, pa.array([repr(v) for v in column.python_values(r[where])]))
        return text

    def invalid_postal(r):
        return pc.binary_join_element_wise("postal code ", postal_repr(r), " is not a zip code", "")

    def zip_mismatch(r):
        zip5 = _digit_text(postal.zip5[r], np.ones(len(r), dtype=bool), 5)
        partition = pc.fill_null(zip_values.take(pa.array(r)), "None")
        return pc.binary_join_element_wise("postal code ", postal_repr(r), " is in zip code ", zip5, ", not ",
                                           partition, "")

    def duplicate(r):
        kept = duplicate_of[r]
        shown = raw_id_valid[kept] & (zip_codes[r] >= 0)
        text = pc.if_else(pa.array(shown), pa.array(raw_id[kept]).cast(pa.string()), "<NA>")
        return pc.binary_join_element_wise("same zip code and record id as raw_id ", text, ", which was kept", "")

    add(1, invalid_encoding)
    add(2, constant(_DETAIL_MISSING_RECORD_ID))
    add(3, too_long)
    add(4, constant(_DETAIL_MISSING_COMPANY_NAME))
    add(5, invalid_postal)
    add(6, zip_mismatch)
    add(7, duplicate)
    if parts:
        where = np.concatenate([w for w, _ in parts])
        detail = pa.concat_arrays([d.cast(pa.string()) for _, d in parts]).take(pa.array(np.argsort(where, kind="stable")))
    else:
        detail = pa.array([], type=pa.string())
    duplicate_rows = reasons == 7
    kept_ids = np.zeros(m, dtype=np.int64)
    kept_valid = np.zeros(m, dtype=bool)
    kept = duplicate_of[rows[duplicate_rows]]
    kept_ids[duplicate_rows] = raw_id[kept]
    kept_valid[duplicate_rows] = raw_id_valid[kept]
    return detail, pa.array(kept_ids, mask=~kept_valid)


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


# --- rule 7: output columns, downcast as they are built ---


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


def _text_output(text: _Coded, keep: np.ndarray, prints: np.ndarray | None = None) -> pd.Series:
    """Kept rows of a cleaned text column: an Arrow dictionary when it has few distinct values (at
    most half the rows), else Arrow strings."""
    if text.codes is None:
        values = text.values.take(keep)
        at_least = kernels.distinct_at_least(values) if prints is None else kernels.distinct_hashes_at_least(
            prints[keep][kernels.valid_mask(values)])
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


def _number_text_output(numbers: np.ndarray, valid: np.ndarray, width: int, prefix: str = "") -> pd.Series:
    """Kept rows of a text column whose values are digits (`zip4`, `phone`), from their numbers."""
    if not _few(kernels.distinct_numbers_at_least(numbers[valid]), len(numbers)):
        return _arrow_series(_digit_text(numbers, valid, width, prefix))
    codes, distinct = pd.factorize(numbers[valid])
    if not _few(len(distinct), len(numbers)):
        return _arrow_series(_digit_text(numbers, valid, width, prefix))
    all_codes = np.full(len(numbers), -1, dtype=np.int64)
    all_codes[valid] = codes
    return _dictionary(all_codes, _digit_text(np.asarray(distinct), np.ones(len(distinct), dtype=bool), width, prefix))


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


def partition_stats(raw: pd.DataFrame, result: CleaningResult) -> pd.DataFrame:
    """Rows in, out and rejected by reason, one row per zip code present in `raw`."""
    rows_in = _by_zip(raw.groupby("zip_code", observed=True).size().rename("rows_in"))
    rows_out = _by_zip(result.cleaned.groupby("zip_code", observed=True).size().rename("rows_out"))
    rejected = (
        result.rejected.groupby(["zip_code", "reason"], observed=True).size().unstack(fill_value=0)
        if len(result.rejected)
        else pd.DataFrame(index=rows_in.index)
    )
    rejected = _by_zip(rejected.reindex(columns=REJECTION_REASONS, fill_value=0).add_prefix("rejected_"))
    rejected.columns = [str(c) for c in rejected.columns]
    stats = pd.concat([rows_in, rows_out, rejected], axis=1).fillna(0).astype("int64")
    stats.index = stats.index.astype(str)
    stats["rows_rejected"] = stats[[f"rejected_{r}" for r in REJECTION_REASONS]].sum(axis=1)
    return stats


def duplicate_detail(kept_raw_id: int) -> str:
    """The detail rule 6 gives a duplicate rejected in favour of the row `kept_raw_id`."""
    return f"same zip code and record id as raw_id {kept_raw_id}, which was kept"


def normalize_record_ids(values: pd.Series) -> pd.Series:
    """Record ids as rule 1 normalises them: what the duplicate rule compares (rule 6)."""
    run = _Run(len(values))
    record_id, _ = run.text(_raw_text("record_id", values), upper_texts, _record_id)
    return pd.Series(record_id.take(np.arange(len(values))).to_pylist(), index=values.index, dtype=object)
