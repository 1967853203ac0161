"""Per-value reference implementation of the cleaning rules, kept for the differential test.

Change this module to change what "clean" means; its tests need no database.

Input: one or many zip codes' raw rows (`RAW_COLUMNS`, text as upstream sent it). Output: the
cleaned rows (`CLEANED_COLUMNS`, typed and downcast) and the rejected rows with the reason, so
that for every zip code ``rows in = rows out + rows rejected``.

Rules, in order:

0. **Encoding**: a row with any text that is not valid UTF-8 (possible when the raw database is
   SQL_ASCII) is rejected (`invalid_encoding`); the quarantine shows the bytes as `\\xNN`.
1. **Text** (name, address, city, industry, record id): Unicode NFC; control characters (NUL
   included, which PostgreSQL cannot store) removed; every run of whitespace (spaces, tabs,
   newlines, carriage returns) becomes one space; ends trimmed; empty becomes NULL. The literal
   text `\\N`, backslashes and quotes are ordinary text and kept.
   City is title-cased, state upper-cased and must be a USPS code (or a full state name, mapped to
   its code), else NULL. Industry is mapped to a canonical label. Record ids are upper-cased.
2. **Required values**: a row with no record id (`missing_record_id`) or no company name
   (`missing_company_name`) is rejected, and so is a record id over 200 characters
   (`record_id_too_long`: it is half of the table's key, and no real id is that long).
3. **Postal code vs partition**: the address's postal code may be `12345`, `12345-6789`,
   `12345 6789`, `123456789`, or a code that lost its leading zeros (`501` -> `00501`). Its 5-digit
   part must equal the row's partition zip code, else `zip_mismatch`; a value that is no zip code
   at all is `invalid_postal_code`. No postal code: the partition's zip code stands. The +4 part is
   kept as `zip4`: text of exactly four digits, leading zeros kept (`0332`), like the zip code.
4. **Phones**: digits only, extensions (`x12`, `ext. 12`) dropped, a leading country code 1
   dropped; a valid NANP number (10 digits, area code and exchange not starting with 0 or 1)
   becomes E.164 `+1NXXNXXXXXX`; anything else becomes NULL (counted, not rejected).
5. **Numbers**: one grammar for every number column: after dropping `,`, `_` and spaces, an
   optional sign, digits with an optional decimal part (`1,200`, ` 45 `, `12.0`, `.5`); no
   exponent (`4.2e3` is not a number here). `N/A`, `unknown`, `-`, empty become NULL.
   Employees: a whole number 0..2,147,483,647. Revenue: dollars, an optional leading `$` and
   `K`/`M`/`B` suffix, rounded to whole dollars (halves to even), 0..2**62. Founded year:
   1800..this year. Out-of-range or unparseable values become NULL (counted, not rejected).
   Digits are the ASCII digits 0-9 wherever a rule reads digits (postal codes, phones, numbers):
   other scripts' digits (`٤٥`) are not read as numbers.
6. **Duplicates**: rows with the same zip code and record id are one company; the most recently
   updated row is kept (ties: the lowest raw id), the others are rejected as `duplicate`.
7. **Downcast**: integer columns take the smallest nullable integer type that holds their values;
   text columns with few distinct values (at most half the rows) become categoricals.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

RAW_COLUMNS = [
    "raw_id",
    "updated_at",
    "record_id",
    "company_name",
    "street_address",
    "city",
    "state",
    "zip_code",
    "postal_code",
    "phone",
    "employees",
    "annual_revenue",
    "founded_year",
    "industry",
]

CLEANED_COLUMNS = [
    "zip_code",
    "record_id",
    "company_name",
    "street_address",
    "city",
    "state",
    "zip4",
    "phone",
    "employees",
    "annual_revenue_usd",
    "founded_year",
    "industry",
    "raw_id",
    "source_updated_at",
]

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
    """Clean rows, `CLEANED_COLUMNS`, downcast."""
    rejected: pd.DataFrame
    """Rejected rows with their original raw values, a `reason` (one of `REJECTION_REASONS`) and a
    `detail` for a person (which value, which rule)."""
    unparseable: dict[str, int] = field(default_factory=dict)
    """Values that were present but could not be parsed and became NULL, per cleaned column."""


# --- per-value rules (pure functions on Python values; vectorised below with list comprehensions,
# --- which beat pandas' .str methods on object columns and keep every rule readable) ---


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


def _apply(func, series: pd.Series) -> list:
    """`func` on every value, computed once per distinct value (raw feeds repeat themselves)."""
    codes, uniques = pd.factorize(series.astype(object), use_na_sentinel=True)
    mapped = [func(v) for v in uniques.tolist()] + [func(None)]
    return [mapped[c] for c in codes.tolist()]


# --- the transform ---


def clean_companies(raw: pd.DataFrame, *, today: dt.date | None = None) -> CleaningResult:
    """Clean raw rows of one or more zip codes (each row's partition is its `zip_code`)."""
    missing = [c for c in RAW_COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"raw rows lack the columns {missing}; expected {RAW_COLUMNS}")
    raw = raw.reset_index(drop=True)
    this_year = (today or dt.date.today()).year
    unparseable: dict[str, int] = {}

    def counted(column: str, values: list, source: pd.Series) -> list:
        present = _apply(_is_present, source)
        unparseable[column] = int(sum(p and v is None for p, v in zip(present, values)))
        return values

    record_id = [t.upper() if t else None for t in _apply(normalize_text, raw["record_id"])]
    name = _apply(normalize_text, raw["company_name"])
    postal = _apply(parse_postal_code, raw["postal_code"])
    partition_zip = raw["zip_code"].astype(object).tolist()

    text_columns = [c for c in RAW_COLUMNS if c not in ("raw_id", "updated_at")]
    undecodable = np.zeros(len(raw), dtype=bool)
    for column in text_columns:
        undecodable |= np.array(_apply(has_invalid_encoding, raw[column]), dtype=bool)

    reasons = np.full(len(raw), None, dtype=object)
    details = np.full(len(raw), None, dtype=object)
    raw_postal = raw["postal_code"].astype(object).tolist()
    rows = zip(record_id, name, postal, partition_zip, undecodable.tolist(), raw_postal)
    for i, (rid, nm, (zip5, _, valid), pzip, bad_bytes, original_postal) in enumerate(rows):
        if bad_bytes:
            reasons[i] = "invalid_encoding"
            details[i] = "text with bytes that are not UTF-8: " + ", ".join(
                c for c in text_columns if has_invalid_encoding(raw.at[i, c])
            )
        elif rid is None:
            reasons[i] = "missing_record_id"
            details[i] = "no record id (empty, or only spaces and control characters)"
        elif len(rid) > MAX_RECORD_ID_LENGTH:
            reasons[i] = "record_id_too_long"
            details[i] = f"record id of {len(rid)} characters (at most {MAX_RECORD_ID_LENGTH})"
        elif nm is None:
            reasons[i] = "missing_company_name"
            details[i] = "no company name (empty, or only spaces and control characters)"
        elif not valid:
            reasons[i] = "invalid_postal_code"
            details[i] = f"postal code {original_postal!r} is not a zip code"
        elif zip5 is not None and zip5 != pzip:
            reasons[i] = "zip_mismatch"
            details[i] = f"postal code {original_postal!r} is in zip code {zip5}, not {pzip}"

    cleaned = pd.DataFrame(
        {
            "zip_code": pd.Series(partition_zip, dtype=object),
            "record_id": pd.Series(record_id, dtype=object),
            "company_name": pd.Series(name, dtype=object),
            "street_address": pd.Series(_apply(normalize_text, raw["street_address"]), dtype=object),
            "city": pd.Series(
                [t.title() if t else None for t in _apply(normalize_text, raw["city"])], dtype=object
            ),
            "state": pd.Series(counted("state", _apply(normalize_state, raw["state"]), raw["state"]), dtype=object),
            "zip4": pd.Series([z4 for _, z4, _ in postal], dtype=object),
            "phone": pd.Series(counted("phone", _apply(parse_phone, raw["phone"]), raw["phone"]), dtype=object),
            "employees": pd.array(
                counted(
                    "employees",
                    _apply(lambda v: parse_whole_number(v, 0, INT32_MAX), raw["employees"]),
                    raw["employees"],
                ),
                dtype="Int64",
            ),
            "annual_revenue_usd": pd.array(
                counted("annual_revenue_usd", _apply(parse_revenue, raw["annual_revenue"]), raw["annual_revenue"]),
                dtype="Int64",
            ),
            "founded_year": pd.array(
                counted(
                    "founded_year",
                    _apply(lambda v: parse_whole_number(v, MIN_FOUNDED_YEAR, this_year), raw["founded_year"]),
                    raw["founded_year"],
                ),
                dtype="Int64",
            ),
            "industry": pd.Series(_apply(normalize_industry, raw["industry"]), dtype=object),
            "raw_id": pd.array(raw["raw_id"], dtype="Int64"),
            "source_updated_at": pd.to_datetime(raw["updated_at"], utc=True),
        }
    )

    # Duplicates among the otherwise valid rows: newest update wins, then the lowest raw id.
    newest_first = np.lexsort(
        (
            cleaned["raw_id"].to_numpy(dtype="int64", na_value=np.iinfo(np.int64).max),
            -cleaned["source_updated_at"].to_numpy(dtype="datetime64[us]").astype("int64"),
        )
    )
    valid = pd.Series(reasons, dtype=object).isna().to_numpy()
    candidates = cleaned.iloc[newest_first][valid[newest_first]]
    duplicate_index = candidates.index[candidates.duplicated(["zip_code", "record_id"], keep="first")]
    reasons[duplicate_index] = "duplicate"
    if len(duplicate_index):
        kept_raw_id = candidates.groupby(["zip_code", "record_id"], sort=False)["raw_id"].transform("first")
        for i in duplicate_index:
            details[i] = f"same zip code and record id as raw_id {kept_raw_id[i]}, which was kept"

    rejected_mask = pd.Series(reasons, dtype=object).notna().to_numpy()
    rejected = raw[rejected_mask].assign(reason=reasons[rejected_mask], detail=details[rejected_mask])
    kept = cleaned[~rejected_mask]
    return CleaningResult(
        cleaned=downcast(kept.reset_index(drop=True)),
        rejected=rejected.reset_index(drop=True),
        unparseable=unparseable,
    )


_INT_TYPES = [("Int8", np.int8), ("Int16", np.int16), ("Int32", np.int32), ("Int64", np.int64)]


def smallest_int_dtype(values: pd.Series) -> str:
    if values.notna().sum() == 0:
        return "Int8"
    low, high = int(values.min()), int(values.max())
    for name, np_type in _INT_TYPES:
        info = np.iinfo(np_type)
        if info.min <= low and high <= info.max:
            return name
    return "Int64"


def downcast(df: pd.DataFrame, *, category_max_ratio: float = 0.5) -> pd.DataFrame:
    """Shrink a frame in memory without changing a value: small ints, categoricals for repeats."""
    out = {}
    for name, column in df.items():
        if pd.api.types.is_integer_dtype(column.dtype):
            out[name] = column.astype(smallest_int_dtype(column))
        elif column.dtype == object or pd.api.types.is_string_dtype(column.dtype):
            distinct = column.nunique(dropna=True)
            few = len(column) > 0 and distinct <= category_max_ratio * len(column)
            if few:  # categories in order of appearance: no sort of the distinct strings
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


def partition_stats(raw: pd.DataFrame, result: CleaningResult) -> pd.DataFrame:
    """Rows in, out and rejected by reason, one row per zip code present in `raw`."""
    rows_in = raw.groupby("zip_code", observed=True).size().rename("rows_in")
    rows_out = result.cleaned.groupby("zip_code", observed=True).size().rename("rows_out")
    rejected = (
        result.rejected.groupby(["zip_code", "reason"], observed=True).size().unstack(fill_value=0)
        if len(result.rejected)
        else pd.DataFrame(index=rows_in.index)
    )
    rejected = rejected.reindex(columns=REJECTION_REASONS, fill_value=0).add_prefix("rejected_")
    stats = pd.concat([rows_in, rows_out, rejected], axis=1).fillna(0).astype("int64")
    stats.index = stats.index.astype(str)
    stats["rows_rejected"] = stats[[f"rejected_{r}" for r in REJECTION_REASONS]].sum(axis=1)
    return stats
