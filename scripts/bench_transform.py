"""Time the cleaning transform on demo rows, as the reader gives them (Arrow-backed) and as object
columns: median of several runs, µs per row (wall clock, and this process's CPU time, which a busy
shared machine distorts less), memory of the raw frame as read and of the cleaned frame before and
after downcasting, and the machine's load.

    python scripts/bench_transform.py                      # 1,000,000 rows, 5 runs per form
    python scripts/bench_transform.py --rows 200000 --runs 3 --threads 1

`--threads 1` runs pyarrow's compute on one thread (`pa.set_cpu_count(1)`), as when one process
per core runs; by default both settings are measured. Generating the demo rows is not timed; with
`--cache DIR` they are kept as Parquet for the next run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TODAY = dt.date(2026, 11, 23)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def demo_table(rows: int, seed: int, cache: Path | None) -> pa.Table:
    path = cache / f"demo_{rows}_{seed}.parquet" if cache else None
    if path and path.exists():
        return pq.read_table(path)
    from zip_etl.demo_data import generate_raw_companies

    table = pa.Table.from_pandas(generate_raw_companies(rows, seed=seed), preserve_index=False)
    # As PostgreSQL's binary COPY gives it through ADBC: timestamps in microseconds.
    index = table.schema.get_field_index("updated_at")
    table = table.set_column(index, "updated_at", table["updated_at"].cast(pa.timestamp("us", tz="UTC")))
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
    return table


def arrow_frame(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def object_frame(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas()
    for column in frame.columns:
        if column not in ("raw_id", "updated_at"):
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    frame["updated_at"] = frame["updated_at"].astype("datetime64[ns, UTC]")
    return frame


def measure(clean, raw: pd.DataFrame, runs: int) -> tuple[list[float], list[float], object]:
    """(wall seconds, CPU seconds of this process, last result) of `runs` runs."""
    seconds, cpu, result = [], [], None
    for _ in range(runs):
        result = None
        gc.collect()
        started, started_cpu = time.perf_counter(), time.process_time()
        result = clean(raw, today=TODAY)
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return seconds, cpu, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, choices=[0, 1], default=None,
                        help="1: pa.set_cpu_count(1); 0: pyarrow's default; both when not given")
    parser.add_argument("--forms", default="arrow,object", help="comma-separated: arrow, object")
    parser.add_argument("--cache", type=Path, default=None, help="keep the demo rows as Parquet here")
    args = parser.parse_args(argv)

    from zip_etl.transform import clean_companies, frame_bytes
    from zip_etl.transform.isolation import _widened

    print(f"generating {args.rows:,} demo rows (seed {args.seed}) ...", flush=True)
    table = demo_table(args.rows, args.seed, args.cache)
    default_threads = pa.cpu_count()
    settings = [args.threads] if args.threads is not None else [0, 1]
    print(f"python {sys.version.split()[0]}, pandas {pd.__version__}, pyarrow {pa.__version__}, "
          f"{os.cpu_count()} cores; {load()}")
    for form in args.forms.split(","):
        raw = {"arrow": arrow_frame, "object": object_frame}[form](table)
        for threads in settings:
            pa.set_cpu_count(1 if threads == 1 else default_threads)
            before = load()
            seconds, cpu, result = measure(clean_companies, raw, args.runs)
            median, median_cpu = statistics.median(seconds), statistics.median(cpu)
            print(
                f"{form:>6} input, pyarrow threads {pa.cpu_count()}: median {median:.3f} s = "
                f"{median / len(raw) * 1e6:.2f} µs/row wall, {median_cpu / len(raw) * 1e6:.2f} µs/row CPU, "
                f"over {args.runs} runs ({', '.join(f'{s:.3f}' for s in seconds)}); {before} -> {load()}"
            )
        raw_bytes, cleaned_bytes = frame_bytes(raw), frame_bytes(result.cleaned)
        wide_bytes = frame_bytes(_widened(result.cleaned))
        print(
            f"        rows {len(raw):,}: cleaned {len(result.cleaned):,}, rejected {len(result.rejected):,}\n"
            f"        memory: raw as read {raw_bytes / 2**20:,.1f} MiB; cleaned before downcast "
            f"{wide_bytes / 2**20:,.1f} MiB, after {cleaned_bytes / 2**20:,.1f} MiB "
            f"({100 * (1 - cleaned_bytes / raw_bytes):.1f}% less than raw)",
            flush=True,
        )
        del raw, result
    pa.set_cpu_count(default_threads)


if __name__ == "__main__":
    main()
