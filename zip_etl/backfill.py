"""Backfills as the CLI runs them: contiguous ranges of zip codes, one Dagster run each, N at once.

Each run is a real Dagster run of the asset job, recorded in the instance's PostgreSQL storage (the
UI shows it), executed in a worker process of a local pool. `dagster dev`'s daemon runs UI-launched
backfills the same way, but through the run queue in dagster.yaml.
"""

from __future__ import annotations

import importlib
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass

from zip_etl.instance import get_instance

@dataclass
class RangeResult:
    first: str
    last: str
    partitions: int
    success: bool
    rows_in: int = 0
    rows_out: int = 0
    rows_rejected: int = 0
    seconds: float = 0.0
    error: str = ""


@dataclass(frozen=True)
class Target:
    """What a backfill materializes: an asset of a Definitions object, with optional resource config."""

    asset: str = "cleaned_companies"
    definitions: str = "zip_etl.definitions:defs"
    resources: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    def run_config(self) -> dict:
        config: dict = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
        if self.resources:
            config["resources"] = {name: {"config": dict(values)} for name, values in self.resources}
        return config

    def job(self):
        module, attr = self.definitions.split(":")
        return getattr(importlib.import_module(module), attr).resolve_implicit_global_asset_job_def()


def materialize_range(keys: list[str], target: Target = Target()) -> RangeResult:
    """One Dagster run of `target` over the contiguous zip codes `keys`, recorded in the instance."""
    first, last, count = keys[0], keys[-1], len(keys)
    import dagster as dg
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    started = time.perf_counter()
    job = target.job()
    with get_instance() as instance:
        try:
            result = job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey(target.asset)],
                tags={**dict(target.tags), ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
                raise_on_error=False,
                # Events are stored in full either way; the terminal only needs warnings.
                run_config=target.run_config(),
            )
        except Exception as error:  # noqa: BLE001 - report, keep the other ranges going
            return RangeResult(first, last, count, False, seconds=time.perf_counter() - started, error=str(error))
        seconds = time.perf_counter() - started
        if not result.success:
            failure = next((e for e in result.all_events if e.is_step_failure), None)
            data = failure.step_failure_data if failure else None
            message = (
                (data.user_failure_data.description if data.user_failure_data else data.error.message).strip()
                if data
                else "run failed"
            )
            return RangeResult(first, last, count, False, seconds=seconds, error=message)
        # Per-zip-code row counts: on materializations, or on observations in debug mode.
        per_partition = [e.metadata for e in result.asset_materializations_for_node(target.asset)] or [
            e.event_specific_data.asset_observation.metadata
            for e in result.all_events
            if e.event_type_value == "ASSET_OBSERVATION"
        ]

        def total(key: str) -> int:
            return sum(int(getattr(m.get(key), "value", 0) or 0) for m in per_partition)

        return RangeResult(
            first, last, count, True,
            rows_in=total("rows_in"), rows_out=total("rows_out"), rows_rejected=total("rows_rejected"), seconds=seconds,
        )


def run_backfill(
    ranges: list[list[str]], *, workers: int, target: Target = Target(), out=sys.stdout
) -> list[RangeResult]:
    """Run every range as its own Dagster run, `workers` at a time; print progress as runs finish."""
    keys = [key for r in ranges for key in r]
    with get_instance():  # creates Dagster's storage tables once, before the workers race to
        pass
    results: list[RangeResult] = []
    started = time.perf_counter()
    done_partitions = 0
    print(f"Materializing {len(keys):,} zip codes in {len(ranges)} runs, {workers} at a time", file=out, flush=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(materialize_range, r, target) for r in ranges]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            done_partitions += result.partitions
            status = "ok" if result.success else f"FAILED: {result.error}"
            print(
                f"[{len(results)}/{len(ranges)} runs, {done_partitions:,}/{len(keys):,} zip codes, "
                f"{time.perf_counter() - started:.0f}s] {result.first}..{result.last}: "
                f"{result.rows_in:,} rows in, {result.rows_out:,} out, {result.rows_rejected:,} rejected "
                f"({result.seconds:.1f}s) {status}",
                file=out,
                flush=True,
            )
    return results
