"""`zip-etl bench --distributed`: the same backfill on the Celery deployment with 1, 2, ... workers.

Each worker count gets a fresh `LocalCeleryCluster` (Redis, the workers, `dagster dev` with
deploy/celery/dagster.yaml) on this machine, and the same raw table in databases of its own on the
configured server (`zip_etl_bench_cluster` for the ETL, `dagster_bench_cluster` for Dagster), so a
user's tables and runs are not touched. Timed from the backfill's launch to its end, through the
webserver's API, as a user launching it from the UI would see it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from zip_etl import settings
from zip_etl.db.connection import ensure_database, etl_database_url, transaction
from zip_etl.demo_data import generate_raw_companies, write_raw_companies
from zip_etl.partitions import ZIP_CODES

ETL_DATABASE = "zip_etl_bench_cluster"
DAGSTER_DATABASE = "dagster_bench_cluster"


@dataclass
class ClusterMeasurement:
    workers: int
    isolated: bool
    seconds: float  # backfill launch -> backfill done
    span: float  # first run's start -> last run's end
    runs: int
    run_seconds: float  # sum of the runs' durations: worker-seconds spent in runs
    rows_in: int
    rows_out: int
    raw_bytes: int

    @property
    def rows_per_second(self) -> float:
        return self.rows_in / self.seconds

    @property
    def rows_per_worker_second(self) -> float:
        return self.rows_in / self.run_seconds

    @property
    def raw_mb_per_worker_second(self) -> float:
        return self.raw_bytes / 2**20 / self.run_seconds


def _seed(etl_url: str, rows: int, zip_codes: int | None) -> tuple[list[str], int, int]:
    keys = ZIP_CODES if zip_codes is None else ZIP_CODES[:zip_codes]
    print(f"  seeding {rows:,} rows over {len(keys):,} zip codes into {ETL_DATABASE}.public.raw_companies ...",
          flush=True)
    write_raw_companies(etl_url, generate_raw_companies(rows, keys, seed=2026))
    with transaction(etl_url) as cursor:
        cursor.execute("SELECT count(*), pg_relation_size('public.raw_companies') FROM public.raw_companies")
        count, raw_bytes = cursor.fetchone()
    return list(keys), count, raw_bytes


def measure(workers: int, keys: list[str], rows_in: int, raw_bytes: int, env: dict,
            partitions_per_run: int) -> ClusterMeasurement:
    from dagster import RunsFilter

    from zip_etl_tools.local_cluster import LocalCeleryCluster

    with transaction(env[settings.DATABASE_URL]) as cursor:
        cursor.execute("DROP TABLE IF EXISTS public.cleaned_companies")
    with LocalCeleryCluster(workers, env, partitions_per_run=partitions_per_run) as cluster:
        print(f"  {workers} worker(s) up ({'network namespaces' if cluster.isolate else 'loopback'}); backfilling ...",
              flush=True)
        started = time.perf_counter()
        backfill_id = cluster.dagster.launch_backfill(keys)
        backfill = cluster.dagster.wait_for_backfill(backfill_id, timeout=3600, poll_seconds=0.5)
        seconds = time.perf_counter() - started
        if backfill["status"] not in {"COMPLETED", "COMPLETED_SUCCESS"}:
            raise RuntimeError(f"backfill with {workers} worker(s) ended {backfill['status']}; logs: {cluster.workdir}")
        with cluster.instance() as instance:
            records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
        if not records or not all(r.start_time and r.end_time for r in records):
            raise RuntimeError(f"backfill {backfill_id}: runs without start/end times: {records}")
        run_seconds = sum(r.end_time - r.start_time for r in records)
        span = max(r.end_time for r in records) - min(r.start_time for r in records)
    with transaction(env[settings.DATABASE_URL]) as cursor:
        cursor.execute("SELECT count(*) FROM public.cleaned_companies")
        rows_out = cursor.fetchone()[0]
    return ClusterMeasurement(workers, cluster.isolate, seconds, span, len(records), run_seconds, rows_in, rows_out,
                              raw_bytes)


def format_table(results: list[ClusterMeasurement], zip_codes: int, partitions_per_run: int) -> str:
    first = results[0]
    lines = [
        f"### Celery deployment: {first.rows_in:,} rows ({first.raw_bytes / 2**20:,.0f} MiB raw heap) over "
        f"{zip_codes:,} zip codes, {partitions_per_run:,} zip codes per run",
        "",
        "| workers | hosts | runs | seconds, launch to done | rows/s | speed-up | seconds, first run start to last run end | speed-up | worker-seconds in runs | rows per worker-second | raw MiB per worker-second |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in results:
        lines.append(
            f"| {m.workers} | {'own netns each' if m.isolated else 'loopback'} | {m.runs} | {m.seconds:,.1f} | "
            f"{m.rows_per_second:,.0f} | {first.seconds / m.seconds:.2f}× | {m.span:,.1f} | {first.span / m.span:.2f}× | "
            f"{m.run_seconds:,.1f} | "
            f"{m.rows_per_worker_second:,.0f} | {m.raw_mb_per_worker_second:.2f} |"
        )
    lines += ["", f"- rows written: {', '.join(f'{m.rows_out:,} ({m.workers} worker(s))' for m in results)}"]
    return "\n".join(lines)


def bench_distributed(worker_counts: list[int], *, rows: int, zip_codes: int | None, partitions_per_run: int,
                      output, command: str) -> int:
    from zip_etl_tools.bench.command import machine_description, write_report

    machine = machine_description()
    print(f"Machine: {machine}", flush=True)
    server = etl_database_url()
    env = {**os.environ, settings.DATABASE_URL: ensure_database(server, ETL_DATABASE),
           settings.DAGSTER_DATABASE_URL: ensure_database(server, DAGSTER_DATABASE)}
    keys, rows_in, raw_bytes = _seed(env[settings.DATABASE_URL], rows, zip_codes)
    results = []
    for workers in worker_counts:
        results.append(measure(workers, keys, rows_in, raw_bytes, env, partitions_per_run))
        print(f"  {workers} worker(s): {results[-1].seconds:.1f} s, load average now "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    table = format_table(results, len(keys), partitions_per_run)
    table += f"\n- load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    print("\n" + table, flush=True)
    if output:
        # One section per data size, so that runs on different sizes sit side by side.
        marker = f"zip-etl bench --distributed, {rows_in:,} rows over {len(keys):,} zip codes"
        write_report(output, command, machine, [table], marker=marker)
        print(f"\nWritten to {output}", flush=True)
    return 0
