"""`zip-etl seed`: write deterministic dirty demo data to the raw table with COPY, or change it."""

from __future__ import annotations

import time

import click

from zip_etl.cli.progress import Progress
from zip_etl.db.connection import connect, etl_database_url, transaction
from zip_etl.demo_data import generate_raw_companies, write_raw_companies
from zip_etl.partitions import ZIP_CODES, first_zip_codes

DEFAULT_ROWS = 1_000_000
ZIP_CODES_HELP = "the first N active zip codes in partition order (00501, 00544, ...); default: all 41,749"


@click.command("seed")
@click.option("--rows", default=DEFAULT_ROWS, show_default=True, help="rows to generate")
@click.option("--zip-codes", type=int, default=None, metavar="N", help=f"spread the rows over {ZIP_CODES_HELP}")
@click.option("--seed", "seed_value", default=42, show_default=True, help="random seed (same seed, same rows)")
@click.option("--change", default=None, metavar="ZIPS|N",
              help="instead of reseeding, change the existing rows of these comma-separated zip codes (or of N zip "
                   "codes picked with --change-seed): inserts, updates and deletes")
@click.option("--delete-all", default="", metavar="ZIPS", help="with --change: delete every row of these zip codes")
@click.option("--change-seed", default=1, show_default=True, help="random seed of the change set")
def seed_command(rows, zip_codes, seed_value, change, delete_all, change_seed):
    """Write deterministic dirty demo data to raw_companies (or change it, for the refresh cycle)."""
    if change is not None or delete_all:
        try:
            apply_changes(change or "", delete_all=delete_all, seed=change_seed)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        return
    seed_raw_table(rows, seed=seed_value, zip_codes=zip_codes)


def seed_raw_table(rows: int, *, seed: int = 42, zip_codes: int | None = None) -> int:
    keys = first_zip_codes(zip_codes)
    url = etl_database_url()
    connect(url).close()  # a wrong URL fails now, in one line, not after generating the rows
    started = time.perf_counter()
    print(f"Generating {rows:,} raw rows over {len(keys):,} zip codes (seed {seed})...", flush=True)
    df = generate_raw_companies(rows, keys, seed=seed)
    with Progress(len(df), "Writing (binary COPY, one transaction)", unit="rows") as progress:
        write_raw_companies(url, df, on_chunk=lambda n: progress.advance(n, f"  {progress.done + n:,} rows written"))
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
