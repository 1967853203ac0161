"""`zip-etl sizing`: how many zip_etl runs fit in a memory budget, measured, not guessed.

A run's memory follows the `chunk_rows` setting of the `postgres` resource, not the size of its
zip codes: rows stream through a chunk at a time. So sizing measures, in a fresh process per sample
(as a run worker is), the peak resident memory of streaming real chunks of the raw table through
the read, the cleaning and the conversion the writer does, in their threads as a run has them (one
chunk read ahead, one waiting to be written), without writing anything: a sample of ranges of zip
codes several chunks long, and the largest zip code (the one that streams in parts and keeps the
duplicate index). The recommendation is the number of such processes that fit in the budget, never
more than the cores.
"""

from __future__ import annotations

import math
import os
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click


@dataclass
class Sample:
    label: str
    zip_codes: int
    rows: int
    chunks: int
    baseline_mb: float
    peak_mb: float


def resident_mb(field: str = "VmRSS") -> float:
    """This process's resident memory (`VmRSS`) or its high-water mark (`VmHWM`), in MB.

    Not `ru_maxrss`: that carries the parent's resident size across the fork or exec that started
    this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> None:
    """Start this process's high-water mark afresh at its current resident memory."""
    Path("/proc/self/clear_refs").write_text("5")


def _measure(label: str, zip_codes: list[str], chunk_rows: int) -> Sample:
    """Runs in a fresh process: its peak resident memory is this sample's alone."""
    import importlib

    importlib.import_module("zip_etl.definitions")  # a run worker has all of Dagster and zip_etl loaded
    from zip_etl.db.arrow_io import to_arrow
    from zip_etl.db.partition_writer import key_order
    from zip_etl.partition_stream import PartitionStream
    from zip_etl.resources import PostgresResource
    from zip_etl.resources.writer import in_background
    from zip_etl.tables import CLEANED_COMPANIES

    def convert(chunk) -> None:  # what the writer does with each chunk before it sends it
        if chunk.cleaned is not None and len(chunk.cleaned):
            data = to_arrow(chunk.cleaned, CLEANED_COMPANIES)
            data.take(key_order(data, CLEANED_COMPANIES.primary_key))

    baseline = resident_mb()
    reset_peak()
    stream = PartitionStream(PostgresResource().raw_snapshot(), zip_codes, chunk_rows)
    in_background(stream, convert)  # read ahead, cleaned, converted: as many chunks at once as a run holds
    peak = resident_mb("VmHWM")
    return Sample(label, len(zip_codes), int(stream.stats["rows_in"].sum()), stream.chunks, baseline, peak)


@click.command("sizing")
@click.option("--memory-gb", type=float, default=None, help="memory budget for zip_etl's runs (default: 80% of RAM)")
@click.option("--samples", default=4, show_default=True, help="ranges of zip codes to measure, besides the largest zip code")
@click.option("--chunk-rows", type=int, default=None, help="chunk size to measure (default: the postgres resource's)")
def sizing_command(memory_gb, samples, chunk_rows):
    """Measure a run process's peak memory and recommend how many runs fit in a memory budget."""
    import psutil

    from zip_etl.resources import PostgresResource

    budget = memory_gb or 0.8 * psutil.virtual_memory().total / 2**30
    raise SystemExit(sizing(budget, samples, chunk_rows or PostgresResource().reads().chunk_rows))


CHUNKS_PER_SAMPLE = 4


def sizing(budget_gb: float, samples: int, chunk_rows: int, seed: int = 7, out=print) -> int:
    from zip_etl.db.connection import etl_database_url, transaction
    from zip_etl.partitions import partition_ranges
    from zip_etl.resources import PostgresResource

    raw = PostgresResource().raw
    from psycopg2 import sql

    with transaction(etl_database_url()) as cursor:
        cursor.execute(sql.SQL("SELECT zip_code, count(*) FROM {} GROUP BY 1 ORDER BY 1").format(raw.identifier))
        counts = dict(cursor.fetchall())
    if not counts:
        out(f"{raw.qualified_name} is empty: seed it first (zip-etl seed)")
        return 1
    # Ranges of several full chunks: a run reads one chunk ahead and writes one behind while it cleans
    # one, so its peak shows only once chunks follow each other.
    ranges = partition_ranges(sorted(counts), len(counts), counts, CHUNKS_PER_SAMPLE * chunk_rows)
    rng = random.Random(seed)
    chosen = [("range", r) for r in rng.sample(ranges, min(samples, len(ranges)))]
    largest = max(counts, key=counts.get)
    chosen.append(("largest zip code", [largest]))
    measured = []
    for label, zip_codes in chosen:
        with ProcessPoolExecutor(max_workers=1) as pool:  # a fresh process per sample
            measured.append(pool.submit(_measure, label, zip_codes, chunk_rows).result())
    out(f"chunk_rows = {chunk_rows:,}")
    out(f"{'sample':<17} {'zip codes':>9} {'rows':>10} {'chunks':>6} {'baseline MB':>11} {'peak MB':>8}")
    for s in measured:
        out(f"{s.label:<17} {s.zip_codes:>9,} {s.rows:>10,} {s.chunks:>6} {s.baseline_mb:>11.0f} {s.peak_mb:>8.0f}")
    per_process = max(s.peak_mb for s in measured)
    fit = max(1, math.floor(budget_gb * 1024 / per_process))
    cores = os.cpu_count() or 1
    out(
        f"\nA run process peaks at ~{per_process:.0f} MB with chunks of {chunk_rows:,} rows, whatever the size of its "
        f"zip codes (the largest here: {counts[largest]:,} rows).\n"
        f"{fit} fit in {budget_gb:g} GB; {cores} cores.\n"
        f"Recommended concurrent runs: {min(fit, cores)}  (dagster.yaml run_coordinator max_concurrent_runs, "
        "zip-etl demo --workers)"
    )
    return 0
