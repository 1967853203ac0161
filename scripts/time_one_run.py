"""Time one batched Dagster run of cleaned_companies, as `zip-etl demo` runs it.

    python scripts/time_one_run.py --per-run 2000 --index 1

Uses the raw table already seeded (`zip-etl seed`) and the zip_etl instance (dagster.yaml). Set
Dagster's switches in the environment to compare, e.g. DAGSTER_EVENT_BATCH_SIZE=0
DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS=false for Dagster's defaults.
"""

import argparse
import time

from zip_etl.cli.local_runs import materialize_range
from zip_etl.partitions import ZIP_CODES, partition_ranges

parser = argparse.ArgumentParser()
parser.add_argument("--per-run", type=int, default=2000, help="zip codes in the run")
parser.add_argument("--index", type=int, default=1, help="which range of the partition order")
args = parser.parse_args()

keys = partition_ranges(ZIP_CODES, args.per_run)[args.index]
started = time.perf_counter()
result = materialize_range(keys)
print(f"{keys[0]}..{keys[-1]} ({len(keys)} zip codes, {result.rows_in:,} rows): run {result.seconds:.1f}s, "
      f"with process start-up {time.perf_counter() - started:.1f}s, success={result.success}")
