"""What each data-quality check of cleaned_companies costs the PostgreSQL server over a run's zip codes.

    zip-etl bench --shape few-large --scale 0.2 --output ''   # leaves bench_few_large.cleaned_companies built
    python scripts/check_cost.py --schema bench_few_large --repeat 2

The checks' own code (zip_etl/defs/checks.py) runs over the first half of the table's zip codes, as
it runs for a run of that range, each with the CPU seconds it cost this process and the server. It
runs on the release before the writer resource too (its checks took the IO manager), for a before
and after on the same table: `PYTHONPATH=<that checkout> python scripts/check_cost.py`.
"""

from __future__ import annotations

import argparse
import os
import time
from types import SimpleNamespace

from psycopg2 import sql

from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from zip_etl.db.connection import etl_database_url, transaction
from zip_etl.defs import checks
from zip_etl.resources import PostgresResource
from zip_etl_tools.bench.cpu import CpuMeter

try:
    from zip_etl.resources import PostgresWriter as Writer
except ImportError:  # the release before: the checks took the IO manager
    from zip_etl.resources import PostgresCopyIOManager as Writer

BODIES = {
    "schema_matches_declaration": checks._schema_differences,  # noqa: SLF001 - the checks' bodies, timed one by one
    "key_is_unique": checks._duplicate_keys,  # noqa: SLF001
    "required_values_present": checks._missing_required_values,  # noqa: SLF001
    "zip_codes_are_partitions": checks._unknown_zip_codes,  # noqa: SLF001
    "rows_reconcile": checks._unreconciled_rows,  # noqa: SLF001
}
if hasattr(checks, "_raw_rows_without_partition"):  # a check of the raw table before this release
    BODIES["raw_rows_have_partitions"] = checks._raw_rows_without_partition  # noqa: SLF001


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schema", default="bench_few_large")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    url = etl_database_url()
    meter = CpuMeter(url)
    writer = Writer(postgres=PostgresResource(raw_schema=args.schema), target_schema=args.schema)
    writer = writer.writes() if hasattr(writer, "writes") else writer  # cleaned_companies' writes (this release)
    with transaction(url) as cursor:
        cursor.execute(sql.SQL("SELECT zip_code, rows FROM {} ORDER BY 1").format(
            sql.Identifier(args.schema, "cleaned_companies_partitions")))
        counts = cursor.fetchall()
    keys = [z for z, _ in counts[: len(counts) // 2]]
    rows = sum(n for _, n in counts[: len(counts) // 2])
    print(f"{args.schema}: {len(keys):,} zip codes, {rows:,} cleaned rows; load {os.getloadavg()[0]:.2f}")
    print("| check | passed | seconds | run process CPU s | PostgreSQL CPU s | load (1 min) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    # what a check reads of its run: the range's tags
    run = SimpleNamespace(run=SimpleNamespace(tags={ASSET_PARTITION_RANGE_START_TAG: keys[0],
                                                    ASSET_PARTITION_RANGE_END_TAG: keys[-1]}))
    for _ in range(args.repeat):
        for name, body in BODIES.items():
            with meter.measure() as cpu:
                started = time.perf_counter()
                result = checks.evaluate(run, writer, body)
                seconds = time.perf_counter() - started
            print(f"| {name} | {result.passed} | {seconds:.2f} | {cpu.seconds.client:.2f} | {cpu.seconds.server:.2f} | "
                  f"{os.getloadavg()[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
