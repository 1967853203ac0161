"""`zip-etl bench`: the benchmark command, added to the zip-etl command line by this package's entry
point (pyproject.toml), so the runtime package never imports the benchmarks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click


@click.command("bench")
@click.option("--shape", type=click.Choice(["many-small", "few-large", "skewed", "all"]), default="all", show_default=True)
@click.option("--workers", type=int, default=None, help="run processes at once (default: CPU cores)")
@click.option("--seed-sample", default=2000, show_default=True,
              help="zip codes the seed's approach runs on (few-large and skewed: at most a fifth of them)")
@click.option("--max-rows-per-run", type=int, default=None,
              help="also cut the backfill's runs at this many rows (default: as a backfill does, by zip codes only)")
@click.option("--output", default="docs/BENCHMARKS.md", show_default=True, help="report file ('' for none)")
@click.option("--scale", default=1.0, show_default=True,
              help="scale the shapes' rows and zip codes (smoke runs: 0.02 takes a few minutes)")
@click.option("--reseed", is_flag=True, help="seed the shapes again even if an identical seed is there")
@click.option("--distributed", is_flag=True,
              help="instead: each shape's backfill on the Celery deployment (deploy/celery) with each of --worker-counts "
                   "(few-large and many-small unless --shape names one)")
@click.option("--worker-counts", default="1,2,3", show_default=True, help="--distributed: Celery workers to compare")
def bench_command(shape, workers, seed_sample, max_rows_per_run, output, scale, reseed, distributed, worker_counts):
    """Time zip_etl against the data and orchestration floors and the seed's approach; write docs/BENCHMARKS.md."""
    command = "zip-etl " + " ".join(sys.argv[1:])
    if distributed:
        from zip_etl_tools.bench.distributed import DISTRIBUTED_SHAPES, bench_distributed

        raise SystemExit(bench_distributed(
            [int(n) for n in worker_counts.split(",")], shapes=list(DISTRIBUTED_SHAPES) if shape == "all" else [shape],
            scale=scale, reseed=reseed, output=Path(output) if output else None, command=command,
        ))
    from zip_etl_tools.bench.command import bench

    shapes = ["many-small", "few-large", "skewed"] if shape == "all" else [shape]
    raise SystemExit(bench(
        shapes, workers=workers or os.cpu_count() or 1, seed_sample=seed_sample, max_rows_per_run=max_rows_per_run,
        output=Path(output) if output else None, command=command, scale=scale, reseed=reseed,
    ))
