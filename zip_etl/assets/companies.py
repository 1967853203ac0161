"""The company assets: the raw table from upstream, and its cleaned copy partitioned by zip code."""

import os
import resource
import socket
import time
from dataclasses import dataclass

import dagster as dg
import pandas as pd
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from zip_etl.assets.batched_events import batched_events
from zip_etl.partitions import partition_ranges, zip_code_partitions
from zip_etl.refresh import latest_data_versions, provenance_tags, raw_dependency
from zip_etl.resources.database import PostgresResource, failures_explained
from zip_etl.resources.io_manager import PostgresCopyIOManager, WithQuarantine
from zip_etl.tables import CLEANED_COMPANIES, RAW_COMPANIES, dagster_table_schema
from zip_etl.transform import RAW_COLUMNS, REJECTION_REASONS, CleaningResult, clean_companies, frame_bytes, partition_stats
from zip_etl.transform.isolation import clean_isolating_failures, merge_results

# Zip codes per run in a backfill: one run reads its range with one query and writes it with one
# COPY, so Dagster's per-run cost is paid once per range, not once per zip code. Deployments with
# many workers may cut smaller ranges (ZIP_ETL_PARTITIONS_PER_RUN) so that every worker gets some.
PARTITIONS_PER_RUN_ENV = "ZIP_ETL_PARTITIONS_PER_RUN"


def _partitions_per_run() -> int:
    value = os.environ.get(PARTITIONS_PER_RUN_ENV, "2000")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{PARTITIONS_PER_RUN_ENV}={value!r}: expected a whole number of zip codes, at least 1")
    return int(value)


PARTITIONS_PER_RUN = _partitions_per_run()

# Run tag selecting debug mode (run everything, write nothing); see zip_etl/jobs.py.
MODE_TAG = "zip_etl/mode"
DEBUG_MODE = "debug"

# Bump when the cleaning rules change: every partition then shows stale and the refresh rebuilds it.
CLEANING_CODE_VERSION = "1"


@dg.observable_source_asset(
    partitions_def=zip_code_partitions,
    description=(
        "Company records as they arrive from upstream: text columns, dirty. Loaded outside Dagster "
        "(`zip-etl seed` writes demo data). Each row's `zip_code` is its partition. Observing it "
        "computes every zip code's data version (row count + md5 of raw_id/updated_at) in one query "
        "and records the zip codes whose version changed since the last observation."
    ),
    group_name="companies",
    metadata={
        "dagster/table_name": f"{RAW_COMPANIES.schema}.{RAW_COMPANIES.name}",
        "dagster/column_schema": dagster_table_schema(RAW_COMPANIES),
    },
)
def raw_companies(context: dg.OpExecutionContext, postgres: PostgresResource) -> dg.DataVersionsByPartition:
    """Only changed versions are recorded: Dagster keeps the latest observation per partition, so
    re-recording 41,749 unchanged versions on every observation would add nothing but events. They
    are recorded here as one batch (returned, Dagster would store them one INSERT at a time: minutes
    for the first observation of 41,749 zip codes), so the DataVersionsByPartition returned is empty."""
    from zip_etl.refresh import changed_raw_versions

    changed = changed_raw_versions(context.instance, context.asset_key, postgres)
    # Building the events records them (Dagster logs a DagsterEvent as it is created).
    batched_events(
        context,
        [
            dg.AssetObservation(asset_key=context.asset_key, partition=z, tags={DATA_VERSION_TAG: v})
            for z, v in changed.items()
        ],
    )
    context.log.info(f"{len(changed):,} zip code(s) with a new raw data version")
    return dg.DataVersionsByPartition({})


CLEANED_COMPANIES_DESCRIPTION = """\
Company records from `raw_companies`, one partition per active US zip code (41,749), cleaned by
plain pandas in `zip_etl/transform/cleaning.py` and written with one `COPY` per run.

**Cleaning rules** (in order; each rule's details are in the module's docstring):

0. Rows with text that is not valid UTF-8 are **rejected** (`invalid_encoding`).
1. Text normalised: Unicode NFC, control characters removed, whitespace collapsed and trimmed,
   empty -> NULL; city title-cased; state as a USPS code; industry mapped to a canonical label;
   record ids upper-cased.
2. Rows without a record id or a company name, or with a record id over 200 characters, are
   **rejected** (`missing_record_id`, `missing_company_name`, `record_id_too_long`).
3. The address's postal code (`12345`, `12345-6789`, `501` ...) must match the partition's zip code,
   else the row is **rejected** (`zip_mismatch` / `invalid_postal_code`); the +4 part becomes `zip4`.
4. Phones to E.164 (`+1NXXNXXXXXX`), unparseable ones to NULL.
5. Employees, revenue (`$1.2M`, `45K`), founded year parsed and range-checked, else NULL.
6. Duplicates (same zip code and record id): the latest update is kept, the others **rejected**
   (`duplicate`).
7. Dtypes downcast (smallest integer types, categoricals) before writing.

**Per partition** (Partitions tab; numeric, so Overview -> Metadata -> Plots -> Events charts
them over the latest materializations): `dagster/row_count` and `rows_out` (rows written),
`rows_in`, `rows_rejected` and one `rejected_<reason>` count per reason, `memory_raw_bytes` /
`memory_cleaned_bytes` (the zip code's share of the in-memory frame before and after cleaning and
downcasting); and from its run: `read_seconds`, `transform_seconds`, `write_seconds`,
`peak_process_memory_mb`, `rows_written`, `rows_quarantined` and `quarantine_table`. A batched run
(a backfill range) also reports its totals as `run_*`.

**Related tables**
- Rejected rows, with their reason and original values, written in the same transaction as the
  partition (rows in = rows out + rows rejected): `<target_schema>.cleaned_companies_quarantine`
  (`public` by default, `zip_etl_test` in test mode).
- Source of truth for the test partitions: `zip_etl_test.cleaned_companies_truth`, compared by the
  `matches_truth` check of `test/cleaned_companies` (code location `zip_etl_test`).

Checks run after every materialization over the run's zip codes, or over the whole table from the
Checks tab ("Execute all")."""


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _partition_metadata(row, share: float, raw_bytes: int, cleaned_bytes: int) -> dict:
    return {
        "dagster/row_count": row.rows_out,
        "rows_in": row.rows_in,
        "rows_out": row.rows_out,
        "rows_rejected": row.rows_rejected,
        **{f"rejected_{reason}": getattr(row, f"rejected_{reason}") for reason in REJECTION_REASONS},
        # Memory is measured on the run's whole frame; each zip code's share is by rows.
        "memory_raw_bytes": int(raw_bytes * share),
        "memory_cleaned_bytes": int(cleaned_bytes * share),
    }


@dataclass
class CleanedBatch:
    """A run's zip codes read and cleaned: the merged result, and the zip codes that failed."""

    result: CleaningResult
    failures: dict[str, str]
    stats: pd.DataFrame  # per zip code that cleaned: rows in/out/rejected by reason
    raw_bytes: int
    raw_versions: dict[str, str]  # data version of each zip code read, from the same snapshot as its rows
    chunks: int
    read_seconds: float
    transform_seconds: float


def read_and_clean(postgres: PostgresResource, zip_codes: list[str]) -> CleanedBatch:
    """Read and clean `zip_codes` in chunks that fit `postgres.max_rows_in_memory`.

    Rows are counted first (one query on the zip-code index), so a zip code too large for the
    budget fails alone before anything is read, and a run whose zip codes together exceed it is
    read and cleaned a chunk at a time: only the cleaned (downcast) rows accumulate.
    """
    budget = postgres.max_rows_in_memory
    counts = postgres.count_raw(zip_codes)
    failures = {
        zip_code: (
            f"MemoryBudgetExceeded: {n:,} raw rows, more than max_rows_in_memory={budget:,} of the postgres "
            "resource; not read. Raise it where the machine has the memory (see `zip-etl sizing`)."
        )
        for zip_code, n in counts.items()
        if n > budget
    }
    fitting = [z for z in zip_codes if z not in failures]
    results, stats = [], []
    raw_versions: dict[str, str] = {}
    raw_bytes = 0
    read_seconds = transform_seconds = 0.0
    chunks = partition_ranges(fitting, max(len(fitting), 1), counts, budget)
    for chunk in chunks:
        started = time.perf_counter()
        raw, versions = postgres.read_raw_with_versions(chunk)
        raw_versions.update(versions)
        read_seconds += time.perf_counter() - started
        started = time.perf_counter()
        result, chunk_failures = clean_isolating_failures(raw, chunk)
        transform_seconds += time.perf_counter() - started
        failures.update(chunk_failures)
        good_raw = raw[~raw["zip_code"].isin(list(chunk_failures))] if chunk_failures else raw
        stats.append(partition_stats(good_raw, result))
        raw_bytes += frame_bytes(good_raw)
        results.append(result)
        del raw, good_raw
    if not results:  # every zip code over the budget: nothing was read
        empty = pd.DataFrame({column: pd.Series(dtype=object) for column in RAW_COLUMNS})
        results.append(clean_companies(empty))
        stats.append(partition_stats(empty, results[0]))
    good = [z for z in zip_codes if z not in failures]
    return CleanedBatch(
        result=merge_results(results),
        failures=failures,
        stats=pd.concat(stats).reindex(good, fill_value=0),
        raw_bytes=raw_bytes,
        raw_versions=raw_versions,
        chunks=len(chunks),
        read_seconds=read_seconds,
        transform_seconds=transform_seconds,
    )


@dg.asset(
    partitions_def=zip_code_partitions,
    deps=[raw_companies],
    io_manager_key="postgres_io_manager",
    output_required=False,  # a debug (dry-run) run records observations and writes nothing
    group_name="companies",
    kinds={"pandas", "postgres"},
    code_version=CLEANING_CODE_VERSION,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_RUN),
    # A lost connection or a restarting server is worth another try: 2 s, 4 s, 8 s later. Errors that
    # cannot fix themselves (bad credentials, missing table, bad data) raise Failure(allow_retries=False).
    retry_policy=dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
    description=CLEANED_COMPANIES_DESCRIPTION,
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
    """Clean the run's zip codes (see CLEANED_COMPANIES_DESCRIPTION, shown in the UI). Rejected rows
    go to `cleaned_companies_quarantine` with the reason and their original values, in the same
    transaction, so per zip code rows in = rows out + rows quarantined.

    A run covers a range of zip codes. If cleaning raises for some of them, the others are still
    written and marked materialized; the run then fails naming the zip codes that failed."""
    zip_codes = list(context.partition_keys)
    with failures_explained():
        batch = read_and_clean(postgres, zip_codes)
    result, failures = batch.result, batch.failures

    good = list(batch.stats.index)  # the zip codes that cleaned, in run order
    cleaned_bytes = frame_bytes(result.cleaned)
    rows_in_total = max(int(batch.stats["rows_in"].sum()), 1)
    per_partition = {
        zip_code: {
            **_partition_metadata(row, row.rows_in / rows_in_total, batch.raw_bytes, cleaned_bytes),
            "raw_data_version": batch.raw_versions[zip_code],
        }
        for zip_code, row in zip(good, batch.stats.itertuples())
    }
    # Dagster copies the run's metadata onto every partition's materialization; in a one-zip-code
    # run the run's totals are the zip code's own, so they are left out there.
    run_totals = {
        "run_partitions": len(zip_codes),
        "run_rows_in": int(batch.stats["rows_in"].sum()),
        "run_rows_out": len(result.cleaned),
        "run_rows_rejected": len(result.rejected),
        "run_chunks": batch.chunks,
    }
    run_metadata = {
        **(run_totals if len(zip_codes) > 1 else {}),
        "memory_saved_pct": round(100 * (1 - cleaned_bytes / batch.raw_bytes), 1) if batch.raw_bytes else 0.0,
        "peak_process_memory_mb": _peak_rss_mb(),
        "read_seconds": round(batch.read_seconds, 4),
        "transform_seconds": round(batch.transform_seconds, 4),
        # Which machine and process ran this range (several, in a distributed deployment).
        "worker": f"{socket.gethostname()} pid {os.getpid()}",
    }
    context.log.info(
        f"{len(zip_codes)} zip code(s) in {batch.chunks} chunk(s): {run_totals['run_rows_in']} rows in, "
        f"{len(result.cleaned)} out, {len(result.rejected)} quarantined, {len(failures)} failed; memory "
        f"{batch.raw_bytes:,} -> {cleaned_bytes:,} bytes; values unparseable (set to NULL): {result.unparseable}"
    )

    dry_run = postgres_io_manager.dry_run or context.run.tags.get(MODE_TAG) == DEBUG_MODE
    if dry_run:
        # Debug mode: the full read and transform ran; record what they found as observations. The
        # partitions stay as they were: not materialized, nothing written, no table created. Each
        # observation restates the partition's current data version (unchanged, since nothing was
        # written), so the refresh does not mistake a debugged partition for an unknown one.
        recorded = latest_data_versions(context.instance, context.asset_key, dg.DagsterEventType.ASSET_OBSERVATION, good)
        yield from batched_events(
            context,
            [
                dg.AssetObservation(
                    asset_key=context.asset_key,
                    partition=z,
                    metadata={**metadata, "dry_run": True},
                    tags={DATA_VERSION_TAG: recorded[z]} if z in recorded else None,
                )
                for z, metadata in per_partition.items()
            ],
        )
    else:
        raw_key = raw_dependency(context.assets_def, context.asset_key)
        code_version = context.assets_def.code_versions_by_key[context.asset_key] or CLEANING_CODE_VERSION
        provenance = {z: provenance_tags(raw_key, batch.raw_versions[z], code_version) for z in good}
        if not failures:
            for zip_code, metadata in per_partition.items():
                context.add_asset_metadata(metadata, partition_key=zip_code)
            yield dg.Output(WithQuarantine(result.cleaned, result.rejected), metadata=run_metadata)
        else:
            # Some zip codes failed: write the others now (the same atomic replace the IO manager does
            # on output) and mark each of them materialized; the failure below names the rest.
            table = postgres_io_manager.table_for(context.asset_key, context.assets_def.metadata_by_key[context.asset_key])
            if good:
                started = time.perf_counter()
                with failures_explained():
                    postgres_io_manager.write_partitions(table, good, result.cleaned, result.rejected)
                run_metadata["write_seconds"] = round(time.perf_counter() - started, 4)
            yield from batched_events(
                context,
                [
                    dg.AssetMaterialization(
                        asset_key=context.asset_key,
                        partition=z,
                        metadata={**run_metadata, **per_partition[z], "dagster/table_name": f"{table.schema}.{table.name}"},
                        tags=provenance[z],
                    )
                    for z in good
                ],
            )
        # Each written partition's data provenance: the raw data version it was built from. Dagster
        # gives every partition of an Output the same tags, so the per-partition provenance follows
        # as one batch of observations (zip_etl/refresh.py reads them; so does Dagster's stale status).
        yield from batched_events(
            context,
            [dg.AssetObservation(asset_key=context.asset_key, partition=z, tags=provenance[z]) for z in good],
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
