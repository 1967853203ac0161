"""Ways to write a run's cleaned rows, timed on the same rows: a first build into empty tables, a second
build over the first's rows, and what each leaves behind (table and index size, dead rows, VACUUM).

    zip-etl bench --shape few-large --scale 0.2 --output ''   # seeds bench_few_large (or reuses it)
    python scripts/write_designs.py --schema bench_few_large --repeat 2

The rows are the run's cleaned rows (read and cleaned once, held in memory, whole zip codes per chunk
as a run makes them). Only the cleaned table is written (no quarantine, counts or locks: those are the
same for every design), in one transaction per build:

- ingest: one `adbc_ingest` per chunk into the keyed table, rows in raw id order (a second build
  DELETEs the zip codes first): the bench's keyed-ingest reference;
- copy: DELETE the chunk's zip codes, COPY its rows in read order (the writer before this change);
- copy sorted: the same, the rows ordered by the primary key (the writer now);
- diff: COPY into a temporary table, then DELETE the rows that went, UPDATE the rows that changed,
  INSERT the new ones (writes nothing for unchanged rows);
- swap: the table partitioned by 3-digit zip-code prefix; each prefix built into a new index-free
  table, indexed once, then swapped in (DETACH and DROP the old partition, ATTACH the new);
- truncate: the same partitions; TRUNCATE each one, COPY its rows in key order.

The partitioned designs here replace whole prefixes: a run that covers only part of a prefix would
have to fall back to DELETE and COPY for it.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from zip_etl.db.arrow_io import connect_arrow, to_arrow
from zip_etl.db.connection import connect, etl_database_url, transaction
from zip_etl.db.ddl import create_table_statement, ensure_table
from zip_etl.db.partition_writer import key_order
from zip_etl.partition_stream import PartitionStream
from zip_etl.resources import PostgresResource
from zip_etl.tables import CLEANED_COMPANIES
from zip_etl_tools.bench.cpu import CpuMeter

SCHEMA = "write_designs"
TABLE = CLEANED_COMPANIES.with_name(SCHEMA, "cleaned_companies")


def cleaned_chunks(raw_schema: str, chunk_rows: int) -> tuple[list[pa.Table], list[str]]:
    """The run's final cleaned rows, as a run's chunks of whole zip codes, in raw id order within each."""
    with transaction(etl_database_url()) as cursor:
        cursor.execute(sql.SQL("SELECT DISTINCT zip_code FROM {} ORDER BY 1").format(sql.Identifier(raw_schema, "raw_companies")))
        keys = [row[0] for row in cursor.fetchall()]
    postgres = PostgresResource(raw_schema=raw_schema, chunk_rows=chunk_rows)
    frames = [c.cleaned for c in PartitionStream(postgres.raw_snapshot(), keys, chunk_rows) if c.cleaned is not None]
    rows = pd.concat(frames, ignore_index=True).drop_duplicates(["zip_code", "record_id"], keep="last")  # superseded
    chunks, group, held = [], [], 0
    for _, rows_of_zip in rows.groupby("zip_code", sort=True, observed=True):
        if group and held + len(rows_of_zip) > chunk_rows:
            chunks.append(pd.concat(group))
            group, held = [], 0
        group.append(rows_of_zip)
        held += len(rows_of_zip)
    chunks.append(pd.concat(group))
    return [to_arrow(c.sort_values("raw_id"), TABLE) for c in chunks], keys


def execute(statement: str) -> None:
    with transaction(etl_database_url()) as cursor:
        cursor.execute(statement)


def plain_table() -> None:
    execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    execute(f"CREATE SCHEMA {SCHEMA}")
    with transaction(etl_database_url()) as cursor:
        ensure_table(cursor, TABLE)


def partitioned_table() -> None:
    execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    execute(f"CREATE SCHEMA {SCHEMA}")
    statement = create_table_statement(TABLE).as_string(connect(etl_database_url()))
    execute(statement.replace("CREATE TABLE IF NOT EXISTS", "CREATE TABLE") + " PARTITION BY RANGE (zip_code)")


def zip_codes_of(data: pa.Table) -> list[str]:
    return pc.unique(data["zip_code"]).to_pylist()


def by_key(data: pa.Table) -> pa.Table:
    return data.take(key_order(data, TABLE.primary_key))


def copy(chunks: list[pa.Table], *, ordered: bool) -> None:
    conn = connect_arrow(etl_database_url())
    cursor = conn.cursor()
    for data in chunks:
        cursor.execute(f"DELETE FROM {SCHEMA}.cleaned_companies WHERE zip_code = ANY($1)", parameters=(zip_codes_of(data),))
        cursor.adbc_ingest("cleaned_companies", by_key(data) if ordered else data, mode="append", db_schema_name=SCHEMA)
    conn.commit()
    conn.close()


def diff(chunks: list[pa.Table]) -> None:
    conn = connect_arrow(etl_database_url())
    cursor = conn.cursor()
    cursor.execute(f"CREATE TEMPORARY TABLE staged (LIKE {SCHEMA}.cleaned_companies) ON COMMIT DROP")
    names = ", ".join(TABLE.column_names)
    values = ", ".join(f"{c} = s.{c}" for c in TABLE.column_names if c not in TABLE.primary_key)
    same_key = "s.zip_code = t.zip_code AND s.record_id = t.record_id"
    for data in chunks:
        cursor.adbc_ingest("staged", by_key(data), mode="append", temporary=True)
        cursor.execute("ANALYZE staged")
        cursor.execute(f"DELETE FROM {SCHEMA}.cleaned_companies t WHERE t.zip_code = ANY($1) AND NOT EXISTS "
                       f"(SELECT 1 FROM staged s WHERE {same_key})", parameters=(zip_codes_of(data),))
        cursor.execute(f"UPDATE {SCHEMA}.cleaned_companies t SET {values} FROM staged s WHERE {same_key} "
                       "AND (t.*) IS DISTINCT FROM (s.*)")
        cursor.execute(f"INSERT INTO {SCHEMA}.cleaned_companies SELECT {names} FROM staged s WHERE NOT EXISTS "
                       f"(SELECT 1 FROM {SCHEMA}.cleaned_companies t WHERE {same_key})")
        cursor.execute("TRUNCATE staged")
    conn.commit()
    conn.close()


def prefixes(chunks: list[pa.Table]) -> dict[str, list[pa.Table]]:
    out: dict[str, list[pa.Table]] = {}
    for data in chunks:
        prefix = pc.utf8_slice_codeunits(pc.cast(data["zip_code"], pa.string()), 0, 3)
        for p in pc.unique(prefix).to_pylist():
            out.setdefault(p, []).append(data.filter(pc.equal(prefix, p)))
    return out


def swap(chunks: list[pa.Table]) -> None:
    conn = connect_arrow(etl_database_url())
    cursor = conn.cursor()
    parts = prefixes(chunks)
    for p, pieces in parts.items():
        new, low, high = f"cleaned_companies_p{p}_new", p, f"{int(p) + 1:03d}"
        cursor.execute(f"CREATE TABLE {SCHEMA}.{new} (LIKE {SCHEMA}.cleaned_companies INCLUDING DEFAULTS)")
        for piece in pieces:
            cursor.adbc_ingest(new, piece, mode="append", db_schema_name=SCHEMA)
        cursor.execute(f"ALTER TABLE {SCHEMA}.{new} ADD PRIMARY KEY (zip_code, record_id)")
        # CHECK first, so ATTACH need not scan the table to prove its rows belong
        cursor.execute(f"ALTER TABLE {SCHEMA}.{new} ADD CONSTRAINT {new}_range CHECK (zip_code >= '{low}' AND zip_code < '{high}')")
    for p in parts:
        old, new, low, high = f"cleaned_companies_p{p}", f"cleaned_companies_p{p}_new", p, f"{int(p) + 1:03d}"
        cursor.execute(f"SELECT to_regclass('{SCHEMA}.{old}') IS NOT NULL AS found")
        if cursor.fetchone()[0]:
            cursor.execute(f"ALTER TABLE {SCHEMA}.cleaned_companies DETACH PARTITION {SCHEMA}.{old}")
            cursor.execute(f"DROP TABLE {SCHEMA}.{old}")
        cursor.execute(f"ALTER TABLE {SCHEMA}.cleaned_companies ATTACH PARTITION {SCHEMA}.{new} "
                       f"FOR VALUES FROM ('{low}') TO ('{high}')")
        cursor.execute(f"ALTER TABLE {SCHEMA}.{new} DROP CONSTRAINT {new}_range")
        cursor.execute(f"ALTER TABLE {SCHEMA}.{new} RENAME TO {old}")
    conn.commit()
    conn.close()


def truncate(chunks: list[pa.Table]) -> None:
    conn = connect_arrow(etl_database_url())
    cursor = conn.cursor()
    for p, pieces in prefixes(chunks).items():
        part, low, high = f"cleaned_companies_p{p}", p, f"{int(p) + 1:03d}"
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{part} PARTITION OF {SCHEMA}.cleaned_companies "
                       f"FOR VALUES FROM ('{low}') TO ('{high}')")
        cursor.execute(f"TRUNCATE {SCHEMA}.{part}")
        for piece in pieces:
            cursor.adbc_ingest(part, by_key(piece), mode="append", db_schema_name=SCHEMA)
    conn.commit()
    conn.close()


def ingest(chunks: list[pa.Table]) -> None:
    conn = connect_arrow(etl_database_url())
    cursor = conn.cursor()
    cursor.execute(f"DELETE FROM {SCHEMA}.cleaned_companies WHERE zip_code = ANY($1)",
                   parameters=([z for c in chunks for z in zip_codes_of(c)],))
    for data in chunks:
        cursor.adbc_ingest("cleaned_companies", data, mode="append", db_schema_name=SCHEMA)
    conn.commit()
    conn.close()


DESIGNS = {
    "ingest": (plain_table, ingest),
    "copy": (plain_table, lambda chunks: copy(chunks, ordered=False)),
    "copy sorted": (plain_table, lambda chunks: copy(chunks, ordered=True)),
    "diff": (plain_table, diff),
    "swap": (partitioned_table, swap),
    "truncate": (partitioned_table, truncate),
}


def leftovers(meter: CpuMeter) -> str:
    execute("SELECT pg_stat_force_next_flush()")
    time.sleep(1.0)
    with transaction(etl_database_url()) as cursor:
        cursor.execute("SELECT coalesce(sum(pg_table_size(c.oid)), 0), coalesce(sum(pg_indexes_size(c.oid)), 0), "
                       "coalesce(sum(s.n_dead_tup), 0) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                       "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE n.nspname = %s AND c.relkind = 'r'",
                       (SCHEMA,))
        table_bytes, index_bytes, dead = cursor.fetchone()
    conn = connect(etl_database_url())
    conn.autocommit = True
    with meter.measure() as cpu:
        started = time.perf_counter()
        with conn.cursor() as cursor:
            cursor.execute(f"VACUUM {SCHEMA}.cleaned_companies")
        seconds = time.perf_counter() - started
    conn.close()
    return (f"table {table_bytes / 2**20:,.1f} MiB, index {index_bytes / 2**20:,.1f} MiB, {int(dead):,} dead rows, "
            f"VACUUM {seconds:.2f} s ({cpu.seconds.server:.2f} s PostgreSQL CPU)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default="bench_few_large", help="the bench shape whose rows are written")
    parser.add_argument("--designs", default=",".join(DESIGNS))
    parser.add_argument("--repeat", type=int, default=1, help="rounds, the designs interleaved in each")
    parser.add_argument("--chunk-rows", type=int, default=PostgresResource().reads().chunk_rows)
    args = parser.parse_args()
    meter = CpuMeter(etl_database_url())
    chunks, _ = cleaned_chunks(args.schema, args.chunk_rows)
    rows = sum(c.num_rows for c in chunks)
    print(f"{rows:,} cleaned rows of {args.schema} in {len(chunks)} chunks; load {os.getloadavg()[0]:.2f}", flush=True)
    print("| design | build | seconds | run process CPU s | PostgreSQL CPU s | µs/row (CPU, both) | load (1 min) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    after = {}
    for _ in range(args.repeat):
        for name in args.designs.split(","):
            setup, write = DESIGNS[name]
            setup()
            for build in ("first", "second"):
                with meter.measure() as cpu:
                    started = time.perf_counter()
                    write(chunks)
                    seconds = time.perf_counter() - started
                both = cpu.seconds.client + cpu.seconds.server
                print(f"| {name} | {build} | {seconds:.2f} | {cpu.seconds.client:.2f} | {cpu.seconds.server:.2f} | "
                      f"{1e6 * both / rows:.2f} | {os.getloadavg()[0]:.2f} |", flush=True)
            after.setdefault(name, []).append(leftovers(meter))
    print()
    for name, lines in after.items():
        for line in lines:
            print(f"- {name}, after the second build: {line}")
    execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


if __name__ == "__main__":
    main()
