"""`zip-etl demo`: seed demo data and materialize every zip code of `cleaned_companies` through Dagster."""

from __future__ import annotations

import os
import time

import click

from zip_etl import settings
from zip_etl.cli.seed import DEFAULT_ROWS, ZIP_CODES_HELP


@click.command("demo")
@click.option("--rows", default=DEFAULT_ROWS, show_default=True, help="rows to seed when the raw table is missing")
@click.option("--reseed", is_flag=True, help="regenerate the raw table even if it exists")
@click.option("--seed", "seed_value", default=42, show_default=True, help="random seed of the demo rows")
@click.option("--partitions-per-run", type=int, default=None, help="zip codes per Dagster run (default: ZIP_ETL_PARTITIONS_PER_RUN, 2000)")
@click.option("--workers", type=int, default=None, help="runs at once (default: CPU cores)")
@click.option("--zip-codes", type=int, default=None, metavar="N", help=f"seed and build {ZIP_CODES_HELP}")
@click.option("--debug", is_flag=True,
              help="debug mode: run everything, write nothing, report what a write would change")
def demo_command(rows, reseed, seed_value, partitions_per_run, workers, zip_codes, debug):
    """Seed demo data if needed, then materialize every zip code through Dagster, N runs at a time."""
    raise SystemExit(demo(rows, reseed=reseed, per_run=partitions_per_run or settings.partitions_per_run(),
                          workers=workers, seed=seed_value, zip_codes=zip_codes, debug=debug))


def demo(
    rows: int,
    *,
    reseed: bool,
    per_run: int,
    workers: int | None,
    seed: int,
    zip_codes: int | None = None,
    debug: bool = False,
) -> int:
    from zip_etl.cli.local_runs import Target, run_backfill
    from zip_etl.cli.seed import seed_raw_table
    from zip_etl.db.connection import embedded_data_dir, etl_database_url, redact_url, transaction
    from zip_etl.db.ddl import table_exists
    from zip_etl.defs.assets import DEBUG_MODE, MODE_TAG
    from zip_etl.instance import get_instance
    from zip_etl.partitions import first_zip_codes, partition_ranges
    from zip_etl.tables import RAW_COMPANIES

    workers = workers or os.cpu_count() or 1
    user_url = settings.database_url()
    where = redact_url(user_url) if user_url else f"embedded PostgreSQL in {embedded_data_dir()}"
    print(f"Database: {where}", flush=True)
    with get_instance():  # Dagster's storage answers (else one line naming its setting), before any seeding
        pass
    url = etl_database_url()
    with transaction(url) as cursor:
        exists = table_exists(cursor, RAW_COMPANIES.schema, RAW_COMPANIES.name)
    if reseed or not exists:
        seed_raw_table(rows=rows, seed=seed, zip_codes=zip_codes)
    else:
        print("Raw table present; reusing it (pass --reseed to regenerate).", flush=True)

    started = time.perf_counter()
    keys = first_zip_codes(zip_codes)
    target = Target(tags=((MODE_TAG, DEBUG_MODE),)) if debug else Target()
    if debug:
        print("Debug mode: every run reads and cleans, compares the result with the tables, records metadata, "
              "and writes nothing.", flush=True)
    results = run_backfill(partition_ranges(keys, per_run), workers=workers, target=target)
    seconds = time.perf_counter() - started
    done = sum(r.partitions for r in results if r.success)
    failed = [r for r in results if not r.success]
    rows_in = sum(r.rows_in for r in results)
    rows_out = sum(r.rows_out for r in results)
    rejected = sum(r.rows_rejected for r in results)
    print(
        "\nSummary\n"
        f"  zip codes done:   {done:,} of {len(keys):,} ({sum(r.partitions for r in failed):,} failed)\n"
        f"  rows in:          {rows_in:,}\n"
        f"  rows out:         {rows_out:,}\n"
        f"  rows rejected:    {rejected:,}\n"
        f"  time:             {seconds:.1f}s ({rows_in / seconds if seconds else 0:,.0f} rows/s)\n"
        "  Browse the runs:  dagster dev   (then open http://localhost:3000)",
        flush=True,
    )
    for r in failed:
        print(f"  FAILED {r.first}..{r.last}: {r.error}", flush=True)
    if debug:
        print(what_if_summary([r for r in results if r.success]), flush=True)
    return 1 if failed else 0


EXAMPLES_SHOWN = 20


def what_if_summary(results) -> str:
    """What the debug runs' writes would have changed, summed over the runs: totals, changes per
    column, and the first examples (runs in zip-code order)."""
    from zip_etl.what_if import COUNTS, describe_column_changes

    facts = [r.what_if for r in sorted(results, key=lambda r: r.first) if r.what_if]
    if not facts:
        return "\nWhat-if: no run compared anything."
    totals = {name: sum(f["totals"][name] for f in facts) for name in COUNTS}
    columns: dict[str, int] = {}
    for f in facts:
        for column, n in f["column_changes"].items():
            columns[column] = columns.get(column, 0) + n
    changed = describe_column_changes(columns)
    examples = [e for f in facts for e in f["examples"]]
    targets = sorted({f["compared_with"] for f in facts})
    lines = [
        f"\nWhat-if: what a write would change, compared with {'; '.join(targets)}",
        f"  zip codes changed:            {sum(f['zip_codes_with_differences'] for f in facts):,} of "
        f"{sum(f['zip_codes_compared'] for f in facts):,}",
        f"  rows would appear:            {totals['rows_appear']:,}",
        f"  rows would disappear:         {totals['rows_disappear']:,}",
        f"  rows would change:            {totals['rows_change']:,}" + (f" ({changed})" if changed else ""),
        f"  newly rejected:               {totals['newly_rejected']:,}",
        f"  no longer rejected:           {totals['no_longer_rejected']:,}",
        f"  rejected for another reason:  {totals['rejected_for_another_reason']:,}",
    ]
    if examples:
        lines.append("  first examples" + (f" ({EXAMPLES_SHOWN} of {len(examples)}; each run's own are in its "
                                              "observation's what_if_examples)" if len(examples) > EXAMPLES_SHOWN else "")
                     + ":")
        lines += [f"    {e}" for e in examples[:EXAMPLES_SHOWN]]
    return "\n".join(lines)
