"""What a partition write costs PostgreSQL's write-ahead log: the figures behind docs/DEPLOYMENT.md's
server settings (max_wal_size, checkpoints).

    python scripts/wal_cost.py --shape few-large --scale 0.2

Seeds the shape's raw table as `zip-etl bench` does (kept for the next run), then writes every zip code as a run does (`stream_write`: one transaction), twice:
a first build into empty tables, then a second build over its rows (a refresh). For each: rows in, WAL
bytes (the server's insert position before and after), CPU seconds, full-page images and WAL bytes from
`pg_stat_wal`, and checkpoints the server was forced into (`pg_stat_checkpointer.num_requested`:
max_wal_size reached) or ran on time. The WAL counters are the server's: run it when nothing else
writes to that server.
"""

from __future__ import annotations

import argparse
import os
import time

from zip_etl.db.connection import etl_database_url, transaction
from zip_etl_tools.bench.cpu import CpuMeter
from zip_etl_tools.bench.methods import drop_targets, stream_write
from zip_etl_tools.bench.shapes import SHAPES, seed

COUNTERS = """
SELECT pg_current_wal_insert_lsn(), w.wal_fpi, w.wal_bytes, c.num_timed, c.num_requested
FROM pg_stat_wal w, pg_stat_checkpointer c
"""


def counters(cursor) -> tuple:
    cursor.execute(COUNTERS)
    lsn, fpi, wal_bytes, timed, requested = cursor.fetchone()
    cursor.execute("SELECT pg_wal_lsn_diff(%s, '0/0')", (lsn,))
    return int(cursor.fetchone()[0]), int(fpi), int(wal_bytes), int(timed), int(requested)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="few-large", choices=sorted(SHAPES))
    parser.add_argument("--scale", type=float, default=0.2)
    args = parser.parse_args()
    url = etl_database_url()
    shape = SHAPES[args.shape].scaled(args.scale)
    seed(shape, url)
    keys = shape.keys()
    with transaction(url) as cursor:
        cursor.execute("SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
                       (["max_wal_size", "checkpoint_timeout", "wal_compression", "full_page_writes"],))
        settings = ", ".join(f"{n} = {s}{u or ''}" for n, s, u in cursor.fetchall())
    print(f"{shape.description}: {len(keys):,} zip codes; {settings}; load {os.getloadavg()[0]:.2f}")
    meter = CpuMeter(url)
    print("| build | rows in | seconds | CPU s, run + PostgreSQL | WAL MB | WAL bytes/row | full-page images | checkpoints requested | timed |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    drop_targets(shape.schema)
    for build in ("first (empty tables)", "second (over its rows)"):
        with transaction(url) as cursor:
            before = counters(cursor)
        with meter.measure() as cpu:
            started = time.perf_counter()
            stream, _ = stream_write(shape.schema, keys)
            seconds = time.perf_counter() - started
        with transaction(url) as cursor:
            after = counters(cursor)
        lsn, fpi, _, timed, requested = (a - b for a, b in zip(after, before))
        rows = int(stream.stats["rows_in"].sum())
        server = "n/a" if cpu.seconds.server is None else f"{cpu.seconds.server:.1f}"
        print(f"| {build} | {rows:,} | {seconds:.1f} | {cpu.seconds.client:.1f} + {server} | {lsn / 1e6:,.0f} | {lsn / rows:,.0f} | {fpi:,} | "
              f"{requested} | {timed} |", flush=True)


if __name__ == "__main__":
    main()
