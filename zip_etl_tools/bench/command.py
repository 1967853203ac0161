"""`zip-etl bench`: every way of doing the job timed on the same server and data, in one run.

Per shape (zip_etl_tools/bench/shapes.py), in this order, on `<schema>.raw_companies`:

1. the data floor: binary `COPY (SELECT raw columns) TO STDOUT` with the bytes discarded, and the
   same bytes `COPY ... FROM STDIN` into an index-free copy of the table, each timed on its own;
2. the references, what one client does with the driver zip_etl uses: a plain ADBC read of the raw
   rows into Arrow, and one ADBC ingest of zip_etl's cleaned rows into an empty keyed copy of the
   cleaned table;
3. zip_etl's stages, each on its own in this process over every zip code: the read (the stream with a
   cleaning that keeps nothing), the transform, the write from the cleaned chunks held in memory (a
   first build into dropped tables, then a second build over its rows, and what that leaves behind),
   then the three overlapped as a run does them (a first build);
4. the orchestration floor: the same Dagster runs, ranges and storage for an asset that does nothing;
5. zip_etl through Dagster: the same runs of `cleaned_companies` (checks included), `workers` at a
   time, a first build and a second build over it;
6. the seed's approach (per zip code read_sql + clean + to_csv + copy_from in a process pool), on a
   sample, projected;
7. memory: raw and cleaned frames in memory; a run process's peak RSS per chunk (many-small); the
   1,000,000- and 5,000,000-row zip codes through `dagster asset materialize`, and the big zip code
   streamed against cleaned in one shot (skewed).

Each measurement records wall seconds, the CPU seconds of the processes that ran it and of the
PostgreSQL server's processes (zip_etl_tools/bench/cpu.py), and the load average when it ended.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from zip_etl.cli.local_runs import Target, run_backfill
from zip_etl.db.connection import etl_database_url
from zip_etl.partitions import partition_ranges
from zip_etl_tools.bench.cpu import CpuMeter
from zip_etl_tools.bench.methods import (
    FreshRun,
    Measurement,
    data_floor,
    drop_targets,
    frame_sizes,
    fresh_write,
    keyed_ingest,
    leftovers,
    materialize_one,
    plain_read,
    seed_approach,
    zip_etl_clean,
    zip_etl_one_process,
    zip_etl_read,
    zip_etl_write,
)
from zip_etl_tools.bench.shapes import SHAPES, Shape, seed

ROWS_OF_600_GB = 3.6e9  # the seed's table: 600 GB of raw rows is about 3.6 billion of them

# Every row of a shape's report, for the report's own test.
ROW_LABELS = [
    "data floor: binary COPY out",
    "data floor: binary COPY in",
    "data floor: out + in",
    "reference: plain ADBC read",
    "reference: ADBC ingest, keyed",
    "zip_etl read",
    "zip_etl transform",
    "zip_etl write, first build",
    "zip_etl write, second build",
    "zip_etl in one process",
    "orchestration floor",
    "zip_etl through Dagster, first build",
    "zip_etl through Dagster, second build",
    "seed's approach",
]
RATIO_LABELS = [
    "read / plain ADBC read",
    "write (first build) / keyed ingest",
    "after the second build",
    "zip_etl through Dagster / data floor",
    "zip_etl through Dagster / (data floor + orchestration floor)",
    "seed's approach / zip_etl through Dagster",
    "PostgreSQL CPU per row through Dagster / the data floor's",
    "orchestration floor per partition",
    "CPU per row through Dagster",
    "projected to 3.6 billion rows",
    "in memory",
]
MEMORY_LABELS = {
    "many-small": ["run process, one chunk of small zip codes"],
    "skewed": ["dagster asset materialize, the big zip code", "dagster asset materialize, the biggest zip code",
               "big zip code streamed", "big zip code in one shot"],
}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def load_1m() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import pandas as pd
    import psutil
    import pyarrow as pa

    from zip_etl.db.connection import connect

    conn = connect(etl_database_url())
    try:
        with conn.cursor() as cursor:
            cursor.execute("SHOW server_version")
            server = cursor.fetchone()[0]
    finally:
        conn.close()
    return (f"{platform.machine()}, {os.cpu_count()} cores ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM, "
            f"Python {platform.python_version()}, pandas {pd.__version__}, pyarrow {pa.__version__}, "
            f"PostgreSQL {server}")


@dataclass
class ShapeResult:
    shape: Shape
    zip_codes: int
    rows: int
    runs: int
    workers: int
    measurements: dict[str, Measurement] = field(default_factory=dict)
    loads: dict[str, str] = field(default_factory=dict)
    sizes: dict = field(default_factory=dict)
    left: dict = field(default_factory=dict)
    fresh: list[FreshRun] = field(default_factory=list)
    fresh_loads: list[str] = field(default_factory=list)

    def add(self, key: str, measurement: Measurement) -> None:
        self.measurements[key] = measurement
        self.loads[key] = load_1m()


class _Quiet:
    """Progress lines of the runner, one in five."""

    def __init__(self):
        self.lines = 0

    def write(self, text: str) -> None:
        if text.strip():
            self.lines += 1
            if self.lines % 5 == 1:
                print("   ", text.strip()[:120], flush=True)

    def flush(self) -> None:
        pass


def _backfill(label: str, target: Target, ranges: list[list[str]], workers: int, rows: int, meter: CpuMeter) -> Measurement:
    with meter.measure() as cpu:
        started = time.perf_counter()
        results = run_backfill(ranges, workers=workers, target=target, out=_Quiet())
        seconds = time.perf_counter() - started
    failed = [r for r in results if not r.success]
    if failed:
        raise RuntimeError(f"{label}: {len(failed)} run(s) failed, e.g. {failed[0].first}..{failed[0].last}: {failed[0].error}")
    partitions = sum(len(r) for r in ranges)
    return Measurement(label, seconds, rows, cpu.seconds,
                       note=f"{len(ranges)} runs, {workers} at a time, {partitions:,} partitions",
                       extra={"partitions": partitions})


def run_ranges(keys: list[str], workers: int, rows_per_key: dict[str, int], max_rows_per_run: int | None) -> list[list[str]]:
    """The runs a backfill makes (ranges of at most ZIP_ETL_PARTITIONS_PER_RUN zip codes), cut further
    until every worker has one."""
    from zip_etl import settings

    ranges = partition_ranges(keys, settings.partitions_per_run(), rows_per_key, max_rows_per_run)
    while len(ranges) < workers and any(len(r) > 1 for r in ranges):
        biggest = max(ranges, key=len)
        i = ranges.index(biggest)
        ranges[i : i + 1] = [biggest[: len(biggest) // 2], biggest[len(biggest) // 2 :]]
    return ranges


def bench_shape(shape: Shape, *, workers: int, seed_sample: int, max_rows_per_run: int | None, reseed: bool,
                workdir: Path) -> ShapeResult:
    url = etl_database_url()
    schema = shape.schema
    print(f"\n== {shape.name}: {shape.description} (load {load_average()})", flush=True)
    rows_per_key = seed(shape, url, reseed=reseed, out=lambda text: print(text, flush=True))
    keys = shape.keys()
    total_rows = sum(rows_per_key.values())
    ranges = run_ranges(keys, workers, rows_per_key, max_rows_per_run)
    result = ShapeResult(shape, len(keys), total_rows, len(ranges), workers)
    meter = CpuMeter(url)

    print(f"  data floor (load {load_average()}) ...", flush=True)
    out, into = data_floor(schema, url, meter, workdir)
    result.add("out", out)
    result.add("in", into)

    print(f"  reference: plain ADBC read (load {load_average()}) ...", flush=True)
    result.add("plain read", plain_read(schema, url, meter))

    print(f"  zip_etl read, transform, write, each on its own (load {load_average()}) ...", flush=True)
    result.add("read", zip_etl_read(schema, keys, meter))
    chunks, transform = zip_etl_clean(schema, keys)
    result.add("transform", transform)
    drop_targets(schema)  # a first build, as the seed's approach's
    result.add("write", zip_etl_write(schema, keys, chunks, meter, "zip_etl write, first build", total_rows))
    print(f"  reference: ADBC ingest, keyed (load {load_average()}) ...", flush=True)
    result.add("ingest", keyed_ingest(schema, url, meter))
    result.add("write again", zip_etl_write(schema, keys, chunks, meter, "zip_etl write, second build", total_rows))
    result.left = leftovers(schema, url, meter)
    del chunks
    print(f"  zip_etl in one process, overlapped (load {load_average()}) ...", flush=True)
    drop_targets(schema)
    result.add("one process", zip_etl_one_process(schema, keys, meter))

    print(f"  orchestration floor: no-op asset, {len(ranges)} runs (load {load_average()}) ...", flush=True)
    result.add("orchestration", _backfill(
        "orchestration floor: no-op asset, same runs, ranges and storage",
        Target("orchestration_floor", "zip_etl_tools.bench.orchestration_floor:defs"), ranges, workers, total_rows, meter))

    print(f"  zip_etl through Dagster: {len(ranges)} runs (load {load_average()}) ...", flush=True)
    drop_targets(schema)
    resources = (("postgres", (("raw_schema", schema),)), ("postgres_writer", (("target_schema", schema),)))
    target = Target("cleaned_companies", "zip_etl.definitions:defs", resources)
    result.add("dagster", _backfill("zip_etl through Dagster: runs of cleaned_companies, checks included",
                                    target, ranges, workers, total_rows, meter))
    print(f"  zip_etl through Dagster again, over its rows (load {load_average()}) ...", flush=True)
    result.add("dagster again", _backfill("zip_etl through Dagster, second build: the same runs over the first's rows",
                                          target, ranges, workers, total_rows, meter))

    # Every k-th zip code (empty ones included in proportion); the skewed shape adds its smaller big
    # zip code, so that rows of a big zip code are in the sample (the biggest would take minutes).
    big = shape.big_keys()
    small = [k for k in keys if k not in big]
    if shape.name == "many-small":
        sample, by = small[:: max(1, len(small) // seed_sample)][:seed_sample], "zip codes"
    else:
        count = max(1, min(seed_sample, len(small) // 5))
        sample, by = small[:: max(1, len(small) // count)][:count] + big[1:], "rows"
    print(f"  seed's approach on {len(sample):,} zip codes (load {load_average()}) ...", flush=True)
    result.add("seed", seed_approach(schema, url, sample, total_zip_codes=len(keys), total_rows=total_rows,
                                     workers=workers, meter=meter, by=by))

    print(f"  frames in memory (load {load_average()}) ...", flush=True)
    result.sizes = frame_sizes(schema, min(1_000_000, total_rows))

    from zip_etl.resources import PostgresResource

    chunk_rows = PostgresResource().reads().chunk_rows
    if shape.name == "many-small":
        # A range of small zip codes that fills one chunk, as `zip-etl sizing` samples them.
        full = partition_ranges(keys, len(keys), rows_per_key, chunk_rows)
        one_chunk = max(full[:-1] or full, key=lambda r: sum(rows_per_key.get(k, 0) for k in r))
        print(f"  run process memory, one chunk (load {load_average()}) ...", flush=True)
        _fresh(result, fresh_write(schema, one_chunk, None, "run process, one chunk of small zip codes"))
    if shape.name == "skewed":
        five, one = big
        for zip_code, label in ((one, "the big zip code"), (five, "the biggest zip code")):
            print(f"  dagster asset materialize --partition {zip_code} (load {load_average()}) ...", flush=True)
            run = materialize_one(schema, zip_code, rows_per_key.get(zip_code, 0),
                                  f"dagster asset materialize, {label} ({zip_code}), default settings")
            if not run.ok:
                raise RuntimeError(f"dagster asset materialize --partition {zip_code} failed:\n{run.error}")
            _fresh(result, run)
        n = rows_per_key.get(one, 0)
        print(f"  big zip code streamed vs one shot (load {load_average()}) ...", flush=True)
        _fresh(result, fresh_write(schema, [one], None, f"big zip code streamed ({one}), chunk_rows={chunk_rows:,} (default)"))
        _fresh(result, fresh_write(schema, [one], n + 1, f"big zip code in one shot ({one}), chunk_rows={n + 1:,}"))
    return result


def _fresh(result: ShapeResult, run: FreshRun) -> None:
    result.fresh.append(run)
    result.fresh_loads.append(load_1m())


def _core_hours(us_per_row: float) -> float:
    return ROWS_OF_600_GB * us_per_row / 1e6 / 3600


def _cpu(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def _cpu_ratio(a: Measurement, b: Measurement) -> str:
    """The ratio of two measurements' CPU seconds, run processes and PostgreSQL together."""
    if a.cpu is None or b.cpu is None or a.cpu.server is None or b.cpu.server is None:
        return "n/a"
    return f"{(a.cpu.client + a.cpu.server) / (b.cpu.client + b.cpu.server):.2f}"


def _row(label: str, m: Measurement, load: str, floor: float) -> str:
    client = server = None
    if m.cpu is not None:
        client, server = m.cpu.client, m.cpu.server
    return (f"| {label} | {m.seconds:,.2f} | {m.us_per_row:,.2f} | {m.seconds / floor:,.2f} | {_cpu(client)} | "
            f"{_cpu(server)} | {load} | {m.note} |")


def format_shape(r: ShapeResult) -> str:
    m = r.measurements
    floor = m["out"].seconds + m["in"].seconds
    floor_m = Measurement("data floor", floor, m["out"].rows, None, "")
    if m["out"].cpu and m["in"].cpu:
        floor_m.cpu = type(m["out"].cpu)(m["out"].cpu.client + m["in"].cpu.client,
                                         None if m["out"].cpu.server is None or m["in"].cpu.server is None
                                         else m["out"].cpu.server + m["in"].cpu.server)
    lines = [
        f"### {r.shape.name}: {r.shape.description} ({r.rows:,} rows seeded in `{r.shape.schema}`)",
        "",
        "| measure | seconds | µs/row | × data floor | run processes CPU s | PostgreSQL CPU s | load (1 min) | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        _row("data floor: binary COPY out, bytes discarded", m["out"], r.loads["out"], floor),
        _row("data floor: binary COPY in, index-free copy", m["in"], r.loads["in"], floor),
        _row("data floor: out + in", floor_m, r.loads["in"], floor),
        _row("reference: plain ADBC read of the raw rows into Arrow", m["plain read"], r.loads["plain read"], floor),
        _row("reference: ADBC ingest, keyed: the cleaned rows into an empty copy with the same key", m["ingest"],
             r.loads["ingest"], floor),
        _row("zip_etl read: ordered binary COPY (ADBC) -> Arrow-backed pandas, versions from the rows", m["read"],
             r.loads["read"], floor),
        _row("zip_etl transform: clean_companies", m["transform"], r.loads["transform"], floor),
        _row("zip_etl write, first build: chunks from memory, one transaction", m["write"], r.loads["write"], floor),
        _row("zip_etl write, second build: the same over the first's rows", m["write again"], r.loads["write again"], floor),
        _row("zip_etl in one process: read, transform and write overlapped (first build)", m["one process"],
             r.loads["one process"], floor),
        _row("orchestration floor: no-op asset, same runs and storage", m["orchestration"], r.loads["orchestration"], floor),
        _row("zip_etl through Dagster, first build: same runs, checks included", m["dagster"], r.loads["dagster"], floor),
        _row("zip_etl through Dagster, second build: the same runs over the first's rows", m["dagster again"],
             r.loads["dagster again"], floor),
        _row("seed's approach: read_sql + clean + to_csv + copy_from per zip code", m["seed"], r.loads["seed"], floor),
    ]
    dagster, orchestration = m["dagster"], m["orchestration"]
    per_partition_ms = 1000 * orchestration.seconds / orchestration.extra["partitions"]
    cpu_lines = []
    if dagster.cpu is not None:
        client_us = 1e6 * dagster.cpu.client / r.rows
        if dagster.cpu.server is not None:
            server_us = 1e6 * dagster.cpu.server / r.rows
            cpu_lines = [
                f"- CPU per row through Dagster: run processes {client_us:.2f} µs, PostgreSQL {server_us:.2f} µs "
                f"(one PostgreSQL core keeps up with about {client_us / server_us:.1f} run processes)",
                f"- projected to 3.6 billion rows (600 GB) from these figures: {_core_hours(client_us):,.1f} "
                f"core-hours of run processes and {_core_hours(server_us):,.1f} core-hours of PostgreSQL",
            ]
        else:
            cpu_lines = [f"- CPU per row through Dagster: run processes {client_us:.2f} µs, PostgreSQL n/a (not on this machine)",
                         f"- projected to 3.6 billion rows (600 GB): {_core_hours(client_us):,.1f} core-hours "
                         "of run processes; PostgreSQL n/a"]
    if dagster.cpu is not None and dagster.cpu.server is not None and floor_m.cpu is not None and floor_m.cpu.server:
        cpu_lines.insert(0, f"- PostgreSQL CPU per row through Dagster / the data floor's = "
                            f"{dagster.cpu.server / floor_m.cpu.server:.2f} (few-large target ≤ 2.5)")
    else:
        cpu_lines.insert(0, "- PostgreSQL CPU per row through Dagster / the data floor's = n/a (server not on this machine)")
    s, left = r.sizes, r.left
    lines += [
        "",
        f"- read / plain ADBC read = {m['read'].seconds / m['plain read'].seconds:.2f} in time, "
        f"{_cpu_ratio(m['read'], m['plain read'])} in CPU (target ≤ 1.2)",
        f"- write (first build) / keyed ingest = {m['write'].seconds / m['ingest'].seconds:.2f} in time, "
        f"{_cpu_ratio(m['write'], m['ingest'])} in CPU (target ≤ 1.0; the second build: "
        f"{m['write again'].seconds / m['ingest'].seconds:.2f} in time)",
        f"- after the second build: cleaned table {left['table_bytes'] / 2**20:,.0f} MiB, its indexes "
        f"{left['index_bytes'] / 2**20:,.0f} MiB, {left['dead_rows']:,} dead rows; VACUUM {left['vacuum_seconds']:.2f} s "
        f"({_cpu(left['vacuum_server_cpu'])} s of PostgreSQL CPU)",
        f"- zip_etl through Dagster / data floor = {dagster.seconds / floor:.2f} (few-large target ≤ 3; the second "
        f"build: {m['dagster again'].seconds / floor:.2f})",
        f"- zip_etl through Dagster / (data floor + orchestration floor) = "
        f"{dagster.seconds / (floor + orchestration.seconds):.2f} (many-small target ≤ 1.5)",
        f"- seed's approach / zip_etl through Dagster = {m['seed'].seconds / dagster.seconds:.1f}× (few-large target ≥ 2.5×)",
        f"- orchestration floor per partition = {per_partition_ms:.2f} ms ({orchestration.extra['partitions']:,} "
        f"partitions, {r.runs} runs, {r.workers} at a time)",
        *cpu_lines,
        f"- in memory, {s['rows']:,} raw rows as read: {s['raw'] / 2**20:,.1f} MiB; their {s['cleaned_rows']:,} cleaned "
        f"rows {s['cleaned_wide'] / 2**20:,.1f} MiB before downcasting, {s['cleaned'] / 2**20:,.1f} MiB after "
        f"({100 * (1 - s['cleaned'] / s['cleaned_wide']):.0f}% less than before downcasting, "
        f"{100 * (1 - s['cleaned'] / s['raw']):.0f}% less than raw)",
    ]
    if r.fresh:
        lines += [
            "",
            "| fresh process | rows | seconds | rows/s | baseline RSS MB | peak RSS MB | (peak − baseline) per raw MB | load (1 min) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for run, load in zip(r.fresh, r.fresh_loads):
            baseline = f"{run.baseline_mb:,.0f}" if run.baseline_mb else "n/a"
            per_raw = (f"{(run.peak_mb - run.baseline_mb) / (run.raw_bytes / 2**20):.2f} ({run.raw_bytes / 2**20:,.0f} raw MB"
                       f" in {run.chunks} chunk(s))" if run.raw_bytes and run.baseline_mb else "n/a")
            lines.append(f"| {run.label} | {run.rows:,} | {run.seconds:,.1f} | {run.rows_per_second:,.0f} | {baseline} | "
                         f"{run.peak_mb:,.0f} | {per_raw} | {load} |")
    return "\n".join(lines)


def write_report(path: Path, command: str, machine: str, tables: list[str], loads: tuple[str, str] | None = None,
                 marker: str = "zip-etl bench") -> None:
    """Replace the report's section between `<!-- {marker}: begin/end -->` (appended if missing)."""
    start, end = f"<!-- {marker}: begin -->", f"<!-- {marker}: end -->"
    block = "\n".join(
        [
            start,
            f"### `{command}` ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
            "",
            f"Machine: {machine}." + (f" Load average (1, 5, 15 min) before: {loads[0]}; after: {loads[1]}." if loads else ""),
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


def bench(shapes: list[str], *, workers: int, seed_sample: int, max_rows_per_run: int | None, output: Path | None,
          command: str, scale: float = 1.0, reseed: bool = False) -> int:
    from zip_etl import settings

    machine = machine_description()
    before = load_average()
    print(f"Machine: {machine}; load average before: {before}", flush=True)
    workdir = settings.home() / "bench"
    workdir.mkdir(parents=True, exist_ok=True)
    tables = []
    started = time.perf_counter()
    for name in shapes:
        result = bench_shape(SHAPES[name].scaled(scale), workers=workers, seed_sample=seed_sample,
                             max_rows_per_run=max_rows_per_run, reseed=reseed, workdir=workdir)
        table = format_shape(result)
        print("\n" + table, flush=True)
        tables.append(table)
    after = load_average()
    print(f"\nbench took {time.perf_counter() - started:.0f} s; load average after: {after}", flush=True)
    if output:
        write_report(output, command, machine, tables, (before, after))
        print(f"Written to {output}", flush=True)
    return 0
