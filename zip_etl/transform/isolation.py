"""Run the cleaning over many zip codes at once, yet lose only the zip codes that break it.

Cleaning a whole batch in one vectorised call is what makes a backfill fast; a single poisoned zip
code must not take the other 1,999 with it. When the batch raises, it is split in halves and each
half retried, down to single zip codes: k bad zip codes cost O(k log n) extra calls, and a clean
batch costs nothing extra.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import pyarrow as pa

from zip_etl.transform.cleaning import CleaningResult, clean_companies


def clean_isolating_failures(
    raw: pd.DataFrame,
    zip_codes: Sequence[str],
    clean: Callable[[pd.DataFrame], CleaningResult] = clean_companies,
    partition_column: str = "zip_code",
) -> tuple[CleaningResult, dict[str, str]]:
    """Clean `raw` (rows of `zip_codes`, the partitions in its `partition_column`); return the merged
    result of every zip code that cleaned and, for each one that raised, its error message."""
    groups = raw.groupby(partition_column, sort=False, observed=True).indices if len(raw) else {}
    results: list[CleaningResult] = []
    failures: dict[str, str] = {}

    def attempt(keys: Sequence[str]) -> None:
        rows = [i for key in keys for i in groups.get(key, ())]
        try:
            results.append(clean(raw.iloc[sorted(rows)] if len(keys) < len(zip_codes) else raw))
        except Exception as error:  # noqa: BLE001 - isolate, then report per zip code
            if len(keys) == 1:
                failures[keys[0]] = f"{type(error).__name__}: {error}"
                return
            middle = len(keys) // 2
            attempt(keys[:middle])
            attempt(keys[middle:])

    attempt(list(zip_codes))
    if not results:
        empty = clean(raw.iloc[0:0])
        return empty, failures
    return merge_results(results), failures


def merge_results(results: list[CleaningResult]) -> CleaningResult:
    if len(results) == 1:
        return results[0]
    from zip_etl.transform.cleaning import downcast

    unparseable: dict[str, int] = {}
    for result in results:
        for column, count in result.unparseable.items():
            unparseable[column] = unparseable.get(column, 0) + count
    cleaned = pd.concat(_same_dtypes([_widened(r.cleaned) for r in results]), ignore_index=True)
    return CleaningResult(
        cleaned=downcast(cleaned),
        rejected=pd.concat([r.rejected for r in results], ignore_index=True),
        unparseable=unparseable,
        duplicate_kept_raw_id=pd.concat([r.duplicate_kept_raw_id for r in results], ignore_index=True),
    )


def _widened(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in one dtype per kind, so that results downcast differently concatenate: categoricals
    and dictionaries back to their values' dtype, integers to 64 bits (downcast picks again after)."""
    out = {}
    for name, column in frame.items():
        dtype = column.dtype
        if isinstance(dtype, pd.CategoricalDtype):
            column = column.astype(dtype.categories.dtype)
        elif isinstance(dtype, pd.ArrowDtype) and pa.types.is_dictionary(dtype.pyarrow_dtype):
            column = column.astype(pd.ArrowDtype(dtype.pyarrow_dtype.value_type))
        elif isinstance(dtype, pd.ArrowDtype) and pa.types.is_integer(dtype.pyarrow_dtype):
            column = column.astype(pd.ArrowDtype(pa.int64()))
        elif pd.api.types.is_integer_dtype(dtype):
            column = column.astype("Int64")
        out[name] = column
    return pd.DataFrame(out, index=frame.index)


_UNITS = ["s", "ms", "us", "ns"]


def _same_dtypes(frames: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """Arrow timestamps of different units (input read differently) in the finest of them: pandas
    concatenates unlike Arrow dtypes into a timestamp without its time zone."""
    out = [frame.copy(deep=False) for frame in frames]
    for name in frames[0].columns:
        dtypes = {frame[name].dtype for frame in frames}
        arrow = [d.pyarrow_dtype for d in dtypes if isinstance(d, pd.ArrowDtype)]
        if len(dtypes) > 1 and len(arrow) == len(dtypes) and all(pa.types.is_timestamp(t) for t in arrow):
            unit = max((t.unit for t in arrow), key=_UNITS.index)
            target = pd.ArrowDtype(pa.timestamp(unit, tz="UTC"))
            for frame in out:
                frame[name] = frame[name].astype(target)
    return out
