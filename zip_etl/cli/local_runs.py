"""Backfills as the CLI runs them: contiguous ranges of zip codes, one Dagster run each, N at once.

Each run is a real Dagster run of the asset job, recorded in the instance's PostgreSQL storage (the
UI shows it), executed in a worker process of its own, N at a time. `dagster dev`'s daemon runs UI-launched
backfills the same way, but through the run queue in dagster.yaml.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import sys
import time
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait

from zip_etl.cli.progress import Progress
from zip_etl.instance import get_instance, this_process_runs_one_run
from zip_etl.run_liveness import dead_process_message, how_it_ended


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
    what_if: dict | None = None
    """A debug run's what-if totals (see `what_if_facts`); None for other runs."""


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


def materialize_range(keys: list[str], target: Target = Target(), run_id: str | None = None) -> RangeResult:
    """One Dagster run of `target` over the contiguous zip codes `keys`, recorded in the instance
    (with the id `run_id` when given, so that whoever started it can find the run)."""
    first, last, count = keys[0], keys[-1], len(keys)
    import dagster as dg

    from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

    started = time.perf_counter()
    job = target.job()
    with get_instance() as instance:
        try:
            result = job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey(target.asset)],
                tags={**dict(target.tags), ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last},
                raise_on_error=False,
                run_id=run_id,
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

        run_metadata = [
            e.event_specific_data.asset_observation.metadata
            for e in result.all_events
            if e.event_type_value == "ASSET_OBSERVATION" and e.event_specific_data.asset_observation.partition is None
        ]
        return RangeResult(
            first, last, count, True,
            rows_in=total("rows_in"), rows_out=total("rows_out"), rows_rejected=total("rows_rejected"), seconds=seconds,
            what_if=what_if_facts(run_metadata[-1]) if run_metadata else None,
        )


def what_if_facts(metadata) -> dict | None:
    """The what-if totals of a debug run's run-level observation, as plain values; None if it has none."""
    from zip_etl.what_if import COUNTS

    if "what_if_compared_with" not in metadata:
        return None
    value = {key: entry.value for key, entry in metadata.items() if key.startswith("what_if_")}
    return {
        "compared_with": value["what_if_compared_with"],
        "zip_codes_compared": value["what_if_zip_codes_compared"],
        "zip_codes_with_differences": value["what_if_zip_codes_with_differences"],
        "totals": {name: value[f"what_if_{name}"] for name in COUNTS},
        "column_changes": {key.removeprefix("what_if_changed_"): n for key, n in value.items()
                           if key.startswith("what_if_changed_")},
        "examples": list(value["what_if_examples"]),
    }


def _worker_main(keys: list[str], target: Target, run_id: str, results: Connection) -> None:
    """A pool worker: one range, its result sent back to the parent."""
    this_process_runs_one_run()
    try:
        result = materialize_range(keys, target, run_id)
    except BaseException as error:  # noqa: BLE001 - the parent must hear back, whatever happened
        result = RangeResult(keys[0], keys[-1], len(keys), False, error=f"{type(error).__name__}: {error}")
    results.send(result)
    results.close()


@dataclass
class _Worker:
    keys: list[str]
    run_id: str
    process: multiprocessing.process.BaseProcess
    results: Connection
    started: float


def _worker_died(worker: _Worker) -> RangeResult:
    """The result of a worker that died mid-run (SIGKILL, the OOM killer): its run, if it was
    created, is marked failed at once, so it does not stay STARTED."""
    how = how_it_ended(worker.process.exitcode)
    message = dead_process_message(f"pool worker pid {worker.process.pid}", how)
    marked = ""
    with contextlib.suppress(Exception), get_instance() as instance:
        run = instance.get_run_by_id(worker.run_id)
        if run is not None and not run.is_finished:
            instance.report_run_failed(run, message)
        run = instance.get_run_by_id(worker.run_id)
        if run is not None and run.status.value == "FAILURE":  # by us, or first by a daemon's run monitoring
            marked = f"; run {worker.run_id} marked failed"
    return RangeResult(
        worker.keys[0], worker.keys[-1], len(worker.keys), False, seconds=time.perf_counter() - worker.started,
        error=f"worker process pid {worker.process.pid} {how} mid-run{marked}",
    )


def run_backfill(
    ranges: list[list[str]], *, workers: int, target: Target = Target(), out=sys.stdout
) -> list[RangeResult]:
    """Run every range as its own Dagster run, `workers` at a time, each in a process of its own;
    print progress as runs finish.

    A process per range rather than a process pool: when a pool's worker is killed, the pool breaks
    and terminates its other workers mid-run. Here a worker that dies fails only its own range: its
    run is marked failed at once and the other ranges go on.
    """
    keys = [key for r in ranges for key in r]
    with get_instance():  # creates Dagster's storage tables once, before the workers race to
        pass
    target.job()  # resolved once here: forked workers inherit it instead of each resolving it again
    context = multiprocessing.get_context()
    results: list[RangeResult] = []
    started = time.perf_counter()
    done_partitions = 0
    pending = list(ranges)
    running: dict[int, _Worker] = {}
    print(f"Materializing {len(keys):,} zip codes in {len(ranges)} runs, {workers} at a time", file=out, flush=True)
    with Progress(len(keys), "Materializing", unit="zip codes", out=out) as progress:
        try:
            while pending or running:
                while pending and len(running) < workers:
                    range_keys = pending.pop(0)
                    receiver, sender = context.Pipe(duplex=False)
                    run_id = str(uuid.uuid4())
                    process = context.Process(target=_worker_main, args=(range_keys, target, run_id, sender), daemon=False)
                    process.start()
                    sender.close()
                    running[process.sentinel] = _Worker(range_keys, run_id, process, receiver, time.perf_counter())
                # A worker is done when its result arrives, or when its process ends without one.
                ready = wait([*running, *(w.results for w in running.values())])
                for sentinel, worker in list(running.items()):
                    if worker.results not in ready and sentinel not in ready:
                        continue
                    try:
                        result = worker.results.recv() if worker.results.poll() else None
                    except (EOFError, OSError):
                        result = None
                    if result is None and worker.process.is_alive():
                        continue  # its pipe closed first; its exit follows
                    worker.process.join()
                    worker.results.close()
                    del running[sentinel]
                    result = result or _worker_died(worker)
                    results.append(result)
                    done_partitions += result.partitions
                    status = "ok" if result.success else f"FAILED: {result.error}"
                    progress.advance(
                        result.partitions,
                        f"[{len(results)}/{len(ranges)} runs, {done_partitions:,}/{len(keys):,} zip codes, "
                        f"{time.perf_counter() - started:.0f}s] {result.first}..{result.last}: "
                        f"{result.rows_in:,} rows in, {result.rows_out:,} out, {result.rows_rejected:,} rejected "
                        f"({result.seconds:.1f}s) {status}",
                    )
        finally:
            for worker in running.values():  # interrupted (Ctrl-C): the workers got the same signal
                worker.process.join(30)
    return results
