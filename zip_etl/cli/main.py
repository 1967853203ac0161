"""Entry point of the `zip-etl` console script."""

from __future__ import annotations

import argparse
import logging
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

    demo = commands.add_parser("demo", help="seed if needed, then materialize every zip code through Dagster")
    demo.add_argument("--rows", type=int, default=DEFAULT_DEMO_ROWS, help="rows to seed (default %(default)s)")
    demo.add_argument("--reseed", action="store_true", help="regenerate the raw table even if it exists")
    demo.add_argument("--seed", type=int, default=42)
    demo.add_argument("--partitions-per-run", type=int, default=None, help="zip codes per Dagster run")
    demo.add_argument("--workers", type=int, default=None, help="runs at once (default: CPU cores)")
    demo.add_argument("--zip-codes", type=int, default=None, help="only the first N zip codes (default: all)")

    db = commands.add_parser("db", help="the embedded PostgreSQL server")
    db.add_argument("action", choices=["start", "stop", "url"])
    return parser


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = _parser().parse_args(argv)
    from zip_etl.db.connection import DatabaseError

    try:
        if args.command == "seed":
            from zip_etl.cli.seed import seed_raw_table

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
            )
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
