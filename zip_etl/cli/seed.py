"""`zip-etl seed`: write deterministic dirty demo data to the raw table with COPY."""

from __future__ import annotations

import time

from zip_etl.db.connection import etl_database_url, transaction
from zip_etl.demo_data import generate_raw_companies, write_raw_companies
from zip_etl.partitions import ZIP_CODES


def seed_raw_table(rows: int, *, seed: int = 42, zip_codes: int | None = None) -> int:
    keys = ZIP_CODES if zip_codes is None else ZIP_CODES[:: max(1, len(ZIP_CODES) // zip_codes)][:zip_codes]
    started = time.perf_counter()
    print(f"Generating {rows:,} raw rows over {len(keys):,} zip codes (seed {seed})...", flush=True)
    df = generate_raw_companies(rows, keys, seed=seed)
    print(f"Writing them with COPY ({time.perf_counter() - started:.1f}s so far)...", flush=True)
    with transaction(etl_database_url()) as cursor:
        write_raw_companies(cursor, df)
    print(f"Seeded raw_companies: {rows:,} rows in {time.perf_counter() - started:.1f}s", flush=True)
    return rows
