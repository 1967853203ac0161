"""Ways to read a run's raw rows into Arrow, timed on the same rows with the CPU they cost the client
and the PostgreSQL server: what the run's read was chosen by.

    zip-etl bench --shape few-large --scale 0.2 --output ''   # seeds bench_few_large (or reuses it)
    python scripts/read_designs.py --schema bench_few_large --repeat 3
    python scripts/read_designs.py --schema bench_many_small --zip-codes 2000 --offset 2000 --repeat 3

Every variant reads the same zip codes (all of the shape's, or `--zip-codes` of them from `--offset`)
in one REPEATABLE READ transaction, batches discarded:

- plain: `SELECT` the raw columns of the whole table (all zip codes only), the bench's reference;
- plain, batch_size_hint_bytes: the same with the driver's batch size hint at 1 MiB and 64 MiB;
- join: the zip codes in a temporary table joined to the raw table (the run's read before);
- join + counts + md5: the same with the two queries a run made before it (rows per zip code, and
  each zip code's md5 data version);
- any: `zip_code = ANY(ARRAY(SELECT zip_code FROM the temporary table))`, in no order;
- any, ordered: the same `ORDER BY zip_code`, sorts off (the run's read now);
- stream: the run's reading now, whole (`PartitionStream.raw_frames`: that ordered read in a thread,
  cut into chunks, each zip code's count and version computed from the rows, pandas frames).
"""

from __future__ import annotations

import argparse
import os
import time

from psycopg2 import sql

from zip_etl.db.arrow_io import connect_arrow, load_zip_codes
from zip_etl.db.connection import connect, etl_database_url, transaction
from zip_etl.db.ddl import raw_data_versions
from zip_etl.partition_stream import PartitionStream
from zip_etl.resources import PostgresResource
from zip_etl.tables import RAW_COMPANIES
from zip_etl_tools.bench.cpu import CpuMeter


def read(query: str, zip_codes: list[str], *, setup: tuple[str, ...] = (), hint: int | None = None) -> int:
    conn = connect_arrow(etl_database_url())
    try:
        cursor = conn.cursor()
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("CREATE TEMPORARY TABLE keys (zip_code text PRIMARY KEY) ON COMMIT DROP")
        load_zip_codes(cursor, "keys", zip_codes)
        for statement in setup:
            cursor.execute(statement)
        cursor = conn.cursor()
        if hint:
            cursor.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(hint)})
        cursor.execute(query)
        rows = sum(batch.num_rows for batch in cursor.fetch_record_batch())
        cursor.close()
        conn.rollback()
        return rows
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default="bench_few_large")
    parser.add_argument("--zip-codes", type=int, default=None, help="read this many zip codes (default: all)")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="rounds, the variants interleaved in each")
    args = parser.parse_args()
    url = etl_database_url()
    meter = CpuMeter(url)
    table = RAW_COMPANIES.with_name(args.schema, "raw_companies")
    conn = connect(url)
    columns = sql.SQL(", ").join(sql.Identifier("r", c) for c in table.column_names).as_string(conn)
    name = table.identifier.as_string(conn)
    conn.close()
    with transaction(url) as cursor:
        cursor.execute(sql.SQL("SELECT DISTINCT zip_code FROM {} ORDER BY 1").format(table.identifier))
        every = [row[0] for row in cursor.fetchall()]
    keys = every[args.offset: args.offset + args.zip_codes] if args.zip_codes else every
    joined = f"SELECT {columns} FROM {name} r JOIN keys k ON r.zip_code = k.zip_code"
    any_keys = f"SELECT {columns} FROM {name} r WHERE r.zip_code = ANY(ARRAY(SELECT zip_code FROM keys))"

    def join_counts_versions() -> int:
        with transaction(url) as cursor:  # the two passes a run made before its rows
            cursor.execute(sql.SQL("SELECT zip_code, count(*) FROM {} WHERE zip_code = ANY(%s) GROUP BY 1")
                           .format(table.identifier), (keys,))
            raw_data_versions(cursor, table, keys)
        return read(joined, keys)

    def stream() -> int:
        postgres = PostgresResource(raw_schema=args.schema)
        return sum(len(f) for f in PartitionStream(postgres.raw_snapshot(), keys, postgres.reads().chunk_rows).raw_frames())

    variants = {
        "join": lambda: read(joined, keys),
        "join + counts + md5": join_counts_versions,
        "any": lambda: read(any_keys, keys),
        "any, ordered": lambda: read(any_keys + " ORDER BY r.zip_code", keys, setup=("SET LOCAL enable_sort = off",)),
        "stream": stream,
    }
    if len(keys) == len(every):
        variants = {"plain": lambda: read(f"SELECT {columns} FROM {name} r", keys),
                    "plain, hint 1 MiB": lambda: read(f"SELECT {columns} FROM {name} r", keys, hint=1 << 20),
                    "plain, hint 64 MiB": lambda: read(f"SELECT {columns} FROM {name} r", keys, hint=64 << 20),
                    **variants}
    stream()  # imports and caches warm before anything is timed
    print(f"{args.schema}: {len(keys):,} zip codes; load {os.getloadavg()[0]:.2f}")
    print("| variant | rows | seconds | run process CPU s | PostgreSQL CPU s | load (1 min) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for _ in range(args.repeat):
        for label, variant in variants.items():
            with meter.measure() as cpu:
                started = time.perf_counter()
                rows = variant()
                seconds = time.perf_counter() - started
            print(f"| {label} | {rows:,} | {seconds:.2f} | {cpu.seconds.client:.2f} | {cpu.seconds.server:.2f} | "
                  f"{os.getloadavg()[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
