"""The cleaning rules for raw company records: what "clean" means. Change a rule here, nowhere else.

Each rule is one function below, written with `pyarrow.compute` (`pc`), NumPy and the text
primitives of `text.py` (exact to CPython, fast), with its examples above it. The pipeline runs these
functions (`cleaning.clean_companies`); `rulebook.py` says how a rule is declared. To change a rule,
change its function and its examples together, then run `zip-etl rules`: a change without a new
example, or an example the code does not do, fails naming the rule. docs/RULES.md ("Changing a
rule") has the whole map of a change, and every rule by example.

Input: one or many zip codes' raw rows (`RAW_COLUMNS`); output: the cleaned rows (`CLEANED_COLUMNS`)
and the rejected rows with their reason and a detail, so that for every zip code
``rows in = rows out + rows rejected``. The rules, in order:

0. **Encoding**: a row with text that is not UTF-8 is rejected (`invalid_encoding`).
1. **Text**: every text value is normalised (`text.normalize`: controls removed, NFC, whitespace
   collapsed, trimmed, empty to NULL); record ids upper-cased, cities title-cased, states to USPS
   codes, industries to canonical labels.
2. **Required values**: no record id, a record id over 200 characters, or no company name: rejected.
3. **Postal code vs partition**: the postal code's zip code must be the row's (`zip_mismatch`) and
   be a zip code at all (`invalid_postal_code`); its +4 part is kept as `zip4`.
4. **Phones**: NANP numbers in E.164 (`+12125550123`), extensions dropped; others NULL.
5. **Numbers**: one grammar for every number column (`number_text`, `text.to_number`); employees,
   revenue in dollars (with `K`/`M`/`B` suffixes), founded year; out of range or unparseable: NULL.
6. **Duplicates**: one row per zip code and record id, the one updated last.
7. **Downcast** (the pipeline, not a rule): the smallest integer types, Arrow dictionaries for text
   with few distinct values.

Values that cannot be read become NULL and are counted (`counts_unparseable`), not rejected; a value
counts when it has text (not NULL, not only whitespace). Digits are the ASCII digits 0-9 wherever a
rule reads digits: other scripts' digits (`٤٥`) are not read as numbers.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zip_etl.transform import grouping, text
from zip_etl.transform.rulebook import Columns, reject, rejected, rejection, value_rule

# --- 0. encoding ---


@rejection(
    "invalid_encoding",
    detail="text with bytes that are not UTF-8: {raw.not_utf8}",
    examples=[
        ({"company_name": "Caf\udce9 Ol\udce9"}, rejected("invalid_encoding", "text with bytes that are not UTF-8: company_name")),
        ({"phone": "212-555-0123\udc80", "employees": "1\udcff2"},
         rejected("invalid_encoding", "text with bytes that are not UTF-8: phone, employees")),
    ],
)
def invalid_encoding(raw: Columns, clean: Columns):
    """A row with any text that is not valid UTF-8 (possible when the raw database is SQL_ASCII) is
    rejected; the quarantine keeps its bytes (shown as `\\xNN`). Such bytes come as lone surrogates
    U+DC80-U+DCFF (text read with "surrogateescape") or as invalid UTF-8 in an Arrow column; other
    lone surrogates cannot come from a database read and stop the run with an error naming the
    column and row. `raw.not_utf8` names the row's text columns that are not UTF-8 (the other rules
    read each undecodable byte as U+FFFD)."""
    return reject(where=pc.is_valid(raw.not_utf8))


# --- 1. text ---


@value_rule(
    "record_id",
    examples=[
        (" c002 ", "C002"),
        ("ab\t\x00 12", "AB 12"),
        ("stra\u00dfe-1", "STRASSE-1"),
        ("caf\u00e9-1", "CAF\u00c9-1"),
        ("cafe\u0301-1", "CAF\u00c9-1"),
        ("\u0390", "\u0399\u0308\u0301"),
    ],
)
def record_id(raw: pa.Array) -> pa.Array:
    """Record ids are normalised and upper-cased (CPython's `str.upper()`: `ß` upper-cases to `SS`):
    ids that differ only in case, spaces or Unicode form are the same id (rule 6). The case mapping
    comes last, so an id may end up outside NFC (`ΐ` upper-cases to `Ϊ́`, three code points)."""
    return text.upper(text.normalize(raw))


@value_rule(
    "company_name",
    examples=[
        ("  Acme\tWidgets \n LLC ", "Acme Widgets LLC"),
        ("Acme\x00Corp", "AcmeCorp"),
        ("Acme\u00a0\u3000Widgets", "Acme Widgets"),
        ("Cafe\u0301 Zo\u00eb", "Caf\u00e9 Zo\u00eb"),
        ('O\'Brien "Best" \\ Co', 'O\'Brien "Best" \\ Co'),
        ("\\N", "\\N"),
        ("\x85Acme\x9f", "Acme\x9f"),
        ("\u6771\u4eac sushi \U0001f355", "\u6771\u4eac sushi \U0001f355"),
    ],
)
def company_name(raw: pa.Array) -> pa.Array:
    """The name as written, normalised: control characters removed (U+0000-U+0008, U+000E-U+001F,
    U+007F; NUL included, which PostgreSQL cannot store; the C1 controls are kept), then Unicode
    NFC, then every run of whitespace (what CPython's `str.isspace()` calls whitespace: tabs,
    newlines, NBSP, U+0085, U+3000 ...) one space, the ends trimmed, empty to NULL. Backslashes,
    quotes and the literal text `\\N` are ordinary text."""
    return text.normalize(raw)


@value_rule(
    "street_address",
    examples=[
        ("2 Park Ave\nSuite 5", "2 Park Ave Suite 5"),
        ("  1  Main   St  ", "1 Main St"),
        ("\t\r\n", None),
        ("", None),
    ],
)
def street_address(raw: pa.Array) -> pa.Array:
    """The address as written, normalised (as the company name)."""
    return text.normalize(raw)


@value_rule(
    "city",
    examples=[
        ("  new   YORK ", "New York"),
        ("o'malley's", "O'Malley'S"),
        ("\u00dfa street", "Ssa Street"),
        ("1st avenue", "1St Avenue"),
        ("\u03a3\u0391\u03a3", "\u03a3\u03b1\u03c2"),
        ("A\u0130A", "Ai\u0307a"),
        ("   ", None),
    ],
)
def city(raw: pa.Array) -> pa.Array:
    """Normalised and title-cased as CPython's `str.title()` does it: the first cased letter after
    an uncased character upper-cased, the others lower-cased (`o'malley's` -> `O'Malley'S`; a final
    sigma is `ς`; `İ` lower-cases to `i` and a combining dot)."""
    return text.title(text.normalize(raw))


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
"""USPS state codes and the names they stand for."""

STATE_CODES = {**{code: code for code in US_STATES}, **{name.upper(): code for code, name in US_STATES.items()}}
"""What a state may be written as, upper-cased, without dots: its code or its full name."""


@value_rule(
    "state",
    counts_unparseable=True,
    examples=[
        ("ny", "NY"),
        (" N.Y. ", "NY"),
        ("New York", "NY"),
        ("new\u00a0 york", "NY"),
        ("District of Columbia", "DC"),
        ("Illinoi\u017f", "IL"),
        ("XX", None),
        ("New York City", None),
    ],
)
def state(raw: pa.Array) -> pa.Array:
    """A USPS code: the normalised text upper-cased (CPython's `str.upper()`: `ſ` is `S`), without
    dots, must be a code or a full state name (mapped to its code), else NULL."""
    key = pc.replace_substring(text.upper(text.normalize(raw)), ".", "")
    return text.lookup(key, STATE_CODES)


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
"""Canonical industry labels, by the lower-cased text that means them."""


@value_rule(
    "industry",
    examples=[
        (" TECH ", "Technology"),
        ("Restaurant", "Restaurants"),
        ("health  care", "Healthcare"),
        ("\ufb01nance", "Finance"),
        ("\u0130ndustry", "\u0130ndustry"),
        ("pet grooming", "Pet Grooming"),
        (None, None),
    ],
)
def industry(raw: pa.Array) -> pa.Array:
    """The canonical label of the normalised, lower-cased text (CPython's `str.lower()`), else the
    text title-cased."""
    normalised = text.normalize(raw)
    return pc.coalesce(text.lookup(text.lower(normalised), INDUSTRIES), text.title(normalised))


# --- 2. required values ---


@rejection(
    "missing_record_id",
    detail="no record id (empty, or only spaces and control characters)",
    examples=[
        ({"record_id": None}, rejected("missing_record_id", "no record id (empty, or only spaces and control characters)")),
        ({"record_id": " \t\x00 "}, rejected("missing_record_id", "no record id (empty, or only spaces and control characters)")),
    ],
)
def missing_record_id(raw: Columns, clean: Columns):
    """A row with no record id is rejected."""
    return reject(where=pc.is_null(clean.record_id))


MAX_RECORD_ID_LENGTH = 200


@rejection(
    "record_id_too_long",
    detail="record id of {length} characters (at most {at_most})",
    examples=[
        ({"record_id": "R" * 201}, rejected("record_id_too_long", "record id of 201 characters (at most 200)")),
        ({"record_id": "\u00df" * 101}, rejected("record_id_too_long", "record id of 202 characters (at most 200)")),
        ({"record_id": "r" * 200}, {"record_id": "R" * 200}),
    ],
)
def record_id_too_long(raw: Columns, clean: Columns):
    """A record id of more than 200 characters (once cleaned) is rejected: it is half of the table's
    key, and no real id is that long."""
    length = pc.utf8_length(clean.record_id)
    return reject(where=pc.greater(length, MAX_RECORD_ID_LENGTH), length=length, at_most=MAX_RECORD_ID_LENGTH)


@rejection(
    "missing_company_name",
    detail="no company name (empty, or only spaces and control characters)",
    examples=[
        ({"company_name": ""}, rejected("missing_company_name", "no company name (empty, or only spaces and control characters)")),
        ({"company_name": "\x00 \u3000"},
         rejected("missing_company_name", "no company name (empty, or only spaces and control characters)")),
    ],
)
def missing_company_name(raw: Columns, clean: Columns):
    """A row with no company name is rejected."""
    return reject(where=pc.is_null(clean.company_name))


# --- 3. postal code vs partition ---


@value_rule(
    "zip_code",
    examples=[
        ({"zip_code": "00501", "postal_code": None}, {"zip_code": "00501"}),
    ],
)
def zip_code(raw: pa.Array) -> pa.Array:
    """The row's zip code is its partition's, as it came: text from end to end (`00501` stays
    `00501`)."""
    return raw


@value_rule(
    "postal_code",
    cleaned=("zip4", "zip5", "postal_code"),
    examples=[
        ("10016", None),
        ("10016-1234", "1234"),
        ("10016 0001", "0001"),
        ("100161111", "1111"),
        (" 10016 ", None),
        ({"zip_code": "00501", "postal_code": "501"}, {"zip_code": "00501", "zip4": None}),
        ({"zip_code": "00501", "postal_code": "00501-0332"}, {"zip_code": "00501", "zip4": "0332"}),
        (None, None),
    ],
)
def postal_code(raw: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """(zip4, zip5, the postal code normalised) of the address's postal code: `12345`, `12345-6789`,
    `12345 6789`, `123456789`, or a code that lost its leading zeros (`501` is `00501`). `zip4`, the
    +4 part, is kept: text of four digits, leading zeros kept (`0332`). NULL where there is none, or
    no zip code at all (rule `invalid_postal_code`)."""
    code = text.normalize(raw)
    zip_code = pc.match_substring_regex(code, r"^([0-9]{3,5}|[0-9]{5}[- ]?[0-9]{4})$")
    with_plus4 = pc.match_substring_regex(code, r"^[0-9]{5}[- ]?[0-9]{4}$")
    zip5 = pc.if_else(zip_code, pc.utf8_lpad(pc.utf8_slice_codeunits(code, 0, 5), 5, "0"), None)
    zip4 = pc.if_else(with_plus4, pc.utf8_slice_codeunits(code, -4), None)
    return zip4, zip5, code


@rejection(
    "invalid_postal_code",
    detail="postal code {raw.postal_code!r} is not a zip code",
    examples=[
        ({"postal_code": "ABCDE"}, rejected("invalid_postal_code", "postal code 'ABCDE' is not a zip code")),
        ({"postal_code": "1234567"}, rejected("invalid_postal_code", "postal code '1234567' is not a zip code")),
        ({"postal_code": "10016-123"}, rejected("invalid_postal_code", "postal code '10016-123' is not a zip code")),
        ({"postal_code": "\u0661\u0660\u0660\u0661\u0666"},
         rejected("invalid_postal_code", "postal code '\u0661\u0660\u0660\u0661\u0666' is not a zip code")),
        ({"postal_code": "\uff11\uff10\uff10\uff11\uff16"},
         rejected("invalid_postal_code", "postal code '\uff11\uff10\uff10\uff11\uff16' is not a zip code")),
        ({"postal_code": "10016\u20131234"}, rejected("invalid_postal_code", "postal code '10016\u20131234' is not a zip code")),
        ({"postal_code": "10016\t"}, {"zip4": None}),
        ({"postal_code": " \t"}, {"zip4": None}),
    ],
)
def invalid_postal_code(raw: Columns, clean: Columns):
    """A postal code that is no zip code at all is rejected; none at all (NULL once normalised) is
    fine: the partition's zip code stands."""
    return reject(where=pc.and_(pc.is_valid(clean.postal_code), pc.is_null(clean.zip5)))


@rejection(
    "zip_mismatch",
    detail="postal code {raw.postal_code!r} is in zip code {clean.zip5}, not {raw.zip_code}",
    examples=[
        ({"postal_code": "90210"}, rejected("zip_mismatch", "postal code '90210' is in zip code 90210, not 10016")),
        ({"postal_code": "10017-0001"}, rejected("zip_mismatch", "postal code '10017-0001' is in zip code 10017, not 10016")),
        ({"zip_code": "1001\uff16", "postal_code": " 10016"},
         rejected("zip_mismatch", "postal code ' 10016' is in zip code 10016, not 1001\uff16")),
        ({"zip_code": "00501", "postal_code": "501"}, {"zip_code": "00501"}),
    ],
)
def zip_mismatch(raw: Columns, clean: Columns):
    """A postal code in another zip code than the row's partition is rejected."""
    same_zip_code = pc.fill_null(pc.equal(clean.zip5, raw.zip_code), False)
    return reject(where=pc.and_(pc.is_valid(clean.zip5), pc.invert(same_zip_code)))


# --- 4. phones ---

EXTENSION = r" ?(x|ext\.?|extension) ?[0-9]+$"
"""An extension at the end of a phone number (after lower-casing its ASCII letters)."""


@value_rule(
    "phone",
    counts_unparseable=True,
    examples=[
        ("(212) 555-0123", "+12125550123"),
        ("212.555.0123", "+12125550123"),
        ("+1 212 555 0123", "+12125550123"),
        ("1-212-555-0123", "+12125550123"),
        ("212-555-0123 x45", "+12125550123"),
        ("(212)555-0123 ext. 7", "+12125550123"),
        ("212-555-0123 EXTENSION 7", "+12125550123"),
        ("212-555-0123Ext7", "+12125550123"),
        ("212\u3000555\u30000123", "+12125550123"),
        ("212-555-0123 x", "+12125550123"),
        ("212 555 0123 x 4 x5", None),
        ("212-555-0123 exten\u017fion 7", None),
        ("212-555-0123 \u0445 45", None),
        ("555-0123", None),
        ("112-555-0123", None),
        ("212-155-0123", None),
        ("22125550123", None),
        ("\u0662\u0661\u0662\u0665\u0665\u0665\u0660\u0661\u0662\u0663", None),
        ("N/A", None),
    ],
)
def phone(raw: pa.Array) -> pa.Array:
    """A NANP number in E.164 (`+1NXXNXXXXXX`), else NULL. An extension at the end (`x12`, `ext. 12`,
    `ext12`, `extension 12`, in any case of ASCII letters) is dropped; then the number's ASCII
    digits, a leading country code 1 dropped, must be ten: an area code and an exchange that start
    with 2-9, and four more. Case is ASCII only: `ſ` (long s), `İ` or a Cyrillic `х` are no letters of
    an extension, so `exten\u017fion 7` keeps its digits and the number is not a phone."""
    without_extension = pc.replace_substring_regex(pc.ascii_lower(text.normalize(raw)), EXTENSION, "")
    digits = text.ascii_digits(without_extension)
    nanp = pc.match_substring_regex(digits, r"^1?[2-9][0-9]{2}[2-9][0-9]{6}$")  # country code 1, NXX NXX XXXX
    number = pc.utf8_slice_codeunits(digits, -10)  # the country code left out
    return pc.if_else(nanp, pc.binary_join_element_wise("+1", number, ""), None)


# --- 5. numbers ---

NO_NUMBER = ["", "n/a", "na", "none", "null", "unknown", "-", "--", "?", "nan"]
"""Texts that mean "no number" (after `number_text`)."""


def number_text(raw: pa.Array) -> pa.Array:
    """The text of a number as every number column reads it: normalised, lower-cased (CPython's
    `str.lower()`), without `,`, `_` and spaces (`1,200` and `1 200` are 1200); NULL for `NO_NUMBER`.
    `text.to_number` then reads the number: an optional sign, ASCII digits with an optional decimal
    part (`12.0`, `.5`, `12.`), no exponent (`4.2e3` is not a number here)."""
    number = text.remove_characters(text.lower(text.normalize(raw)), ",_ ")
    return pc.if_else(pc.is_in(number, pa.array(NO_NUMBER)), None, number)


def whole_number(raw: pa.Array, low: int, high: int) -> pa.Array:
    """The whole number `low`..`high` a text writes (`12.0` is 12), else NULL."""
    number = text.to_number(number_text(raw)).to_numpy(zero_copy_only=False)  # NaN where none
    whole = (np.floor(number) == number) & (low <= number) & (number <= high)
    return pa.array(np.where(whole, number, 0).astype(np.int64), mask=~whole)


INT32_MAX = 2_147_483_647


@value_rule(
    "employees",
    counts_unparseable=True,
    examples=[
        ("1,200", 1200),
        (" 45 ", 45),
        ("12.0", 12),
        ("+12", 12),
        ("12.", 12),
        ("1_000", 1000),
        ("1 000", 1000),
        ("1\u2009000", 1000),
        ("0", 0),
        ("N/A", None),
        ("unknown", None),
        ("-", None),
        ("", None),
        ("-5", None),
        ("12.5", None),
        ("99999999999", None),
        ("2147483647", 2147483647),
        ("4.2e3", None),
        ("inf", None),
        ("\u0664\u0665", None),
        ("lots", None),
    ],
)
def employees(raw: pa.Array) -> pa.Array:
    """A whole number of employees, 0..2,147,483,647."""
    return whole_number(raw, 0, INT32_MAX)


REVENUE_SUFFIXES = {"k": 1e3, "m": 1e6, "mm": 1e6, "b": 1e9, "bn": 1e9}
"""Revenue suffixes (after `number_text`: lower-case) and what they multiply by."""

MAX_REVENUE = 2**62


@value_rule(
    "annual_revenue",
    cleaned="annual_revenue_usd",
    counts_unparseable=True,
    examples=[
        ("$1,250,000", 1_250_000),
        ("1000", 1000),
        ("1.2M", 1_200_000),
        ("850K", 850_000),
        ("1.5mm", 1_500_000),
        ("2bn", 2_000_000_000),
        ("3B", 3_000_000_000),
        ("$.5k", 500),
        ("45 USD", 45),
        ("45kusd", 45_000),
        ("5\u212a", 5_000),
        ("2.5", 2),
        ("3.5", 4),
        ("2.4999999999999999", 2),
        ("4611686018427387905", 4_611_686_018_427_387_904),
        (".5", 0),
        ("$-5", None),
        ("-$5", None),
        ("USD 1,000", None),
        ("$45usdusd", None),
        ("1e400", None),
        ("99999999999999999999999", None),
        ("N/A", None),
    ],
)
def annual_revenue_usd(raw: pa.Array) -> pa.Array:
    """Whole dollars, 0..2**62: the number (as `number_text`) with an optional leading `$`, a
    suffix of `REVENUE_SUFFIXES` and a trailing `USD`, read as a binary float (as CPython's `float()`
    reads it) times the suffix, rounded to whole dollars (halves to even: `2.5` is 2, `3.5` is 4).
    Lower-casing is CPython's: the Kelvin sign (U+212A) lower-cases to `k`, a suffix."""
    amount = text.remove_prefix(text.remove_suffix(number_text(raw), "usd"), "$")
    dollars = text.to_number(amount, suffixes=REVENUE_SUFFIXES).to_numpy(zero_copy_only=False)  # NaN where none
    in_range = (0 <= dollars) & (dollars <= MAX_REVENUE)
    return pa.array(np.rint(np.where(in_range, dollars, 0)).astype(np.int64), mask=~in_range)


MIN_FOUNDED_YEAR = 1800


@value_rule(
    "founded_year",
    counts_unparseable=True,
    examples=[
        ("1999", 1999),
        (" 2005 ", 2005),
        ("1999.0", 1999),
        ("1800", 1800),
        ("1799", None),
        ("2026", 2026),
        ("2027", None),
        ("'98", None),
        ("3000", None),
    ],
)
def founded_year(raw: pa.Array, today: dt.date) -> pa.Array:
    """A year from 1800 to the year the pipeline runs in."""
    return whole_number(raw, MIN_FOUNDED_YEAR, today.year)


# --- 6. duplicates ---


@rejection(
    "duplicate",
    detail="same zip code and record id as raw_id {kept_raw_id}, which was kept",
    examples=[
        ([{"record_id": "C1", "updated_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "company_name": "Old"},
          {"record_id": " c1 ", "updated_at": dt.datetime(2026, 3, 1, tzinfo=dt.UTC), "company_name": "New"}],
         [rejected("duplicate", "same zip code and record id as raw_id 2, which was kept"), {"company_name": "New"}]),
        ([{"record_id": "C1", "company_name": "First"}, {"record_id": "C1", "company_name": "Second"}],
         [{"company_name": "First"}, rejected("duplicate", "same zip code and record id as raw_id 1, which was kept")]),
        ([{"record_id": "stra\u00dfe"}, {"record_id": "STRASSE", "company_name": "Other"}],
         [{"record_id": "STRASSE"}, rejected("duplicate", "same zip code and record id as raw_id 1, which was kept")]),
        ([{"record_id": "C1"}, {"record_id": "C1", "zip_code": "00501", "postal_code": None}],
         [{"zip_code": "10016"}, {"zip_code": "00501"}]),
        ([{"record_id": "C1", "postal_code": "ABCDE"}, {"record_id": "C1", "updated_at": dt.datetime(2025, 1, 1, tzinfo=dt.UTC)}],
         [rejected("invalid_postal_code", "postal code 'ABCDE' is not a zip code"), {"record_id": "C1"}]),
    ],
)
def duplicate(raw: Columns, clean: Columns):
    """Rows with the same zip code and record id are one company: the row updated last is kept
    (`updated_at` to the microsecond; ties: the lowest raw id), the others are rejected, their detail
    naming the raw id kept (`kept_raw_id`, which the pipeline also reads to settle duplicates across
    the chunks of a big zip code). Rows an earlier rule rejected take no part."""
    first = grouping.first_of_each_group(
        by=[raw.zip_code, clean.record_id],
        order=[(raw.updated_at, "descending"), (raw.raw_id, "ascending")],
    )
    return reject(where=first != np.arange(len(first)), kept_raw_id=raw.raw_id.take(pa.array(first)))
