"""`zip-etl bench --distributed`: the same backfill on the Celery deployment with 1, 2, 3 ... workers.

For each shape (few-large, many-small; `--scale` shrinks them as for `zip-etl bench`) the raw rows are
seeded once into `public.raw_companies` of a database of its own on the configured server
(`zip_etl_bench_cluster`; Dagster's storage in `dagster_bench_cluster`), so a user's tables and runs
are not touched. Each worker count then gets a fresh `LocalCeleryCluster` (Redis, the workers, each in
its own network namespace when run as root, `dagster dev` with deploy/celery/dagster.yaml), the
cleaned table is dropped, and one backfill of every zip code of the shape is launched through the
webserver's API and timed to its end, as a user launching it from the UI would see it.

Measured per worker count: the seconds from launch to done and from the first run's start to the last
run's end; the runs each worker executed; CPU seconds of the workers (each worker's process tree,
its ended run processes included), of PostgreSQL (the server's process tree: the ETL's reads and
writes and Dagster's storage, both on it) and of `dagster dev` (webserver, daemon, code server). On
one machine the wall time cannot scale with workers; what the figures show is that the work is
spread, that CPU per row stays flat as workers are added, and where the server's share goes.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import dataclass

from psycopg2 import sql

from zip_etl import settings
from zip_etl.db.connection import ensure_database, etl_database_url, transaction
from zip_etl.resources.writer import target_totals
from zip_etl.tables import CLEANED_TARGET
from zip_etl_tools.bench.cpu import postmaster_pid, process_tree_cpu
from zip_etl_tools.bench.shapes import SHAPES, Shape, seed

ETL_DATABASE = "zip_etl_bench_cluster"
DAGSTER_DATABASE = "dagster_bench_cluster"
DISTRIBUTED_SHAPES = ("few-large", "many-small")
# Runs a backfill of a shape is cut into when a backfill's default (2,000 zip codes a run) would give
# fewer: few-large's 100 zip codes would be one run, which no second worker could share.
MIN_RUNS = 12


@dataclass
class ClusterMeasurement:
    workers: int
    isolated: bool
    seconds: float  # backfill launch -> backfill done
    span: float  # first run's start -> last run's end
    runs: int
    runs_per_worker: dict[str, int]
    worker_cpu: float | None
    server_cpu: float | None
    control_cpu: float | None  # dagster dev: webserver, daemon, code server
    rows_in: int
    rows_out: int
    rows_quarantined: int
    load: str = ""  # the 1-minute load average when the backfill ended

    def per_row_us(self, cpu: float | None) -> str:
        return "n/a" if cpu is None else f"{1e6 * cpu / self.rows_in:.2f}"


def partitions_per_run(zip_codes: int) -> int:
    """A backfill's default cut, unless it would give fewer than MIN_RUNS runs."""
    return max(1, min(settings.partitions_per_run(), math.ceil(zip_codes / MIN_RUNS)))


def _cpu(pids: list[int | None]) -> float | None:
    values = [process_tree_cpu(pid) for pid in pids]
    return None if any(v is None for v in values) else sum(values)


def _runs_per_worker(instance, run_ids: list[str]) -> dict[str, int]:
    """Runs per worker host, from the `worker` each run's observation of its facts names ("host pid N")."""
    from dagster import DagsterEventType

    hosts: Counter = Counter()
    for run_id in run_ids:
        for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_OBSERVATION):
            metadata = record.dagster_event.asset_observation_data.asset_observation.metadata
            if "worker" in metadata:
                hosts[str(metadata["worker"].value).split(" pid ")[0]] += 1
                break
    return dict(sorted(hosts.items()))


def measure(workers: int, keys: list[str], rows_in: int, env: dict, per_run: int) -> ClusterMeasurement:
    from dagster import RunsFilter

    from zip_etl_tools.bench.command import load_1m
    from zip_etl_tools.local_cluster import LocalCeleryCluster

    etl_url = env[settings.DATABASE_URL]
    with transaction(etl_url) as cursor:  # a first build, every time
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(
            sql.SQL(", ").join(t.identifier for t in CLEANED_TARGET.tables)))
    server = postmaster_pid(etl_url)
    with LocalCeleryCluster(workers, env, partitions_per_run=per_run) as cluster:
        print(f"  {workers} worker(s) up ({'network namespaces' if cluster.isolate else 'loopback'}); backfilling "
              f"{len(keys):,} zip codes ...", flush=True)
        worker_pids = [w.process.pid for w in cluster.workers]
        control_pids = [cluster.dagster.pid]
        cpu_before = (_cpu(worker_pids), process_tree_cpu(server), _cpu(control_pids))
        started = time.perf_counter()
        backfill_id = cluster.dagster.launch_backfill(keys)
        backfill = cluster.dagster.wait_for_backfill(backfill_id, timeout=3600, poll_seconds=0.5)
        seconds = time.perf_counter() - started
        cpu_after = (_cpu(worker_pids), process_tree_cpu(server), _cpu(control_pids))
        if backfill["status"] not in {"COMPLETED", "COMPLETED_SUCCESS"}:
            raise RuntimeError(f"backfill with {workers} worker(s) ended {backfill['status']}; logs: {cluster.workdir}")
        with cluster.instance() as instance:
            records = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
            if not records or not all(r.start_time and r.end_time for r in records):
                raise RuntimeError(f"backfill {backfill_id}: runs without start/end times: {records}")
            per_worker = _runs_per_worker(instance, [r.dagster_run.run_id for r in records])
        span = max(r.end_time for r in records) - min(r.start_time for r in records)
    totals = target_totals(etl_url, CLEANED_TARGET)
    rows_out, quarantined = totals["rows"], totals["rows_quarantined"]
    cpu = [None if a is None or b is None else a - b for a, b in zip(cpu_after, cpu_before)]
    return ClusterMeasurement(workers, cluster.isolate, seconds, span, len(records), per_worker, *cpu, rows_in,
                              rows_out, quarantined, load=load_1m())


def format_table(shape: Shape, results: list[ClusterMeasurement], per_run: int, raw_bytes: int) -> str:
    first = results[0]
    lines = [
        f"### Celery deployment, {shape.name}: {shape.description} ({raw_bytes / 2**20:,.0f} MiB raw heap), "
        f"{per_run:,} zip codes per run",
        "",
        "| workers | hosts | runs | runs per worker | seconds, launch to done | seconds, first run start to last run end "
        "| workers CPU s | PostgreSQL CPU s | dagster dev CPU s | workers µs/row | PostgreSQL µs/row | load (1 min) |",
        "| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in results:
        spread = ", ".join(f"{n}" for n in m.runs_per_worker.values()) or "n/a"
        lines.append(
            f"| {m.workers} | {'own netns each' if m.isolated else 'loopback'} | {m.runs} | {spread} | "
            f"{m.seconds:,.1f} | {m.span:,.1f} | {_fmt(m.worker_cpu)} | {_fmt(m.server_cpu)} | {_fmt(m.control_cpu)} | "
            f"{m.per_row_us(m.worker_cpu)} | {m.per_row_us(m.server_cpu)} | {m.load} |"
        )
    lines += [
        "",
        "- rows in = written + quarantined: "
        + "; ".join(f"{m.rows_in:,} = {m.rows_out:,} + {m.rows_quarantined:,} ({m.workers} worker(s))" for m in results),
    ]
    if first.worker_cpu and first.server_cpu:
        lines.append(f"- one PostgreSQL core keeps about {first.worker_cpu / first.server_cpu:.1f} worker cores busy "
                     f"({first.workers} worker(s))")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def bench_distributed(worker_counts: list[int], *, shapes: list[str], scale: float, reseed: bool, output,
                      command: str) -> int:
    from zip_etl_tools.bench.command import machine_description, write_report

    machine = machine_description()
    print(f"Machine: {machine}", flush=True)
    server = etl_database_url()
    env = {**os.environ, settings.DATABASE_URL: ensure_database(server, ETL_DATABASE),
           settings.DAGSTER_DATABASE_URL: ensure_database(server, DAGSTER_DATABASE)}
    tables = []
    for name in shapes:
        shape = SHAPES[name].scaled(scale)
        counts = seed(shape, env[settings.DATABASE_URL], reseed=reseed, schema="public")
        with transaction(env[settings.DATABASE_URL]) as cursor:
            cursor.execute("SELECT pg_total_relation_size('public.raw_companies')")
            raw_bytes = cursor.fetchone()[0]
        keys, rows_in = shape.keys(), sum(counts.values())
        per_run = partitions_per_run(len(keys))
        results = []
        for workers in worker_counts:
            result = measure(workers, keys, rows_in, env, per_run)
            results.append(result)
            print(f"  {shape.name}, {workers} worker(s): {result.seconds:.1f} s, load {result.load}", flush=True)
        tables.append(format_table(shape, results, per_run, raw_bytes))
    text = "\n\n".join(tables) + f"\n\n- load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    print("\n" + text, flush=True)
    if output:
        write_report(output, command, machine, [text], marker="zip-etl bench --distributed")
        print(f"\nWritten to {output}", flush=True)
    return 0
