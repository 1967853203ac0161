"""The vectorised cleaning against the per-value reference (`reference_cleaning.py`, the rules as
they were written first): the same cleaned rows, the same rejected rows with the same reasons and
details, the same unparseable counts, on demo data, on hostile text, and on generated frames.

Values are compared, not dtypes: both results are turned into Python values keyed by raw_id.
Hypothesis runs `ZIP_ETL_DIFFERENTIAL_EXAMPLES` examples (300 by default, derandomized so CI is
stable); set it higher locally for a longer search, e.g. `ZIP_ETL_DIFFERENTIAL_EXAMPLES=5000`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zip_etl.transform import cleaning, text_kernels
from zip_etl.transform.cleaning import RAW_COLUMNS, clean_companies
from zip_etl_tests import reference_cleaning as reference
from zip_etl_tests.hostile_text import NASTY, edge_frame
from zip_etl_tests.test_bad_input import corpus_frame

TODAY = dt.date(2026, 11, 23)
TEXT_COLUMNS = [c for c in RAW_COLUMNS if c not in ("raw_id", "updated_at")]
EXAMPLES = int(os.environ.get("ZIP_ETL_DIFFERENTIAL_EXAMPLES", "300"))


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
                problems.append(f"{part} raw_id {key}:\n  reference  {ka.get(key)}\n  vectorised {kb.get(key)}")
    if expected.unparseable != got.unparseable:
        problems.append(f"unparseable {expected.unparseable} != {got.unparseable}")
    return problems


def _each_value(func, series: pd.Series) -> list:
    return [func(v) for v in series.astype(object).tolist()]


def reference_clean(raw: pd.DataFrame) -> cleaning.CleaningResult:
    """The reference rules, each applied to every value.

    The reference computes each rule once per distinct value with `pd.factorize`, which in pandas
    before 3.1 reads object strings only up to their first NUL (pandas issues #34551, #53720): a
    value containing NUL then shares its result with another value having the same text before the
    NUL, a pandas bug rather than a rule (`test_reference_conflates_text_after_nul`). So here the
    same rules run on every value, without that shortcut."""
    saved = reference._apply
    reference._apply = _each_value
    try:
        return reference.clean_companies(raw, today=TODAY)
    finally:
        reference._apply = saved


def assert_same(raw_reference: pd.DataFrame, raw_new: pd.DataFrame | None = None) -> cleaning.CleaningResult:
    expected = reference_clean(raw_reference)
    got = clean_companies(raw_reference if raw_new is None else raw_new, today=TODAY)
    problems = differences(expected, got)
    assert not problems, f"{len(problems)} difference(s):\n" + "\n".join(problems[:10])
    check_result_shape(got)
    return got


def check_result_shape(result: cleaning.CleaningResult) -> None:
    """The output contract: Arrow-backed columns, the kept raw_id of each duplicate."""
    assert list(result.cleaned.columns) == cleaning.CLEANED_COLUMNS
    for name, dtype in result.cleaned.dtypes.items():
        assert isinstance(dtype, (pd.ArrowDtype, pd.CategoricalDtype)), (name, dtype)
    table = pa.Table.from_pandas(result.cleaned, preserve_index=False)
    assert pa.types.is_timestamp(table.schema.field("source_updated_at").type)
    assert len(result.duplicate_kept_raw_id) == len(result.rejected)
    kept = result.duplicate_kept_raw_id.astype(object).tolist()
    for reason, detail, kept_id in zip(result.rejected["reason"].tolist(), result.rejected["detail"].tolist(), kept):
        assert isinstance(detail, str) and detail
        if reason == "duplicate":
            assert kept_id is not pd.NA and f"raw_id {kept_id}," in detail, (detail, kept_id)
        else:
            assert kept_id is pd.NA


def arrow_backed(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as the new reader gives it: Arrow strings, int64 and timestamp[us, UTC]."""
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


@contextlib.contextmanager
def per_distinct_value(always: bool):
    """Force every column through the per-distinct-value path (or none through it)."""
    saved = cleaning.DISTINCT_SHARE, cleaning.DISTINCT_MIN_ROWS
    cleaning.DISTINCT_SHARE, cleaning.DISTINCT_MIN_ROWS = (1.0, 0) if always else (-1.0, 0)
    try:
        yield
    finally:
        cleaning.DISTINCT_SHARE, cleaning.DISTINCT_MIN_ROWS = saved


# --- (a) demo data ---


@pytest.fixture(scope="module")
def demo_200k():
    from zip_etl.demo_data import generate_raw_companies

    return generate_raw_companies(200_000, seed=11)


@pytest.fixture(scope="module")
def demo_reference(demo_200k):
    return reference_clean(demo_200k)


@pytest.mark.parametrize("form", ["object", "arrow", "string[pyarrow]"])
def test_demo_rows_clean_the_same(demo_200k, demo_reference, form):
    raw = {"object": lambda f: f, "arrow": arrow_backed, "string[pyarrow]": string_backed}[form](demo_200k)
    got = clean_companies(raw, today=TODAY)
    problems = differences(demo_reference, got)
    assert not problems, f"{len(problems)} difference(s):\n" + "\n".join(problems[:10])
    check_result_shape(got)
    assert len(got.rejected) > 0 and set(got.rejected["reason"]) >= {"duplicate", "zip_mismatch", "missing_company_name"}


# --- (b) the bad-input corpus and hostile text ---


def test_bad_input_corpus_cleans_the_same():
    raw = corpus_frame()
    assert_same(raw)
    assert_same(raw, arrow_backed(raw))
    shuffled = raw.sample(frac=1, random_state=3)  # another order, and an index that is not 0..n-1
    assert_same(shuffled)


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


def test_every_input_form_cleans_the_same():
    raw = pd.concat([corpus_frame(), edge_frame().assign(raw_id=lambda f: f["raw_id"] + 1000)], ignore_index=True)
    for form, frame in input_forms(raw).items():
        got = assert_same(raw, frame)
        assert list(got.rejected.dtypes) == list(frame.dtypes) + [pd.ArrowDtype(pa.string())] * 2, form


@pytest.mark.parametrize("always", [False, True], ids=["per-row", "per-distinct"])
def test_hostile_text_cleans_the_same(always):
    raw = edge_frame()
    with per_distinct_value(always):
        result = assert_same(raw)
        assert_same(raw, arrow_backed(raw))
        assert_same(raw, string_backed(raw))
    assert result.fallback_rows > 0  # ß, ligatures, final sigma, dotted I... took the per-value rules
    assert set(result.rejected["reason"]) == set(cleaning.REJECTION_REASONS) - {"invalid_encoding"}


def test_undecodable_bytes_are_rejected_the_same():
    """Lone surrogates from a "surrogateescape" read (object columns), and invalid UTF-8 in Arrow."""
    raw = edge_frame().iloc[:40].copy()
    for column in TEXT_COLUMNS:  # object columns: only they hold lone surrogates
        raw[column] = raw[column].astype(object)
    raw.loc[3, "company_name"] = "Caf\udce9 Ol\udce9"
    raw.loc[4, "employees"] = "1\udcff2"
    raw.loc[4, "phone"] = "212-555-0123\udc80"
    raw.loc[5, "state"] = "\udcc3"
    raw.loc[6, "record_id"] = None
    raw.loc[6, "zip_code"] = "1001\udcb6"
    result = assert_same(raw)
    details = dict(zip(result.rejected["raw_id"], result.rejected["detail"]))
    assert details[raw.loc[4, "raw_id"]] == "text with bytes that are not UTF-8: phone, employees"
    assert result.fallback_values["company_name"] >= 1

    # The same bytes in an Arrow column (a reader that did not decode them): the same outcome.
    arrow = arrow_backed(raw.assign(**{c: raw[c].map(_to_placeholder) for c in TEXT_COLUMNS}))
    for column in TEXT_COLUMNS:
        arrow[column] = pd.Series(pd.arrays.ArrowExtensionArray(_with_raw_bytes(raw[column])))
    got = clean_companies(arrow, today=TODAY)
    problems = differences(reference_clean(raw), got)
    assert not problems, "\n".join(problems[:10])


def _to_placeholder(value):
    return value.encode("utf-8", "surrogateescape").decode("latin-1") if isinstance(value, str) else value


def _with_raw_bytes(column: pd.Series) -> pa.Array:
    """Arrow string array holding each value's bytes as a surrogateescape read would have found them."""
    raw = [None if not isinstance(v, str) else v.encode("utf-8", "surrogateescape") for v in column.tolist()]
    return pa.array(raw, type=pa.binary()).view(pa.string())


def test_reference_conflates_text_after_nul():
    """Why `reference_clean` applies the rules value by value: with pandas before 3.1 the
    reference's `pd.factorize` shortcut gave `Acme` the cleaned value of `Acme\x00Corp`. The
    vectorised rules clean every value on its own."""
    raw = corpus_frame().iloc[:2].copy()
    raw["company_name"] = ["Acme\x00Corp", "Acme"]
    names = clean_companies(raw, today=TODAY).cleaned["company_name"].astype(object).tolist()
    assert names == ["AcmeCorp", "Acme"]
    assert reference_clean(raw).cleaned["company_name"].tolist() == names
    shortcut = reference.clean_companies(raw, today=TODAY).cleaned["company_name"].tolist()
    fixed = tuple(int(p) for p in pd.__version__.split(".")[:2]) >= (3, 1)
    assert shortcut == (names if fixed else ["AcmeCorp", "AcmeCorp"])


def test_other_lone_surrogates_are_refused_not_cleaned():
    raw = edge_frame().iloc[:3].copy()
    raw["city"] = raw["city"].astype(object)
    raw.loc[1, "city"] = "Spring\ud800field"
    with pytest.raises(ValueError, match=r"column 'city', row 1: text with a lone surrogate"):
        clean_companies(raw, today=TODAY)


def test_the_comparison_catches_a_wrong_rule(monkeypatch):
    """The differential test can fail: without its fallback (undecided values), Arrow's title case
    is not CPython's (`ß` -> `Ss`), and the comparison says so."""
    raw = corpus_frame().iloc[:2].copy()  # two valid rows
    raw["city"] = ["\u00dfa street", "o'malley's \u01c6"]
    assert_same(raw)
    monkeypatch.setattr(text_kernels, "_TITLE_UNSTABLE", "[^\\x00-\\x{10FFFF}]")
    got = clean_companies(raw, today=TODAY)
    problems = differences(reference_clean(raw), got)
    assert len(problems) == 2 and all("cleaned" in p for p in problems), problems


# --- (c) generated frames ---

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
    frame = pd.DataFrame(rows, columns=[c for c in RAW_COLUMNS if c != "raw_id"])
    frame.insert(0, "raw_id", np.array(draw(st.permutations(range(1, n + 1))), dtype=np.int64))
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].astype(object)
    return frame[RAW_COLUMNS]


@settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(raw_frames(), st.booleans())
def test_generated_frames_clean_the_same(raw, always):
    with per_distinct_value(always):
        assert_same(raw)
        assert_same(raw, arrow_backed(raw))


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
