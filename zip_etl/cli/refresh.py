"""`zip-etl refresh`: one refresh cycle from the CLI, exactly what the sensor decides, run in the
CLI's pool: record new raw versions, then rebuild the stale and missing zip codes in ranges."""

from __future__ import annotations

import importlib
import os
import sys
import time
from dataclasses import dataclass, field

import click

from zip_etl.cli.local_runs import RangeResult, Target, run_backfill
from zip_etl.instance import get_instance
from zip_etl.partitions import ZIP_CODES
from zip_etl.refresh import REFRESH_TAG, RefreshPlan, plan_refresh


@dataclass
class RefreshReport:
    plan: RefreshPlan
    plan_seconds: float
    observe_seconds: float = 0.0
    refresh_seconds: float = 0.0
    results: list[RangeResult] = field(default_factory=list)

    @property
    def failed(self) -> list[RangeResult]:
        return [r for r in self.results if not r.success]


def _postgres(target: Target):
    from zip_etl.resources import PostgresResource

    config = dict(dict(target.resources).get("postgres", ()))
    return PostgresResource(**config)


def observe_raw(target: Target = Target()) -> None:
    """One run of the observe_raw_companies job: records the zip codes whose raw version changed."""
    module, attr = target.definitions.split(":")
    job = getattr(importlib.import_module(module), attr).resolve_job_def("observe_raw_companies")
    with get_instance() as instance:
        result = job.execute_in_process(instance=instance, run_config=target.run_config(), raise_on_error=False)
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        raise RuntimeError(f"observing raw_companies failed: {failure.message if failure else 'run failed'}")


@click.command("refresh")
@click.option("--workers", type=int, default=None, help="runs at once (default: CPU cores)")
@click.option("--plan", "dry_plan", is_flag=True, help="only report what is stale or missing")
@click.option("--all", "everything", is_flag=True,
              help="rebuild every zip code, whatever its recorded provenance (e.g. after upgrading a library)")
def refresh_command(workers, dry_plan, everything):
    """Rebuild only the zip codes whose raw rows (or cleaning code) changed, or never built, in batched runs."""
    report = refresh(workers=workers or os.cpu_count() or 1, dry_plan=dry_plan, everything=everything)
    for r in report.failed:
        click.echo(f"  FAILED {r.first}..{r.last}: {r.error}")
    raise SystemExit(1 if report.failed else 0)


def refresh(*, workers: int, target: Target = Target(), partition_keys=ZIP_CODES, dry_plan: bool = False,
            observe: bool = True, everything: bool = False, out=sys.stdout) -> RefreshReport:
    """`observe=False` skips recording raw versions (the refresh itself does not need them; the UI's
    per-partition versions and stale status do)."""
    started = time.perf_counter()
    with get_instance() as instance:
        plan = plan_refresh(instance, _postgres(target), partition_keys=partition_keys, everything=everything)
    report = RefreshReport(plan, time.perf_counter() - started)
    print(f"Checked {len(partition_keys):,} zip codes in {report.plan_seconds:.1f}s: {plan.summary()}", file=out, flush=True)
    if dry_plan:
        return report
    if observe and plan.observed_changes:
        started = time.perf_counter()
        observe_raw(target)
        report.observe_seconds = time.perf_counter() - started
        print(f"Recorded the new raw versions (observe_raw_companies) in {report.observe_seconds:.1f}s",
              file=out, flush=True)
    if plan.ranges:
        started = time.perf_counter()
        tagged = Target(target.asset, target.definitions, target.resources, (*target.tags, (REFRESH_TAG, "true")))
        report.results = run_backfill(plan.ranges, workers=workers, target=tagged, out=out)
        report.refresh_seconds = time.perf_counter() - started
    return report
