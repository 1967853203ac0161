"""`zip-etl bench`: time every way of doing the job on the same server and data, in one run.

Shapes: many-small (1,000,000 rows over all 41,749 active zip codes, skewed) and few-large
(5,000,000 rows over 100 zip codes). Each shape gets its own schema (`bench_many_small`, ...).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import time
from pathlib import Path

from zip_etl.cli.local_runs import Target, run_backfill
from zip_etl.partitions import ZIP_CODES, partition_ranges
from zip_etl_tools.bench.methods import (
    Measurement,
    data_floor,
    downcast_saving,
    read_paths,
    seed_approach,
    to_sql_sample,
)
from zip_etl.db.connection import etl_database_url, transaction
from zip_etl.demo_data import generate_raw_companies, write_raw_companies

SHAPES = {
    "many-small": {"rows": 1_000_000, "zip_codes": None},
    "few-large": {"rows": 5_000_000, "zip_codes": 100},
}


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        import psutil

        memory = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        pass
    load = ", load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{platform.machine()}, {os.cpu_count()} cores ({cpu}){memory}, Python {platform.python_version()}{load}"


def _seed(schema: str, rows: int, zip_codes: int | None) -> tuple[list[str], dict[str, int]]:
    from psycopg2 import sql

    from zip_etl.tables import RAW_COMPANIES

    # A contiguous block of the partition order: a backfill of them is a few tight ranges, as a
    # user's "these 100 zip codes" backfill would be if they were neighbours.
    middle = len(ZIP_CODES) // 2
    keys = ZIP_CODES if zip_codes is None else ZIP_CODES[middle : middle + zip_codes]
    print(f"  seeding {rows:,} rows over {len(keys):,} zip codes into {schema}.raw_companies ...", flush=True)
    raw = generate_raw_companies(rows, keys, seed=2026)
    with transaction(etl_database_url()) as cursor:
        cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    write_raw_companies(etl_database_url(), raw, RAW_COMPANIES.with_name(schema, "raw_companies"))
    counts = raw["zip_code"].value_counts().to_dict()
    return list(keys), {str(k): int(v) for k, v in counts.items()}


def _backfill(label: str, target: Target, ranges: list[list[str]], workers: int, rows: int) -> Measurement:
    started = time.perf_counter()
    results = run_backfill(ranges, workers=workers, target=target, out=_Quiet())
    seconds = time.perf_counter() - started
    failed = [r for r in results if not r.success]
    if failed:
        raise RuntimeError(f"{label}: {len(failed)} run(s) failed, e.g. {failed[0].first}..{failed[0].last}: {failed[0].error}")
    partitions = sum(len(r) for r in ranges)
    return Measurement(label, seconds, rows, note=f"{len(ranges)} runs, {workers} at a time, {partitions:,} partitions")


class _Quiet:
    """Progress lines of the runner, shortened to one line per tenth of the runs."""

    def __init__(self):
        self.lines = 0

    def write(self, text: str) -> None:
        if text.strip():
            self.lines += 1
            if self.lines % 5 == 1:
                print("   ", text.strip()[:120], flush=True)

    def flush(self) -> None:
        pass


def bench_shape(
    shape: str, *, workers: int, seed_sample: int, to_sql_rows: int, max_rows_per_run: int, scale: float = 1.0
) -> tuple[list[Measurement], dict]:
    spec = {**SHAPES[shape], "rows": int(SHAPES[shape]["rows"] * scale)}
    schema = "bench_" + shape.replace("-", "_")
    print(f"\n== {shape}", flush=True)
    keys, rows_per_key = _seed(schema, spec["rows"], spec["zip_codes"])
    total_rows = sum(rows_per_key.values())
    from zip_etl import settings

    ranges = partition_ranges(keys, settings.partitions_per_run(), rows_per_key, max_rows_per_run)
    # at least one run per worker, so every core has work
    while len(ranges) < workers and any(len(r) > 1 for r in ranges):
        biggest = max(ranges, key=len)
        i = ranges.index(biggest)
        ranges[i : i + 1] = [biggest[: len(biggest) // 2], biggest[len(biggest) // 2 :]]

    resources = (("postgres", (("raw_schema", schema),)), ("postgres_io_manager", (("target_schema", schema),)))
    results = []
    print("  data floor ...", flush=True)
    results.append(data_floor(schema))
    print("  orchestration floor (no-op asset, same runs) ...", flush=True)
    results.append(_backfill("orchestration floor: no-op asset, same batching, runs and storage",
                             Target("orchestration_floor", "zip_etl_tools.bench.orchestration_floor:defs"),
                             ranges, workers, total_rows))
    print("  zip_etl backfill through Dagster ...", flush=True)
    results.append(_backfill("zip_etl: Dagster backfill, COPY read, pandas clean, COPY IO manager",
                             Target("cleaned_companies", "zip_etl.definitions:defs", resources),
                             ranges, workers, total_rows))
    print("  seed's approach ...", flush=True)
    # Every k-th zip code: empty ones included in proportion, so the linear projection is fair.
    sample = keys[:: max(1, len(keys) // seed_sample)][:seed_sample]
    results.append(seed_approach(schema, sample, len(keys), workers))
    print("  pandas.to_sql sample ...", flush=True)
    results.append(to_sql_sample(schema, to_sql_rows, total_rows))
    print("  read paths and downcasting ...", flush=True)
    reads = read_paths(schema)
    memory = downcast_saving(schema)
    return results, {"schema": schema, "rows": total_rows, "zip_codes": len(keys), "runs": len(ranges),
                     "reads": reads, "memory": memory}


def format_table(shape: str, results: list[Measurement], info: dict) -> str:
    floor = results[0].seconds
    orchestration = results[1].seconds
    lines = [
        f"### {shape}: {info['rows']:,} rows over {info['zip_codes']:,} zip codes",
        "",
        "| method | seconds | rows/s | × data floor | note |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for m in results:
        lines.append(
            f"| {m.method} | {m.seconds:,.1f} | {m.rows_per_second:,.0f} | {m.seconds / floor:,.1f} | {m.note} |"
        )
    zip_etl_seconds = results[2].seconds
    lines += [
        "",
        f"- zip_etl / (data floor + orchestration floor) = {zip_etl_seconds / (floor + orchestration):.2f}",
        f"- zip_etl / data floor = {zip_etl_seconds / floor:.2f}",
        f"- seed's approach / zip_etl = {results[3].seconds / zip_etl_seconds:.1f}×",
        f"- Dagster bookkeeping per partition (orchestration floor / partitions) = "
        f"{1000 * orchestration / info['zip_codes']:.2f} ms",
    ]
    read_sql, copy = info["reads"]
    raw_bytes, before, after = info["memory"]
    lines += [
        "",
        "| reading the whole raw table into pandas | seconds | rows/s |",
        "| --- | ---: | ---: |",
        *[f"| {m.method} | {m.seconds:,.1f} | {m.rows_per_second:,.0f} |" for m in (read_sql, copy)],
        "",
        f"- COPY reader is {read_sql.seconds / copy.seconds:.1f}× faster than pandas.read_sql",
        f"- memory: raw rows as read {raw_bytes / 2**20:,.0f} MiB; cleaned before downcasting "
        f"{before / 2**20:,.0f} MiB; after {after / 2**20:,.0f} MiB "
        f"({100 * (1 - after / raw_bytes):.0f}% less than raw, {100 * (1 - after / before):.0f}% less than "
        "cleaned-not-downcast)",
    ]
    return "\n".join(lines)


def write_report(path: Path, command: str, machine: str, tables: list[str], marker: str = "zip-etl bench") -> None:
    """Replace the report's section between `<!-- {marker}: begin/end -->` (appended if missing)."""
    start, end = f"<!-- {marker}: begin -->", f"<!-- {marker}: end -->"
    block = "\n".join(
        [
            start,
            f"## `{command}` ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)",
            "",
            f"Machine: {machine}",
            "",
            *[t + "\n" for t in tables],
            end,
        ]
    )
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def bench(shapes: list[str], *, workers: int, seed_sample: int, to_sql_rows: int, max_rows_per_run: int,
          output: Path | None, command: str, scale: float = 1.0) -> int:
    machine = machine_description()
    print(f"Machine: {machine}", flush=True)
    tables = []
    for shape in shapes:
        results, info = bench_shape(shape, workers=workers, seed_sample=seed_sample, to_sql_rows=to_sql_rows,
                                    max_rows_per_run=max_rows_per_run, scale=scale)
        table = format_table(shape, results, info)
        print("\n" + table, flush=True)
        tables.append(table)
    if output:
        write_report(output, command, machine, tables)
        print(f"\nWritten to {output}", flush=True)
    return 0
