"""Hostile text and every input form through `clean_companies`: whatever form the raw rows come in
(object, Arrow, pandas' Arrow strings, large strings, chunks; each column cleaned per row or per
distinct value), the same cleaned rows, the same rejected rows with the same reasons and details, the
same unparseable counts; and the output keeps its contract. What each rule makes of hostile values
is in its examples (rules.py, `test_rules.py`); `scripts/compare_transform.py` compares whole runs
with a saved run.

Hypothesis runs `ZIP_ETL_HOSTILE_EXAMPLES` examples (300 by default, derandomized so CI is stable);
set it higher locally for a longer search, e.g. `ZIP_ETL_HOSTILE_EXAMPLES=5000`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zip_etl.transform import cleaning, examples, text_kernels
from zip_etl.transform.cleaning import REJECTION_REASONS, RULES_BY_NAME, TEXT_COLUMNS, clean_companies
from zip_etl_tests.hostile_text import (
    NASTY,
    arrow_backed,
    edge_frame,
    input_forms,
    per_distinct_value,
    string_backed,
    undecodable_frames,
)
from zip_etl_tests.test_bad_input import corpus_frame

TODAY = dt.date(2026, 11, 23)
EXAMPLES = int(os.environ.get("ZIP_ETL_HOSTILE_EXAMPLES", "300"))


# --- comparing results ---


def _value(v):
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (pd.Timestamp, dt.datetime)):
        return ("timestamp", pd.Timestamp(v).as_unit("ns").value)
    return v


def keyed(frame: pd.DataFrame) -> dict:
    """Rows as tuples of Python values, by raw_id."""
    columns = list(frame.columns)
    out = {}
    for record in frame.astype(object).to_numpy().tolist():
        row = tuple(_value(v) for v in record)
        key = row[columns.index("raw_id")]
        assert key not in out, f"raw_id {key} twice"
        out[key] = row
    return out


def differences(expected: cleaning.CleaningResult, got: cleaning.CleaningResult) -> list[str]:
    problems = []
    for part in ("cleaned", "rejected"):
        a, b = getattr(expected, part), getattr(got, part)
        if list(a.columns) != list(b.columns):
            problems.append(f"{part} columns {list(a.columns)} != {list(b.columns)}")
            continue
        ka, kb = keyed(a), keyed(b)
        for key in sorted(set(ka) | set(kb), key=repr):
            if ka.get(key) != kb.get(key):
                problems.append(f"{part} raw_id {key}:\n  first  {ka.get(key)}\n  second {kb.get(key)}")
    if expected.unparseable != got.unparseable:
        problems.append(f"unparseable {expected.unparseable} != {got.unparseable}")
    return problems


def check_result_shape(result: cleaning.CleaningResult, raw: pd.DataFrame) -> None:
    """The output contract: Arrow-backed columns, every row accounted for, a detail for each rejected
    row, the kept raw_id of each duplicate."""
    assert list(result.cleaned.columns) == cleaning.CLEANED_COLUMNS
    for name, dtype in result.cleaned.dtypes.items():
        assert isinstance(dtype, (pd.ArrowDtype, pd.CategoricalDtype)), (name, dtype)
    table = pa.Table.from_pandas(result.cleaned, preserve_index=False)
    assert pa.types.is_timestamp(table.schema.field("source_updated_at").type)
    assert len(result.cleaned) + len(result.rejected) == len(raw)
    assert len(result.duplicate_kept_raw_id) == len(result.rejected)
    kept = result.duplicate_kept_raw_id.astype(object).tolist()
    for reason, detail, kept_id in zip(result.rejected["reason"].tolist(), result.rejected["detail"].tolist(), kept):
        assert reason in REJECTION_REASONS and isinstance(detail, str) and detail
        if reason == "duplicate":
            assert kept_id is not pd.NA and f"raw_id {kept_id}," in detail, (detail, kept_id)
        else:
            assert kept_id is pd.NA


def assert_same(first: pd.DataFrame, second: pd.DataFrame) -> cleaning.CleaningResult:
    expected = clean_companies(first, today=TODAY)
    got = clean_companies(second, today=TODAY)
    problems = differences(expected, got)
    assert not problems, f"{len(problems)} difference(s):\n" + "\n".join(problems[:10])
    check_result_shape(got, second)
    return got


# --- demo rows and the bad-input corpus ---


@pytest.fixture(scope="module")
def demo_rows():
    from zip_etl.demo_data import generate_raw_companies

    return generate_raw_companies(50_000, seed=11)


@pytest.mark.parametrize("form", ["arrow", "string[pyarrow]"])
def test_demo_rows_clean_the_same_in_every_form(demo_rows, form):
    got = assert_same(demo_rows, {"arrow": arrow_backed, "string[pyarrow]": string_backed}[form](demo_rows))
    assert set(got.rejected["reason"]) >= {"duplicate", "zip_mismatch", "missing_company_name"}


def test_every_input_form_cleans_the_same():
    raw = pd.concat([corpus_frame(), edge_frame().assign(raw_id=lambda f: f["raw_id"] + 1000)], ignore_index=True)
    for form, frame in input_forms(raw).items():
        got = assert_same(raw, frame)
        assert list(got.rejected.dtypes) == list(frame.dtypes) + [pd.ArrowDtype(pa.string())] * 2, form
    assert_same(raw, raw.sample(frac=1, random_state=3))  # another order, and an index that is not 0..n-1


# --- hostile text ---


def test_hostile_text_cleans_the_same_per_row_and_per_distinct_value():
    raw = edge_frame()
    with per_distinct_value(False):
        per_row = clean_companies(raw, today=TODAY)
    for form in (raw, arrow_backed(raw), string_backed(raw)):
        with per_distinct_value(True):
            per_distinct = clean_companies(form, today=TODAY)
        problems = differences(per_row, per_distinct)
        assert not problems, "\n".join(problems[:10])
    check_result_shape(per_row, raw)
    assert set(per_row.rejected["reason"]) == set(REJECTION_REASONS) - {"invalid_encoding"}
    # Rows in = rows out + rows rejected, per zip code (counted in Python: pandas before 3.1 groups
    # `\x00a\x00` with `` as it factorizes object strings only up to their first NUL).
    rows_in = Counter(map(_value, raw["zip_code"].tolist()))
    out = Counter(map(_value, per_row.cleaned["zip_code"].astype(object).tolist() + per_row.rejected["zip_code"].tolist()))
    assert rows_in == out


def test_hostile_values_in_every_column_are_cleaned_or_rejected():
    """Every hostile value, in each text column of an otherwise valid row: the row is cleaned, or
    rejected for a reason of that column (a hostile value in a number column rejects no row)."""
    raw = edge_frame()
    result = clean_companies(raw, today=TODAY)
    reasons = dict(zip(result.rejected["record_id"].astype(object), result.rejected["reason"]))
    column_reasons = {
        "record_id": {"missing_record_id", "record_id_too_long", "duplicate"},
        "company_name": {"missing_company_name"},
        "zip_code": {"zip_mismatch", "invalid_postal_code"},  # its postal code is the same value
        "postal_code": {"invalid_postal_code", "zip_mismatch"},
    }
    for column in TEXT_COLUMNS:
        for i in range(len(NASTY) + 1):
            reason = reasons.get(f"{column}-{i}")
            assert reason is None or reason in column_reasons.get(column, set()), (column, NASTY[i:i + 1], reason)


def test_undecodable_bytes_are_rejected_the_same():
    """Lone surrogates from a "surrogateescape" read (object columns), and invalid UTF-8 in Arrow: the
    same rows rejected, naming the same columns, the raw values kept as Python strings."""
    frames = undecodable_frames()
    got = assert_same(frames["surrogateescape"], frames["invalid UTF-8 in Arrow"])
    raw = frames["surrogateescape"]
    details = dict(zip(got.rejected["raw_id"], got.rejected["detail"]))
    assert details[raw.loc[4, "raw_id"]] == "text with bytes that are not UTF-8: phone, employees"
    names = dict(zip(got.rejected["raw_id"], got.rejected["company_name"]))
    assert names[raw.loc[3, "raw_id"]] == "Caf\udce9 Ol\udce9"


def test_text_after_nul_is_text():
    """`Acme\\x00Corp` and `Acme` are two names, also when a column is cleaned per distinct value
    (pandas before 3.1 factorizes object strings only up to their first NUL)."""
    raw = corpus_frame().iloc[:2].copy()
    raw["company_name"] = ["Acme\x00Corp", "Acme"]
    for always in (False, True):
        with per_distinct_value(always):
            assert clean_companies(raw, today=TODAY).cleaned["company_name"].astype(object).tolist() == [
                "AcmeCorp", "Acme"]


def test_other_lone_surrogates_are_refused_not_cleaned():
    raw = edge_frame().iloc[:3].copy()
    raw["city"] = raw["city"].astype(object)
    raw.loc[1, "city"] = "Spring\ud800field"
    with pytest.raises(ValueError, match=r"column 'city', row 1: text with a lone surrogate"):
        clean_companies(raw, today=TODAY)


def test_the_primitives_decide_where_arrow_and_cpython_differ(monkeypatch):
    """Title case is CPython's because `text.title` takes CPython's where Arrow's differs: without its
    table, Arrow's title case (`ß` -> `Ss`... kept as `ß`) shows, and the city examples say so."""
    city = RULES_BY_NAME["city"]
    assert [e for e in city.examples if examples.example_problems(e)] == []
    monkeypatch.setattr(text_kernels, "_TITLE_UNSTABLE", "[^\\x00-\\x{10FFFF}]")
    failing = [e.written[0] for e in city.examples if examples.example_problems(e)]
    assert "\u00dfa street" in failing


# --- generated frames ---

FRAGMENTS = [
    *[s for s in NASTY if len(s) < 12], "212", "555", "0123", "10016", "1234", "00501", "0", "1", "9", ".", ",",
    "$", "k", "m", "mm", "b", "bn", "usd", "x", "ext.", "-", "+", "e3", "a", "A", "new", "york", "Tech",
]
any_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
fragments = st.lists(st.sampled_from(FRAGMENTS), max_size=5).map("".join)
values = st.one_of(st.none(), fragments, any_text, st.sampled_from(FRAGMENTS))
record_ids = st.sampled_from(["a1", "A1", " a1", "a1\t", "\u00c51", "A\u030a1", "\u212b1", "b2", "B2", "", "  ",
                              None, "\u00df", "SS", "ss", "\ufb01", "FI"])
stamps = st.sampled_from([pd.Timestamp("2026-03-01", tz="UTC") + pd.Timedelta(seconds=s) for s in (0, 0, 1, 86400)])


@st.composite
def raw_frames(draw):
    n = draw(st.integers(1, 12))
    rows = []
    for _ in range(n):
        row = {c: draw(values) for c in TEXT_COLUMNS}
        row["record_id"] = draw(st.one_of(record_ids, values))
        row["zip_code"] = draw(st.sampled_from(["10016", "00501", "10016", "1001\uff16"]))
        if draw(st.booleans()):
            row["postal_code"] = draw(st.sampled_from(["10016", "501", "00501-0332", "10016 1234", None]))
        if draw(st.booleans()):
            row["company_name"] = draw(st.sampled_from(["Acme", "", None, "caf\u00e9"]))
        row["updated_at"] = draw(stamps)
        rows.append(row)
    frame = pd.DataFrame(rows, columns=[c for c in cleaning.RAW_COLUMNS if c != "raw_id"])
    frame.insert(0, "raw_id", np.array(draw(st.permutations(range(1, n + 1))), dtype=np.int64))
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].astype(object)
    return frame[cleaning.RAW_COLUMNS]


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw_frames())
def test_generated_frames_clean_the_same_in_every_form(raw):
    with per_distinct_value(False):
        per_row = clean_companies(raw, today=TODAY)
    check_result_shape(per_row, raw)
    for form in (raw, arrow_backed(raw)):
        with per_distinct_value(True):
            problems = differences(per_row, clean_companies(form, today=TODAY))
        assert not problems, "\n".join(problems[:10])
    with per_distinct_value(False):
        assert not differences(per_row, clean_companies(arrow_backed(raw), today=TODAY))


# --- the Unicode tables are those of this Python and this pyarrow ---


def test_frozen_unicode_tables_are_current():
    """Recomputes where Arrow's Unicode handling differs from CPython's: an upgrade of either that
    changes it fails here (regenerate: python -m zip_etl.transform.unicode_tables)."""
    from zip_etl.transform import _unicode_data
    from zip_etl.transform.unicode_tables import compute_tables

    for name, ranges in compute_tables().items():
        assert getattr(_unicode_data, name) == ranges, f"{name} changed: regenerate _unicode_data.py"


def test_whitespace_class_is_cpythons():
    pattern = re.compile(r"\s")
    assert [cp for cp in range(0x110000) if pattern.match(chr(cp))] == [
        cp for lo, hi in text_kernels.tables.PY_WHITESPACE for cp in range(lo, hi + 1)]
