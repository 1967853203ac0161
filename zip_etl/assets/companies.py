"""The company assets: the raw table from upstream, and its cleaned copy partitioned by zip code."""

import resource
import time

import dagster as dg
import pandas as pd

from zip_etl.partitions import zip_code_partitions
from zip_etl.resources.database import PostgresResource
from zip_etl.tables import CLEANED_COMPANIES, RAW_COMPANIES, dagster_table_schema
from zip_etl.transform import REJECTION_REASONS, clean_companies, frame_bytes, partition_stats

# Zip codes per run in a backfill: one run reads its range with one query and writes it with one
# COPY, so Dagster's per-run cost is paid once per range, not once per zip code.
PARTITIONS_PER_RUN = 2000

raw_companies = dg.AssetSpec(
    "raw_companies",
    description=(
        "Company records as they arrive from upstream: text columns, dirty. Loaded outside Dagster "
        "(`zip-etl seed` writes demo data). Each row's `zip_code` is its partition."
    ),
    group_name="companies",
    kinds={"postgres"},
    metadata={
        "dagster/table_name": f"{RAW_COMPANIES.schema}.{RAW_COMPANIES.name}",
        "dagster/column_schema": dagster_table_schema(RAW_COMPANIES),
    },
)


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@dg.asset(
    partitions_def=zip_code_partitions,
    deps=[raw_companies],
    io_manager_key="postgres_io_manager",
    group_name="companies",
    kinds={"pandas", "postgres"},
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_RUN),
    metadata={
        "dagster/column_schema": dagster_table_schema(CLEANED_COMPANIES),
        "partition_expr": CLEANED_COMPANIES.partition_column,
        "primary_key": list(CLEANED_COMPANIES.primary_key),
    },
)
def cleaned_companies(
    context: dg.AssetExecutionContext, postgres: PostgresResource
) -> dg.Output[pd.DataFrame]:
    """Company records cleaned by `zip_etl.transform.cleaning`: text normalised, phones in E.164,
    numbers parsed, postal codes checked against the zip code, duplicates removed, dtypes
    downcast. Rejected rows are counted per zip code by reason (see each partition's metadata)."""
    zip_codes = list(context.partition_keys)

    started = time.perf_counter()
    raw = postgres.read_raw(zip_codes)
    read_seconds = time.perf_counter() - started

    started = time.perf_counter()
    result = clean_companies(raw)
    transform_seconds = time.perf_counter() - started

    raw_bytes, cleaned_bytes = frame_bytes(raw), frame_bytes(result.cleaned)
    stats = partition_stats(raw, result).reindex(zip_codes, fill_value=0)
    rows_in_total = max(int(stats["rows_in"].sum()), 1)
    for zip_code, row in zip(zip_codes, stats.itertuples()):
        share = row.rows_in / rows_in_total
        context.add_asset_metadata(
            {
                "rows_in": row.rows_in,
                "rows_out": row.rows_out,
                "rows_rejected": row.rows_rejected,
                **{f"rejected_{reason}": getattr(row, f"rejected_{reason}") for reason in REJECTION_REASONS},
                # Memory is measured on the run's whole frame; each zip code's share is by rows.
                "memory_raw_bytes": int(raw_bytes * share),
                "memory_cleaned_bytes": int(cleaned_bytes * share),
            },
            partition_key=zip_code,
        )

    context.log.info(
        f"{len(zip_codes)} zip code(s): {len(raw)} rows in, {len(result.cleaned)} out, "
        f"{len(result.rejected)} rejected; memory {raw_bytes:,} -> {cleaned_bytes:,} bytes"
    )
    return dg.Output(
        result.cleaned,
        metadata={
            "run_partitions": len(zip_codes),
            "run_rows_in": len(raw),
            "run_rows_out": len(result.cleaned),
            "run_rows_rejected": len(result.rejected),
            "memory_saved_pct": round(100 * (1 - cleaned_bytes / raw_bytes), 1) if raw_bytes else 0.0,
            "peak_process_memory_mb": _peak_rss_mb(),
            "read_seconds": round(read_seconds, 4),
            "transform_seconds": round(transform_seconds, 4),
            **{f"unparseable_{column}": count for column, count in result.unparseable.items()},
        },
    )
