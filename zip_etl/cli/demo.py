"""`zip-etl demo`: seed demo data and materialize every zip code of `cleaned_companies` through Dagster."""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from zip_etl.partitions import ZIP_CODES


@dataclass
class RangeResult:
    first: str
    last: str
    partitions: int
    success: bool
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    seconds: float = 0.0
    error: str = ""


def partition_ranges(keys: list[str], per_run: int) -> list[tuple[str, str, int]]:
    """Contiguous (first, last, count) ranges of `keys`, at most `per_run` keys each."""
    return [
        (keys[i], keys[min(i + per_run, len(keys)) - 1], min(per_run, len(keys) - i))
        for i in range(0, len(keys), per_run)
    ]


def materialize_range(first: str, last: str, count: int) -> RangeResult:
    """One Dagster run of `cleaned_companies` over the zip codes first..last, recorded in the instance."""
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    from zip_etl.definitions import defs
    from zip_etl.instance import get_instance

    started = time.perf_counter()
    job = defs.resolve_implicit_global_asset_job_def()
    with get_instance() as instance:
        try:
            result = job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey("cleaned_companies")],
                tags={ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
                raise_on_error=False,
                # Events are stored in full either way; the terminal only needs warnings.
                run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            )
        except Exception as error:  # noqa: BLE001 - report, keep the other ranges going
            return RangeResult(first, last, count, False, seconds=time.perf_counter() - started, error=str(error))
        seconds = time.perf_counter() - started
        if not result.success:
            failure = next((e for e in result.all_events if e.is_step_failure), None)
            message = failure.step_failure_data.error.message.strip() if failure else "run failed"
            return RangeResult(first, last, count, False, seconds=seconds, error=message)
        events = result.asset_materializations_for_node("cleaned_companies")
        metadata = events[0].metadata if events else {}

        def value(key: str) -> int:
            return int(getattr(metadata.get(key), "value", 0) or 0)

        return RangeResult(
            first, last, count, True,
            rows_in=value("run_rows_in"), rows_out=value("run_rows_out"),
            rows_rejected=value("run_rows_rejected"), seconds=seconds,
        )


def run_backfill(keys: list[str], *, per_run: int, workers: int, out=sys.stdout) -> list[RangeResult]:
    ranges = partition_ranges(keys, per_run)
    results: list[RangeResult] = []
    started = time.perf_counter()
    done_partitions = 0
    print(f"Materializing {len(keys):,} zip codes in {len(ranges)} runs, {workers} at a time", file=out, flush=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(materialize_range, *r) for r in ranges]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            done_partitions += result.partitions
            status = "ok" if result.success else f"FAILED: {result.error}"
            print(
                f"[{len(results)}/{len(ranges)} runs, {done_partitions:,}/{len(keys):,} zip codes, "
                f"{time.perf_counter() - started:.0f}s] {result.first}..{result.last}: "
                f"{result.rows_in:,} rows in, {result.rows_out:,} out, {result.rows_rejected:,} rejected "
                f"({result.seconds:.1f}s) {status}",
                file=out,
                flush=True,
            )
    return results


def demo(
    rows: int, *, reseed: bool, per_run: int, workers: int | None, seed: int, zip_codes: int | None = None
) -> int:
    from zip_etl.cli.seed import seed_raw_table
    from zip_etl.db.connection import DATABASE_URL_ENV, embedded_data_dir, etl_database_url, redact_url
    from zip_etl.db.tables import table_exists
    from zip_etl.db.connection import transaction
    from zip_etl.tables import RAW_COMPANIES

    workers = workers or os.cpu_count() or 1
    where = (
        redact_url(os.environ[DATABASE_URL_ENV])
        if os.environ.get(DATABASE_URL_ENV)
        else f"embedded PostgreSQL in {embedded_data_dir()}"
    )
    print(f"Database: {where}", flush=True)
    url = etl_database_url()
    with transaction(url) as cursor:
        exists = table_exists(cursor, RAW_COMPANIES.schema, RAW_COMPANIES.name)
    if reseed or not exists:
        seed_raw_table(rows=rows, seed=seed)
    else:
        print("Raw table present; reusing it (pass --reseed to regenerate).", flush=True)

    started = time.perf_counter()
    keys = ZIP_CODES[:zip_codes] if zip_codes else ZIP_CODES
    results = run_backfill(keys, per_run=per_run, workers=workers)
    seconds = time.perf_counter() - started
    done = sum(r.partitions for r in results if r.success)
    failed = [r for r in results if not r.success]
    rows_in = sum(r.rows_in for r in results)
    rows_out = sum(r.rows_out for r in results)
    rejected = sum(r.rows_rejected for r in results)
    print(
        "\nSummary\n"
        f"  zip codes done:   {done:,} of {len(keys):,} ({sum(r.partitions for r in failed):,} failed)\n"
        f"  rows in:          {rows_in:,}\n"
        f"  rows out:         {rows_out:,}\n"
        f"  rows rejected:    {rejected:,}\n"
        f"  time:             {seconds:.1f}s ({rows_in / seconds if seconds else 0:,.0f} rows/s)\n"
        "  Browse the runs:  dagster dev   (then open http://localhost:3000)",
        flush=True,
    )
    for r in failed:
        print(f"  FAILED {r.first}..{r.last}: {r.error}", flush=True)
    return 1 if failed else 0
