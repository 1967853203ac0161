"""The company assets: the raw table from upstream, and its cleaned copy partitioned by zip code."""

import resource
import time

import dagster as dg

from zip_etl.partitions import zip_code_partitions
from zip_etl.resources.database import PostgresResource
from zip_etl.resources.io_manager import PostgresCopyIOManager
from zip_etl.tables import CLEANED_COMPANIES, RAW_COMPANIES, dagster_table_schema
from zip_etl.transform import REJECTION_REASONS, frame_bytes, partition_stats
from zip_etl.transform.isolation import clean_isolating_failures

# Zip codes per run in a backfill: one run reads its range with one query and writes it with one
# COPY, so Dagster's per-run cost is paid once per range, not once per zip code.
PARTITIONS_PER_RUN = 2000

# Run tag selecting debug mode (run everything, write nothing); see zip_etl/jobs.py.
MODE_TAG = "zip_etl/mode"
DEBUG_MODE = "debug"

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


def _partition_metadata(row, share: float, raw_bytes: int, cleaned_bytes: int) -> dict:
    return {
        "rows_in": row.rows_in,
        "rows_out": row.rows_out,
        "rows_rejected": row.rows_rejected,
        **{f"rejected_{reason}": getattr(row, f"rejected_{reason}") for reason in REJECTION_REASONS},
        # Memory is measured on the run's whole frame; each zip code's share is by rows.
        "memory_raw_bytes": int(raw_bytes * share),
        "memory_cleaned_bytes": int(cleaned_bytes * share),
    }


@dg.asset(
    partitions_def=zip_code_partitions,
    deps=[raw_companies],
    io_manager_key="postgres_io_manager",
    output_required=False,  # a debug (dry-run) run records observations and writes nothing
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
    context: dg.AssetExecutionContext,
    postgres: PostgresResource,
    postgres_io_manager: dg.ResourceParam[PostgresCopyIOManager],
):
    """Company records cleaned by `zip_etl.transform.cleaning`: text normalised, phones in E.164,
    numbers parsed, postal codes checked against the zip code, duplicates removed, dtypes
    downcast. Rejected rows are counted per zip code by reason (see each partition's metadata).

    A run covers a range of zip codes. If cleaning raises for some of them, the others are still
    written and marked materialized; the run then fails naming the zip codes that failed."""
    zip_codes = list(context.partition_keys)

    started = time.perf_counter()
    raw = postgres.read_raw(zip_codes)
    read_seconds = time.perf_counter() - started

    started = time.perf_counter()
    result, failures = clean_isolating_failures(raw, zip_codes)
    transform_seconds = time.perf_counter() - started

    good = [z for z in zip_codes if z not in failures]
    good_raw = raw[~raw["zip_code"].isin(list(failures))] if failures else raw
    raw_bytes, cleaned_bytes = frame_bytes(good_raw), frame_bytes(result.cleaned)
    stats = partition_stats(good_raw, result).reindex(good, fill_value=0)
    rows_in_total = max(int(stats["rows_in"].sum()), 1)
    per_partition = {
        zip_code: _partition_metadata(row, row.rows_in / rows_in_total, raw_bytes, cleaned_bytes)
        for zip_code, row in zip(good, stats.itertuples())
    }
    run_metadata = {
        "run_partitions": len(zip_codes),
        "run_rows_in": len(good_raw),
        "run_rows_out": len(result.cleaned),
        "run_rows_rejected": len(result.rejected),
        "memory_saved_pct": round(100 * (1 - cleaned_bytes / raw_bytes), 1) if raw_bytes else 0.0,
        "peak_process_memory_mb": _peak_rss_mb(),
        "read_seconds": round(read_seconds, 4),
        "transform_seconds": round(transform_seconds, 4),
    }
    context.log.info(
        f"{len(zip_codes)} zip code(s): {len(raw)} rows in, {len(result.cleaned)} out, "
        f"{len(result.rejected)} rejected, {len(failures)} failed; memory {raw_bytes:,} -> {cleaned_bytes:,} bytes; "
        f"values unparseable (set to NULL): {result.unparseable}"
    )

    dry_run = postgres_io_manager.dry_run or context.run.tags.get(MODE_TAG) == DEBUG_MODE
    if dry_run:
        # Debug mode: the full read and transform ran; record what they found as observations. The
        # partitions stay as they were: not materialized, nothing written, no table created.
        for zip_code, metadata in per_partition.items():
            yield dg.AssetObservation(
                asset_key=context.asset_key, partition=zip_code, metadata={**metadata, "dry_run": True}
            )
    elif not failures:
        for zip_code, metadata in per_partition.items():
            context.add_asset_metadata(metadata, partition_key=zip_code)
        yield dg.Output(result.cleaned, metadata=run_metadata)
    else:
        # Some zip codes failed: write the others now (the same atomic replace the IO manager does
        # on output) and mark each of them materialized; the failure below names the rest.
        table = postgres_io_manager.table_for(context.asset_key, context.assets_def.metadata_by_key[context.asset_key])
        if good:
            started = time.perf_counter()
            postgres_io_manager.write_partitions(table, good, result.cleaned)
            run_metadata["write_seconds"] = round(time.perf_counter() - started, 4)
        for zip_code in good:
            yield dg.AssetMaterialization(
                asset_key=context.asset_key,
                partition=zip_code,
                metadata={**run_metadata, **per_partition[zip_code], "dagster/table_name": f"{table.schema}.{table.name}"},
            )

    if failures:
        listed = "; ".join(f"{z}: {message}" for z, message in list(failures.items())[:20])
        done = "cleaned (debug mode: nothing written)" if dry_run else "written"
        raise dg.Failure(
            description=(
                f"{len(failures)} of {len(zip_codes)} zip code(s) failed to clean and were not written "
                f"(their previous rows are unchanged); the other {len(good)} were {done}. Re-run the "
                f"failed ones (they show as missing). {listed}"
            ),
            metadata={"failed_zip_codes": dg.MetadataValue.json(sorted(failures)), "failed_count": len(failures)},
            allow_retries=False,
        )
