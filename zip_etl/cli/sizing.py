"""`zip-etl sizing`: how many zip_etl processes fit in a memory budget, measured not guessed.

It samples zip codes of the raw table, runs the real read + clean on batches of them in a fresh
process each (as a run worker would), and records the peak resident memory of that process against
the in-memory size of the raw rows it read. From the largest peak per raw MB and the baseline of a
worker process it recommends how many concurrent runs fit in the budget (never more than the cores).
"""

from __future__ import annotations

import math
import os
import random
import resource
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass


@dataclass
class Sample:
    zip_codes: int
    rows: int
    raw_mb: float
    baseline_mb: float
    peak_mb: float

    @property
    def mb_per_raw_mb(self) -> float:
        return (self.peak_mb - self.baseline_mb) / self.raw_mb if self.raw_mb else 0.0


def _measure(zip_codes: list[str]) -> Sample:
    # Runs in a fresh process: its peak RSS is this batch's alone.
    import importlib

    from zip_etl.resources.database import PostgresResource

    importlib.import_module("zip_etl.definitions")  # a run worker has all of Dagster and zip_etl loaded
    from zip_etl.transform import clean_companies, frame_bytes

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    raw = PostgresResource().read_raw(zip_codes)
    result = clean_companies(raw)
    del result
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Sample(len(zip_codes), len(raw), frame_bytes(raw) / 2**20, baseline, peak)


def sizing(budget_gb: float, samples: int, batch_rows: int, seed: int = 7) -> int:
    from zip_etl.db.connection import etl_database_url, transaction

    with transaction(etl_database_url()) as cursor:
        cursor.execute("SELECT zip_code, count(*) FROM raw_companies GROUP BY 1 ORDER BY 1")
        counts = dict(cursor.fetchall())
    if not counts:
        print("raw_companies is empty: seed it first (zip-etl seed)")
        return 1
    keys = sorted(counts)
    rng = random.Random(seed)
    batches = []
    for _ in range(samples):
        start = rng.randrange(len(keys))
        batch, rows = [], 0
        for key in keys[start:]:
            batch.append(key)
            rows += counts[key]
            if rows >= batch_rows:
                break
        batches.append(batch)
    measured = []
    for batch in batches:
        with ProcessPoolExecutor(max_workers=1) as pool:  # a fresh process per sample
            measured.append(pool.submit(_measure, batch).result())
    print(f"{'zip codes':>9} {'rows':>9} {'raw MB':>8} {'baseline MB':>11} {'peak MB':>8} {'MB per raw MB':>13}")
    for s in measured:
        print(f"{s.zip_codes:>9,} {s.rows:>9,} {s.raw_mb:>8.1f} {s.baseline_mb:>11.0f} {s.peak_mb:>8.0f} {s.mb_per_raw_mb:>13.2f}")
    ratio = max(s.mb_per_raw_mb for s in measured)
    baseline = max(s.baseline_mb for s in measured)
    largest_zip_rows = max(counts.values())
    rows_per_mb = max(s.rows / s.raw_mb for s in measured if s.raw_mb)
    # The heaviest run holds a full batch (or the largest single zip code, if bigger).
    worst_raw_mb = max(batch_rows, largest_zip_rows) / rows_per_mb
    per_process_mb = baseline + ratio * worst_raw_mb
    fit = max(1, math.floor(budget_gb * 1024 / per_process_mb))
    cores = os.cpu_count() or 1
    recommended = min(fit, cores)
    print(
        f"\nPeak memory: {ratio:.2f} MB per MB of raw rows, over a {baseline:.0f} MB worker baseline.\n"
        f"A run of up to {max(batch_rows, largest_zip_rows):,} rows (~{worst_raw_mb:.0f} raw MB) needs "
        f"~{per_process_mb:.0f} MB; {fit} fit in {budget_gb:g} GB; {cores} cores.\n"
        f"Recommended concurrent runs: {recommended}  (dagster.yaml run_coordinator max_concurrent_runs,"
        f" zip-etl demo --workers)"
    )
    return 0
