"""Entry point of the `zip-etl` console script."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

DEFAULT_DEMO_ROWS = 1_000_000


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zip-etl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    seed = commands.add_parser("seed", help="write deterministic dirty demo data to raw_companies")
    seed.add_argument("--rows", type=int, default=DEFAULT_DEMO_ROWS, help="rows to generate (default %(default)s)")
    seed.add_argument("--zip-codes", type=int, default=None, help="spread over this many zip codes (default: all active)")
    seed.add_argument("--seed", type=int, default=42, help="random seed (same seed, same rows)")
    seed.add_argument(
        "--change", default=None, metavar="ZIPS|N",
        help="instead of reseeding, change the existing rows of these comma-separated zip codes (or of N zip "
             "codes picked with --change-seed): inserts, updates and deletes",
    )
    seed.add_argument("--delete-all", default="", metavar="ZIPS", help="with --change: delete every row of these zip codes")
    seed.add_argument("--change-seed", type=int, default=1, help="random seed of the change set (same seed, same changes)")

    demo = commands.add_parser("demo", help="seed if needed, then materialize every zip code through Dagster")
    demo.add_argument("--rows", type=int, default=DEFAULT_DEMO_ROWS, help="rows to seed (default %(default)s)")
    demo.add_argument("--reseed", action="store_true", help="regenerate the raw table even if it exists")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--partitions-per-run", type=int, default=None, help="zip codes per Dagster run")
    demo.add_argument("--workers", type=int, default=None, help="runs at once (default: CPU cores)")
    demo.add_argument("--zip-codes", type=int, default=None, help="only the first N zip codes (default: all)")
    demo.add_argument("--debug", action="store_true", help="debug mode: run everything, write nothing")

    bench = commands.add_parser("bench", help="time zip_etl against the floors and the seed's approach")
    bench.add_argument("--shape", choices=["many-small", "few-large", "both"], default="both")
    bench.add_argument("--workers", type=int, default=None, help="processes (default: CPU cores)")
    bench.add_argument("--seed-sample", type=int, default=2000, help="zip codes the seed's approach runs on")
    bench.add_argument("--to-sql-rows", type=int, default=20_000, help="rows pandas.to_sql writes")
    bench.add_argument("--max-rows-per-run", type=int, default=250_000, help="rows per Dagster run at most")
    bench.add_argument("--output", default="docs/BENCHMARKS.md", help="report file ('' for none)")
    bench.add_argument("--scale", type=float, default=1.0, help="scale the shapes' row counts (smoke tests)")
    bench.add_argument("--distributed", action="store_true",
                       help="instead: the same backfill on the Celery deployment (deploy/celery) with each of --worker-counts")
    bench.add_argument("--worker-counts", default="1,2", help="--distributed: Celery workers to compare (default %(default)s)")
    bench.add_argument("--rows", type=int, default=DEFAULT_DEMO_ROWS, help="--distributed: rows (default %(default)s)")
    bench.add_argument("--zip-codes", type=int, default=None, help="--distributed: the first N zip codes (default: all)")
    bench.add_argument("--partitions-per-run", type=int, default=None, help="--distributed: zip codes per run")

    refresh = commands.add_parser(
        "refresh", help="rebuild only the zip codes whose raw rows changed (or never built), in batched runs"
    )
    refresh.add_argument("--workers", type=int, default=None, help="runs at once (default: CPU cores)")
    refresh.add_argument("--plan", action="store_true", help="only report what is stale or missing")

    sizing = commands.add_parser("sizing", help="how many concurrent runs fit in a memory budget")
    sizing.add_argument("--memory-gb", type=float, default=None, help="budget (default: 80%% of RAM)")
    sizing.add_argument("--samples", type=int, default=4, help="ranges of zip codes to measure, besides the largest zip code")
    sizing.add_argument("--chunk-rows", type=int, default=None, help="chunk size to measure (default: the postgres resource's)")

    migrate = commands.add_parser(
        "migrate", help="bring cleaned_companies written by an earlier release up to today's declaration")
    migrate.add_argument("--schema", default="public", help="schema of the cleaned table (default %(default)s)")

    commands.add_parser("load-fixtures", help="load the test-mode sample raw table and its truth table")

    check_raw = commands.add_parser(
        "check-raw-table", help="check your own raw table against what zip_etl reads (docs/RAW_TABLE.md); read only")
    check_raw.add_argument("--schema", default="public", help="schema of the raw table (default %(default)s)")
    check_raw.add_argument("--table", default="raw_companies", help="the raw table (default %(default)s)")

    db = commands.add_parser("db", help="the embedded PostgreSQL server")
    db.add_argument("action", choices=["start", "stop", "url"])
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=UserWarning)
    import dagster as dg

    for warning in (dg.BetaWarning, dg.PreviewWarning):  # Dagster's API notices, not user problems
        warnings.filterwarnings("ignore", category=warning)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = _parser().parse_args(argv)
    from zip_etl.db.connection import DatabaseError

    try:
        if args.command == "seed":
            from zip_etl.cli.seed import apply_changes, seed_raw_table

            if args.change is not None or args.delete_all:
                try:
                    apply_changes(args.change or "", delete_all=args.delete_all, seed=args.change_seed)
                except ValueError as error:
                    print(f"zip-etl seed: {error}", file=sys.stderr)
                    return 2
                return 0
            seed_raw_table(args.rows, seed=args.seed, zip_codes=args.zip_codes)
            return 0
        if args.command == "demo":
            from zip_etl.assets.companies import PARTITIONS_PER_RUN
            from zip_etl.cli.demo import demo

            return demo(
                args.rows,
                reseed=args.reseed,
                per_run=args.partitions_per_run or PARTITIONS_PER_RUN,
                workers=args.workers,
                seed=args.seed,
                zip_codes=args.zip_codes,
                debug=args.debug,
            )
        if args.command == "bench" and args.distributed:
            from pathlib import Path

            from zip_etl.assets.companies import PARTITIONS_PER_RUN
            from zip_etl.benchmark.distributed import bench_distributed

            return bench_distributed(
                [int(n) for n in args.worker_counts.split(",")],
                rows=args.rows,
                zip_codes=args.zip_codes,
                partitions_per_run=args.partitions_per_run or PARTITIONS_PER_RUN,
                output=Path(args.output) if args.output else None,
                command="zip-etl " + " ".join(argv if argv is not None else sys.argv[1:]),
            )
        if args.command == "bench":
            from pathlib import Path

            from zip_etl.cli.bench import bench

            shapes = ["many-small", "few-large"] if args.shape == "both" else [args.shape]
            return bench(
                shapes,
                workers=args.workers or os.cpu_count() or 1,
                seed_sample=args.seed_sample,
                to_sql_rows=args.to_sql_rows,
                max_rows_per_run=args.max_rows_per_run,
                output=Path(args.output) if args.output else None,
                command="zip-etl " + " ".join(argv if argv is not None else sys.argv[1:]),
                scale=args.scale,
            )
        if args.command == "refresh":
            from zip_etl.cli.refresh import refresh

            report = refresh(workers=args.workers or os.cpu_count() or 1, dry_plan=args.plan)
            for r in report.failed:
                print(f"  FAILED {r.first}..{r.last}: {r.error}", flush=True)
            return 1 if report.failed else 0
        if args.command == "sizing":
            import psutil

            from zip_etl.cli.sizing import sizing as run_sizing

            budget = args.memory_gb or 0.8 * psutil.virtual_memory().total / 2**30
            from zip_etl.resources import PostgresResource

            return run_sizing(budget, args.samples, args.chunk_rows or PostgresResource().chunk_rows)
        if args.command == "migrate":
            from zip_etl.db.connection import etl_database_url, transaction
            from zip_etl.tables import CLEANED_COMPANIES, migration_statements

            table = CLEANED_COMPANIES.with_name(args.schema, CLEANED_COMPANIES.name)
            with transaction(etl_database_url()) as cursor:
                statements = migration_statements(cursor, table)
                for statement in statements:
                    print(statement.as_string(cursor), flush=True)
                    cursor.execute(statement)
            print(f"{table.schema}.{table.name}: " + ("migrated" if statements else "already up to date"))
            return 0
        if args.command == "load-fixtures":
            from zip_etl.db.connection import etl_database_url, transaction
            from zip_etl.testmode import SAMPLE_TABLE, TRUTH_TABLE, load_fixtures

            with transaction(etl_database_url()) as cursor:
                raw, truth = load_fixtures(cursor)
            print(f"Loaded {raw} rows into {SAMPLE_TABLE.schema}.{SAMPLE_TABLE.name} and {truth} rows into "
                  f"{TRUTH_TABLE.schema}.{TRUTH_TABLE.name}")
            return 0
        if args.command == "check-raw-table":
            from zip_etl.cli.check_raw import check_raw

            return check_raw(args.schema, args.table)
        if args.command == "db":
            from zip_etl.db.connection import embedded_data_dir, etl_database_url, redact_url
            from zip_etl.db.embedded import stop_embedded_server

            if args.action == "stop":
                stopped = stop_embedded_server(embedded_data_dir())
                print("stopped" if stopped else "not running")
            else:
                url = etl_database_url()
                print(redact_url(url) if args.action == "url" else f"running: {redact_url(url)}")
            return 0
    except DatabaseError as error:
        print(f"zip-etl: {error}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
