"""`zip-etl seed`: write deterministic dirty demo data to the raw table with COPY."""

from __future__ import annotations

import time

from zip_etl.db.connection import connect, etl_database_url, transaction
from zip_etl.demo_data import generate_raw_companies, write_raw_companies
from zip_etl.partitions import ZIP_CODES


def seed_raw_table(rows: int, *, seed: int = 42, zip_codes: int | None = None) -> int:
    keys = ZIP_CODES if zip_codes is None else ZIP_CODES[:: max(1, len(ZIP_CODES) // zip_codes)][:zip_codes]
    url = etl_database_url()
    connect(url).close()  # a wrong URL fails now, in one line, not after generating the rows
    started = time.perf_counter()
    print(f"Generating {rows:,} raw rows over {len(keys):,} zip codes (seed {seed})...", flush=True)
    df = generate_raw_companies(rows, keys, seed=seed)
    print(f"Writing them with COPY ({time.perf_counter() - started:.1f}s so far)...", flush=True)
    write_raw_companies(url, df)
    print(f"Seeded raw_companies: {rows:,} rows in {time.perf_counter() - started:.1f}s", flush=True)
    return rows


def apply_changes(change: str, *, delete_all: str = "", seed: int = 1) -> list:
    """`zip-etl seed --change ...`: apply a deterministic change set to the existing raw table.

    `change` is a comma-separated list of zip codes, or a number N: N zip codes that have rows,
    picked with `seed`. `delete_all` lists zip codes whose rows are all deleted."""
    from zip_etl.demo_data import apply_change_set, pick_zip_codes_with_rows
    from zip_etl.tables import RAW_COMPANIES

    def zip_list(text: str) -> list[str]:
        codes = [z.strip() for z in text.split(",") if z.strip()]
        unknown = [z for z in codes if z not in ZIP_CODE_SET]
        if unknown:
            raise ValueError(f"not active zip codes (partitions): {unknown}; zip codes are 5-digit strings like 00501")
        return codes

    with transaction(etl_database_url()) as cursor:
        if change.strip().isdigit() and len(change.strip()) < 5:
            zip_codes = pick_zip_codes_with_rows(cursor, RAW_COMPANIES, int(change), seed=seed)
        else:
            zip_codes = zip_list(change)
        changes = apply_change_set(cursor, zip_codes, delete_all=zip_list(delete_all), seed=seed)
    for c in changes:
        print(f"  {c.zip_code}: {c.inserted} inserted, {c.updated} updated, {c.deleted} deleted", flush=True)
    print(f"Changed raw rows in {len(changes)} zip code(s) (change seed {seed})", flush=True)
    return changes


ZIP_CODE_SET = frozenset(ZIP_CODES)
