"""Time one batched Dagster run of cleaned_companies, as `zip-etl demo` runs it, and show what Dagster
stored for it: events per type and their serialized bytes, so the per-partition bookkeeping can be
compared across commits.

    python scripts/event_cost.py --per-run 2000 --index 1

Uses the raw table already seeded (`zip-etl seed`) and the zip_etl instance (dagster.yaml); set
Dagster's switches in the environment to compare, e.g. DAGSTER_EVENT_BATCH_SIZE=0 for its default. The
bytes are each event as the event log stores it (`serialize_value` of its entry). It also runs on a
checkout from before the package's restructure (where the runner lived in `zip_etl.backfill`), which
is how docs/BENCHMARKS.md gets its "before" figures.
"""

import argparse
import time
from collections import defaultdict

import dagster as dg

try:
    from zip_etl.cli.local_runs import materialize_range
except ImportError:  # a checkout from before the restructure
    from zip_etl.backfill import materialize_range
from zip_etl.instance import get_instance
from zip_etl.partitions import ZIP_CODES, partition_ranges

parser = argparse.ArgumentParser()
parser.add_argument("--per-run", type=int, default=2000, help="zip codes in the run")
parser.add_argument("--index", type=int, default=1, help="which range of the partition order")
args = parser.parse_args()

keys = partition_ranges(ZIP_CODES, args.per_run)[args.index]
started = time.perf_counter()
result = materialize_range(keys)
wall = time.perf_counter() - started
with get_instance() as instance:
    run = instance.get_runs(limit=1)[0]
    per_type: dict[str, list[int]] = defaultdict(list)
    partitioned = 0
    for entry in instance.all_logs(run.run_id):
        kind = entry.dagster_event.event_type_value if entry.dagster_event else "log message"
        per_type[kind].append(len(dg.serialize_value(entry)))
        if entry.dagster_event and entry.dagster_event.partition:
            partitioned += 1

print(f"{keys[0]}..{keys[-1]}: {len(keys)} zip codes, {result.rows_in:,} rows, success={result.success}; "
      f"run {result.seconds:.2f} s ({result.seconds / len(keys) * 1000:.2f} ms per zip code), "
      f"with process start-up {wall:.2f} s")
total = sum(sum(sizes) for sizes in per_type.values())
print(f"events: {sum(map(len, per_type.values())):,} ({partitioned:,} of them per partition), "
      f"{total / 1024:,.0f} KiB serialized, {total / len(keys):,.0f} bytes per zip code")
print("| event type | events | KiB | bytes per event |")
print("| --- | ---: | ---: | ---: |")
for kind, sizes in sorted(per_type.items(), key=lambda item: -sum(item[1])):
    print(f"| {kind} | {len(sizes):,} | {sum(sizes) / 1024:,.0f} | {sum(sizes) / len(sizes):,.0f} |")
