"""The transform on plain DataFrames: no database, no Dagster. What each rule makes of a value is in
its examples (zip_etl/transform/rules.py, run by test_rules.py), not here: here, the transform as a
whole (every row accounted for, details, counts, dtypes and memory, merged results)."""

import pandas as pd
import pyarrow as pa
import pytest

from zip_etl.transform import RAW_COLUMNS, clean_companies, downcast, frame_bytes, partition_stats
from zip_etl.transform.rulebook import EXAMPLE_DATE, EXAMPLE_ROW

TODAY = EXAMPLE_DATE


def raw_rows(*rows: dict) -> pd.DataFrame:
    records = [{**EXAMPLE_ROW, "raw_id": i + 1, **row} for i, row in enumerate(rows)]
    return pd.DataFrame(records)[RAW_COLUMNS]


def test_every_rejected_row_has_a_detail_for_a_person():
    result = clean_companies(
        raw_rows({"record_id": " \t "}, {"record_id": "B", "company_name": "\x00 "}, {"record_id": "C", "postal_code": "X"}),
        today=TODAY,
    )
    details = dict(zip(result.rejected["reason"], result.rejected["detail"]))
    assert set(details) == {"missing_record_id", "missing_company_name", "invalid_postal_code"}
    assert all(isinstance(d, str) and d for d in details.values()), details
    assert "record id" in details["missing_record_id"] and "company name" in details["missing_company_name"]


def test_unparseable_values_become_null_and_are_counted():
    result = clean_companies(raw_rows({"employees": "lots", "founded_year": "3000", "phone": "call us"}), today=TODAY)
    row = result.cleaned.iloc[0]
    assert pd.isna(row["employees"]) and pd.isna(row["founded_year"]) and pd.isna(row["phone"])
    assert result.unparseable["employees"] == 1
    assert result.unparseable["founded_year"] == 1
    assert result.unparseable["phone"] == 1


def test_rows_in_equal_rows_out_plus_rejected_per_zip(demo_frame):
    result = clean_companies(demo_frame, today=TODAY)
    stats = partition_stats(demo_frame, result)
    assert (stats["rows_in"] == stats["rows_out"] + stats["rows_rejected"]).all()
    assert stats["rows_in"].sum() == len(demo_frame)
    for reason in ["duplicate", "zip_mismatch", "invalid_postal_code", "missing_company_name"]:
        assert stats[f"rejected_{reason}"].sum() > 0, reason


def test_downcasting_halves_memory(demo_frame):
    result = clean_companies(demo_frame, today=TODAY)
    assert frame_bytes(result.cleaned) <= 0.5 * frame_bytes(demo_frame)
    dtypes = result.cleaned.dtypes
    assert str(dtypes["founded_year"]) == "int16[pyarrow]"
    assert str(dtypes["state"]) == "dictionary<values=string, indices=int8, ordered=0>[pyarrow]"
    # Arrow-backed input (as the reader gives it) halves too, and every column converts to Arrow.
    arrow = pa.Table.from_pandas(demo_frame, preserve_index=False).to_pandas(types_mapper=pd.ArrowDtype)
    result = clean_companies(arrow, today=TODAY)
    assert frame_bytes(result.cleaned) <= 0.5 * frame_bytes(arrow)
    table = pa.Table.from_pandas(result.cleaned, preserve_index=False)
    assert str(table.schema.field("employees").type) in ("int16", "int32")
    assert pa.types.is_dictionary(table.schema.field("state").type)


def test_downcast_keeps_values():
    df = pd.DataFrame({"n": pd.array([1, None, 300], dtype="Int64"), "s": ["a", "a", None]})
    small = downcast(df)
    assert str(small["n"].dtype) == "Int16"
    assert small["n"].tolist()[0] == 1 and pd.isna(small["n"].tolist()[1])
    assert small["s"].astype(object).tolist()[:2] == ["a", "a"]


def test_merged_results_keep_values_and_dtypes(demo_frame):
    """Chunks read differently (Arrow and object columns) merge into one Arrow-backed result."""
    from zip_etl.transform.isolation import merge_results

    arrow = pa.Table.from_pandas(demo_frame, preserve_index=False).to_pandas(types_mapper=pd.ArrowDtype)
    parts = [clean_companies(arrow.iloc[:10_000], today=TODAY), clean_companies(demo_frame.iloc[10_000:], today=TODAY)]
    merged = merge_results(parts)
    expected = pd.concat([p.cleaned.astype(object) for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(merged.cleaned.astype(object), expected, check_dtype=False)
    units = {p.cleaned["source_updated_at"].dtype.pyarrow_dtype.unit for p in parts}
    finest = "ns" if "ns" in units else "us"
    assert str(merged.cleaned["source_updated_at"].dtype) == f"timestamp[{finest}, tz=UTC][pyarrow]"
    assert len(merged.duplicate_kept_raw_id) == len(merged.rejected) == sum(len(p.rejected) for p in parts)
    assert merged.unparseable == {k: parts[0].unparseable[k] + parts[1].unparseable[k] for k in parts[0].unparseable}


def test_missing_raw_column_is_a_clear_error():
    with pytest.raises(ValueError, match="lack the columns.*phone"):
        clean_companies(raw_rows({}).drop(columns=["phone"]))


@pytest.fixture(scope="module")
def demo_frame():
    from zip_etl.demo_data import generate_raw_companies

    return generate_raw_companies(20_000, ["00501", "01001", "10016", "60614", "90210", "99950"], seed=7)
