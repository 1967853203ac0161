"""Hostile text: raw frames that hold every kind of text the cleaning rules must survive, and the
input forms a raw frame may come in (object, Arrow, pandas' Arrow strings, large strings, chunks).

`edge_frame()` puts each value of `NASTY` (whitespace of every kind, controls, NUL, case mappings
that differ between Arrow and CPython, other scripts' digits, numbers at every edge, phones, postal
codes, states, industries, long values) into each text column of an otherwise valid row, and adds
rows whose record ids are equal once cleaned (duplicates). `undecodable_frames()` holds bytes that
are not UTF-8, as a SQL_ASCII database gives them. Used by the transform's tests and by
`scripts/compare_transform.py`.
"""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pyarrow as pa

from zip_etl.transform import cleaning
from zip_etl.transform.cleaning import RAW_COLUMNS

TEXT_COLUMNS = [c for c in RAW_COLUMNS if c not in ("raw_id", "updated_at")]

WHITESPACE = ["", " ", "  ", "\t", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0",
              "\u1680", "\u2000", "\u2007", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000"]
NASTY = [
    *WHITESPACE, "\x00", "\x7f", "\x80", "\x9f", "\u200b", "\ufeff", "\u00ad",
    "a\xa0b", "a\u3000\u3000b", " a\x85b ", "a\x1cb", "\x00a\x00", "\\N", "\\", "'", '"', "'\"", "a'b\"c\\",
    "o'malley's", "O'MALLEY'S", "mcdonald's", "a\tb\x07c",
    "\u0664\u0665", "\u0661\u0660\u0660\u0661\u0666", "\uff10\uff11\uff12", "\uff11\uff12", "\u00bd", "\u00b2", "\u216b",
    "\u00df", "stra\u00dfe", "STRASSE", "\ufb01sh", "\ufb00", "\u0149", "\u01f0", "\u0390", "\u01c5", "\u01c6",
    "\u01c4", "\u03a3\u0391\u03a3", "\u03c3\u03b1\u03c2", "\u039f\u0394\u039f\u03a3 \u03a3", "\u0130stanbul",
    "istanbul", "\u0131i", "I\u0307", "i\u0307", "\u212a", "\u212b", "\u2126", "\u1e9e",
    "e\u0301", "Cafe\u0301", "e\u0301\u0301", "a\u0308\u0304", "\u1100\u1161\u11a8", "e\x00\u0301", "e \u0301",
    "\u0958", "\u0345a", "a\u0345",
    "\u6771\u4eacsushi", "\u6771\u4eac sushi", "1st", "3rd ave", "\u01c8", "\u00aab", "\u00bac", "\u02b0d",
    "\u24d0\u24d1", "\U0001f355pizza", "\U0001f469\u200d\U0001f469\u200d\U0001f467", "\U0001fae8",
    "\U0001f1fa\U0001f1f8", "\U00016d68", "\U00016d63\U00016d67", "\U000105c9", "\U000105d2\u0307", "\u1c89",
    "\ua7cb", "\U0001e030", "\ue000", "\U0010fffd",
    # numbers
    "1,200", " 45 ", "12.0", ".5", "12.", "-0", "+0", "-0.0", "0.5", "1.5", "2.5", "3.5", "-0.4",
    "2.4999999999999999", "0.49999999999999994", "1e400", "4.2e3", "1E3", "inf", "nan", "NaN", "N/A", "n/a",
    "unknown", "-", "--", "?", "none", "null", "99999999999", "2147483647", "2147483648", "2147483647.0000000001",
    "2147483647.5", "99999999999999999999999", "1" + "0" * 400, "0" * 500 + "7", "$1,250,000", "1.2M", "850K",
    "850k", "1.5mm", "2bn", "3B", "$-5", "-$5", "$.5k", "1,0,0,0", "1_000", "1 000", "1\xa0000", "1\u2009000",
    "45usd", "45 USD", "USD 1,000", "$45usdusd", "0.0000005m", "4611686018427387904", "4611686018427387905",
    "4611686018.427387904b", "4611686018427387.904K", "4611686018427387903.5", "1800", "1799", "2026", "2027",
    "1999.0", "'98", "\u212a", "5\u212a", "12\u0301", "1\u0663",
    # phones
    "(212) 555-0123", "+1 212 555 0123", "1-212-555-0123", "212-555-0123 x45", "212-555-0123 X45",
    "212-555-0123ext.7", "212-555-0123 extension 7", "212-555-0123 EXT 7", "212-555-0123 exten\u017fion 7",
    "212 555 0123 x 4 x5", "011 44 20 7946 0958", "112-555-0123", "212-155-0123", "2125550123", "12125550123",
    "22125550123", "\u0662\u0661\u0662\u0665\u0665\u0665\u0660\u0661\u0662\u0663", "212\u3000555\u30000123",
    "212-555-0123\x00", "212-555-0123\u3000x45", "x1", "ext. 12", "212-555-0123 x", "212-555-0123 \u0445 45",
    # postal codes
    "10016", "10016-1234", "10016 1234", "100161234", "10016\u20131234", "10016-123", "501", "0501", "00501",
    "5", "50", "123456", "1234567", "10016-", " 10016 ", "10016\n", "1001\uff16", "ABCDE", "\uff11\uff10\uff10\uff11\uff16",
    "10016\u00a01234", "10016\t1234",
    # states and industries
    "NY", "ny", "N.Y.", "new york", "NEW  YORK", "New\u00a0York", "District of Columbia", "d.c.",
    "\u0131ll\u0131no\u0131s", "Illinoi\u017f", "\ufb02orida", "texas\u0301", "tech", "TECH", "Tech ", "software",
    "health  care", "Health\tCare", "pet grooming", "\ufb01nance", "\u0130ndustry", "\u017foftware",
    # long values
    "x" * 201, "R" * 300, "\u00df" * 150, "\ufb03" * 70, "r" * 200, "\u00df" * 100,
]
ZIP_CODES = ["10016", "00501", "1001\uff16", "10016 ", "", "ABCDE", "10016-1234"]


def edge_frame() -> pd.DataFrame:
    base = {
        "updated_at": pd.Timestamp("2026-03-01 12:00:00", tz="UTC"), "record_id": "C1", "company_name": "Good Co",
        "street_address": "1 Main St", "city": "new york", "state": "NY", "zip_code": "10016",
        "postal_code": "10016", "phone": "(212) 555-0100", "employees": "12", "annual_revenue": "1000",
        "founded_year": "1990", "industry": "tech",
    }
    rows = []
    for column in TEXT_COLUMNS:
        for i, value in enumerate([*NASTY, None]):
            row = {**base, "record_id": f"{column}-{i}", column: value}
            if column == "zip_code":
                row["postal_code"] = None if i % 2 else value
            rows.append(row)
    for zip_code in ZIP_CODES:
        for postal in ["10016", "501", zip_code, None, "1001\uff16", "A'B"]:
            rows.append({**base, "record_id": f"Z{len(rows)}", "zip_code": zip_code, "postal_code": postal})
    # Duplicates: ids equal once cleaned (case, spaces, NFC, controls), ties in updated_at.
    t0 = pd.Timestamp("2026-03-01 12:00:00", tz="UTC")
    for record_id, updated in [("caf\u00e9-1", t0), ("CAFE\u0301-1", t0), (" Caf\u00e9-1 ", t0 + pd.Timedelta(1, "us")),
                               ("caf\u00e9\x00-1", t0 - pd.Timedelta(days=1)), ("dup2", t0), ("DUP2", t0),
                               ("dup2", t0), (" dup2", t0 - pd.Timedelta(1, "s")), ("\u00df-3", t0),
                               ("SS-3", t0), ("ss-3", t0 + pd.Timedelta(1, "s"))]:
        rows.append({**base, "record_id": record_id, "updated_at": updated, "company_name": f"dup {len(rows)}"})
    frame = pd.DataFrame(rows)
    frame.insert(0, "raw_id", np.arange(1, len(frame) + 1, dtype=np.int64))
    frame["raw_id"] = frame["raw_id"][::-1].to_numpy()  # ties must go to the lowest raw id, not the first row
    return frame[RAW_COLUMNS]


def arrow_backed(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as the reader gives it: Arrow strings, int64 and timestamp[us, UTC]."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.set_column(table.schema.get_field_index("updated_at"), "updated_at",
                             table["updated_at"].cast(pa.timestamp("us", tz="UTC")))
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def string_backed(frame: pd.DataFrame) -> pd.DataFrame:
    """pandas' own Arrow-backed strings (`string[pyarrow]`, large_string inside), Int64 ids."""
    out = frame.copy()
    for column in TEXT_COLUMNS:
        out[column] = out[column].astype("string[pyarrow]")
    out["raw_id"] = out["raw_id"].astype("Int64")
    return out


def input_forms(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every input the contract allows: text as object, string[pyarrow], Arrow string and
    large_string; raw_id as Int64 or Arrow int64; updated_at as numpy ns/us or Arrow us (UTC)."""
    large = arrow_backed(frame)
    for column in TEXT_COLUMNS:
        large[column] = large[column].astype(pd.ArrowDtype(pa.large_string()))
    chunked = pa.Table.from_batches(pa.Table.from_pandas(frame, preserve_index=False).to_batches(max_chunksize=7))
    return {
        "object": frame,
        "string[pyarrow]": string_backed(frame),
        "arrow": arrow_backed(frame),
        "arrow large_string": large,
        "arrow in chunks of 7 rows": chunked.to_pandas(types_mapper=pd.ArrowDtype),
        "numpy us timestamps": frame.assign(updated_at=frame["updated_at"].astype("datetime64[us, UTC]")),
    }


def undecodable_frames() -> dict[str, pd.DataFrame]:
    """Bytes that are not UTF-8: as lone surrogates in object columns (a "surrogateescape" read),
    and the same bytes as invalid UTF-8 in Arrow columns (a reader that did not decode them)."""
    raw = edge_frame().iloc[:40].copy()
    for column in TEXT_COLUMNS:  # object columns: only they hold lone surrogates
        raw[column] = raw[column].astype(object)
    raw.loc[3, "company_name"] = "Caf\udce9 Ol\udce9"
    raw.loc[4, "employees"] = "1\udcff2"
    raw.loc[4, "phone"] = "212-555-0123\udc80"
    raw.loc[5, "state"] = "\udcc3"
    raw.loc[6, "record_id"] = None
    raw.loc[6, "zip_code"] = "1001\udcb6"
    arrow = arrow_backed(raw.assign(**{c: raw[c].map(_to_placeholder) for c in TEXT_COLUMNS}))
    for column in TEXT_COLUMNS:
        arrow[column] = pd.Series(pd.arrays.ArrowExtensionArray(_with_raw_bytes(raw[column])))
    return {"surrogateescape": raw, "invalid UTF-8 in Arrow": arrow}


def _to_placeholder(value):
    return value.encode("utf-8", "surrogateescape").decode("latin-1") if isinstance(value, str) else value


def _with_raw_bytes(column: pd.Series) -> pa.Array:
    """Arrow string array holding each value's bytes as a surrogateescape read would have found them."""
    raw = [None if not isinstance(v, str) else v.encode("utf-8", "surrogateescape") for v in column.tolist()]
    return pa.array(raw, type=pa.binary()).view(pa.string())


@contextlib.contextmanager
def per_distinct_value(always: bool | None):
    """Clean every column once per distinct value (True), or every column row by row (False)."""
    if always is None:
        yield
        return
    saved = cleaning.DISTINCT_SHARE, cleaning.DISTINCT_MIN_ROWS
    cleaning.DISTINCT_SHARE, cleaning.DISTINCT_MIN_ROWS = (1.0, 0) if always else (-1.0, 0)
    try:
        yield
    finally:
        cleaning.DISTINCT_SHARE, cleaning.DISTINCT_MIN_ROWS = saved
