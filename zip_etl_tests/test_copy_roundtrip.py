"""Property: any DataFrame of the column types the writer supports comes back exactly (written by
PostgresWriter, read back by TableSnapshot)."""

import datetime as dt

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zip_etl.db.snapshot import TableSnapshot
from zip_etl.partition_stream import CleanedChunk
from zip_etl.resources.writer import write_target
from zip_etl.tables import Column, Table, Target

# SQL type -> (pandas dtype it loads as, strategy for one value; None is NULL)
TYPES = {
    "text": ("object", st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)),
    "smallint": ("Int16", st.integers(-(2**15), 2**15 - 1)),
    "integer": ("Int32", st.integers(-(2**31), 2**31 - 1)),
    "bigint": ("Int64", st.integers(-(2**63), 2**63 - 1)),
    "double precision": ("float64", st.floats(allow_nan=False)),
    "real": ("float32", st.floats(width=32, allow_nan=False)),
    "boolean": ("boolean", st.booleans()),
    "timestamptz": (
        "datetime64[us, UTC]",
        st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1), timezones=st.just(dt.UTC)),
    ),
}
COLUMNS = {f"c_{name.split()[0]}": sql_type for name, sql_type in zip(TYPES, TYPES)}


@st.composite
def frames(draw) -> pd.DataFrame:
    n = draw(st.integers(0, 25))
    data = {"zip_code": pd.Series(["10016"] * n, dtype=object), "row_no": pd.array(range(n), dtype="Int32")}
    for column, sql_type in COLUMNS.items():
        dtype, values = TYPES[sql_type]
        drawn = draw(st.lists(st.none() | values, min_size=n, max_size=n))
        if dtype == "float64" or dtype == "float32":
            data[column] = pd.Series([float("nan") if v is None else v for v in drawn], dtype=dtype)
        elif dtype.startswith("datetime"):
            data[column] = pd.Series(pd.to_datetime(drawn, utc=True)).astype(dtype)
        else:
            data[column] = pd.Series(drawn, dtype=dtype)
    return pd.DataFrame(data)


@pytest.fixture
def table(schema) -> Table:
    return Table(
        schema=schema,
        name="round_trip",
        columns=(
            Column("zip_code", "text", nullable=False),
            Column("row_no", "integer", nullable=False),
            *(Column(name, sql_type) for name, sql_type in COLUMNS.items()),
        ),
        primary_key=("zip_code", "row_no"),
        partition_column="zip_code",
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame=frames())
def test_any_frame_of_supported_types_round_trips_exactly(table, etl_url, frame):
    write_target(etl_url, Target.of(table), [CleanedChunk(replace=["10016"], cleaned=frame)], ["10016"])
    with TableSnapshot(etl_url, table, arrow_dtypes=False) as snapshot:
        back = snapshot.frame(list(snapshot.batches_by_zip_code(["10016"])))
    back = back.sort_values("row_no").reset_index(drop=True)
    for column in COLUMNS:
        if str(frame[column].dtype).startswith("datetime"):
            back[column] = back[column].astype(frame[column].dtype)
    pd.testing.assert_frame_equal(back, frame, check_index_type=False)
