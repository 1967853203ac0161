"""Time the refresh cycle on the many-small benchmark data (1,000,000 rows over all 41,749 zip codes).

    python scripts/bench_refresh.py [--reseed] [--builtin-sample 2000]

Uses schema `bench_many_small` (seeded as `zip-etl bench` seeds it, unless present) and the zip_etl
instance (dagster.yaml). Steps: build whatever is stale or missing; time the change detection over
every zip code with nothing changed; apply a change set to 10 zip codes (9 changed, 1 emptied);
time the detection, the sensor tick, the observation run and the refresh of those 10; then time
Dagster's built-ins on the same state (its stale-status resolver per partition, and Declarative
Automation's `eager()` condition). Prints each figure with the load average at the time.
"""

from __future__ import annotations

import argparse
import os
import time

import dagster as dg

from zip_etl.cli.local_runs import Target
from zip_etl.cli.refresh import observe_raw, refresh
from zip_etl.db.connection import etl_database_url, transaction
from zip_etl.definitions import defs
from zip_etl.demo_data import apply_change_set, pick_zip_codes_with_rows
from zip_etl.instance import get_instance
from zip_etl.partitions import ZIP_CODES
from zip_etl.provenance import latest_data_versions, recorded_data_versions
from zip_etl.refresh import CLEANED_KEY, RAW_KEY, plan_refresh
from zip_etl.resources import PostgresResource, PostgresWriter
from zip_etl.tables import RAW_COMPANIES
from zip_etl_tools.bench.command import machine_description
from zip_etl_tools.bench.shapes import SHAPES, seed
from zip_etl_tools.stale_status import dagster_stale_status_resolver

SCHEMA = "bench_many_small"
TARGET = Target(resources=(("postgres", (("raw_schema", SCHEMA),)), ("postgres_writer", (("target_schema", SCHEMA),))))


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(label: str, fn):
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    print(f"| {label} | {seconds:,.2f} | {load()} |", flush=True)
    return value, seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--builtin-sample", type=int, default=2000, help="partitions for Dagster's stale resolver")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--automation-only", action="store_true", help="only the Declarative Automation comparison")
    args = parser.parse_args()

    print(f"machine: {machine_description()}", flush=True)
    postgres = PostgresResource(raw_schema=SCHEMA)
    with transaction(etl_database_url()) as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.raw_companies",))
        present = cursor.fetchone()[0]
    if args.reseed or not present:
        seed(SHAPES["many-small"], etl_database_url(), reseed=args.reseed)  # as `zip-etl bench` seeds it

    print("| step | seconds | load average (1, 5, 15 min) |\n| --- | ---: | --- |", flush=True)
    table = RAW_COMPANIES.with_name(SCHEMA, "raw_companies")
    if not args.automation_only:
        refresh_cycle(args, postgres, table)
    automation_comparison(args, postgres, table)


def refresh_cycle(args, postgres, table) -> None:
    first, _ = timed("bring every zip code up to date (first time: observe all, build all)",
                     lambda: refresh(workers=args.workers, target=TARGET, out=_Null()))
    assert not first.failed, first.failed[:1]
    with get_instance() as instance:
        timed("  one query: raw data version of every zip code (PostgreSQL)", lambda: postgres.raw_data_versions())
        timed("  one query: latest observed raw version per partition (Dagster)",
              lambda: latest_data_versions(instance, RAW_KEY, dg.DagsterEventType.ASSET_OBSERVATION))
        timed("  two queries: recorded provenance per cleaned partition (Dagster)",
              lambda: recorded_data_versions(instance, CLEANED_KEY))
        plan, _ = timed("detect changes over all 41,749 zip codes, nothing changed", lambda: plan_refresh(instance, postgres))
        assert not plan.stale and not plan.missing, plan.summary()

    with transaction(etl_database_url()) as cursor:
        picked = pick_zip_codes_with_rows(cursor, table, 10, seed=2026)
        apply_change_set(cursor, picked[:9], delete_all=picked[9:], seed=2026, table=table)
    print(f"changed zip codes: {', '.join(picked)} (the last one emptied)", flush=True)

    sensor = defs.resolve_sensor_def("refresh_changed_zip_codes")
    with get_instance() as instance:
        plan, _ = timed("detect changes over all 41,749 zip codes, 10 changed", lambda: plan_refresh(instance, postgres))
        assert plan.stale == picked, (plan.stale, picked)
        tick, _ = timed("sensor tick (same check, run requests built)", lambda: sensor.evaluate_tick(
            dg.build_sensor_context(instance=instance, resources={"postgres": postgres})))
        print(f"  sensor asked for {len(tick.run_requests)} runs: "
              f"{[r.job_name for r in tick.run_requests].count('refresh_cleaned_companies')} refresh runs + observation",
              flush=True)
    timed("observation run: record the 10 new raw versions", lambda: observe_raw(TARGET))

    with get_instance() as instance:
        resolver = dagster_stale_status_resolver(instance, defs)
        sample = ZIP_CODES[: args.builtin_sample]
        statuses, seconds = timed(f"Dagster's stale-status resolver, {len(sample):,} partitions (built-in, per partition)",
                                  lambda: [resolver.get_status(CLEANED_KEY, z) for z in sample])
        print(f"  = {1000 * seconds / len(sample):.2f} ms per partition; "
              f"stale in sample: {sum(s.value == 'STALE' for s in statuses)}", flush=True)

    report, _ = timed("refresh the 10 changed zip codes (plan + runs)",
                      lambda: refresh(workers=args.workers, target=TARGET, observe=False, out=_Null()))
    assert not report.failed and sorted(k for r in report.plan.ranges for k in r) == picked
    print(f"  {len(report.plan.ranges)} runs; run seconds: {[round(r.seconds, 1) for r in report.results]}", flush=True)



def automation_comparison(args, postgres, table) -> None:
    # Declarative Automation on the same state: a first tick (sets its cursor), then a change in 10
    # more zip codes and their observation, then a second tick: what does eager() ask for, how fast?
    eager_defs = dg.Definitions(
        assets=[_raw(), _cleaned_eager()],
        resources={
            "postgres": postgres,
            "postgres_writer": PostgresWriter(postgres=postgres, target_schema=SCHEMA),
        },
    )
    with get_instance() as instance:
        first_tick, _ = timed("Declarative Automation: eager() over cleaned_companies, first tick (built-in)",
                              lambda: dg.evaluate_automation_conditions(defs=eager_defs, instance=instance))
        print(f"  requested {first_tick.total_requested} partition(s)", flush=True)
    with transaction(etl_database_url()) as cursor:
        more = pick_zip_codes_with_rows(cursor, table, 10, seed=7)
        apply_change_set(cursor, more, seed=7, table=table)
    observe_raw(TARGET)
    with get_instance() as instance:
        second_tick, _ = timed("Declarative Automation: eager(), tick after 10 more zip codes changed (built-in)",
                               lambda: dg.evaluate_automation_conditions(
                                   defs=eager_defs, instance=instance, cursor=first_tick.cursor))
        requested = sorted(second_tick.get_requested_partitions(CLEANED_KEY))
        print(f"  requested {second_tick.total_requested} partition(s): {requested} (changed: {more})", flush=True)
    report, _ = timed("refresh those 10 with zip_etl's refresh (restores the state)",
                      lambda: refresh(workers=args.workers, target=TARGET, observe=False, out=_Null()))
    assert not report.failed


def _raw():
    from zip_etl.definitions import raw_companies

    return raw_companies


def _cleaned_eager():
    from zip_etl.definitions import cleaned_companies

    return cleaned_companies.with_attributes(automation_condition=dg.AutomationCondition.eager())


class _Null:
    def write(self, text: str) -> None:
        pass

    def flush(self) -> None:
        pass


if __name__ == "__main__":
    main()
