"""dagster-celery's `CeleryRunLauncher`, told when a worker machine has died.

`CeleryRunLauncher` hands each run to a Celery worker and reports the run's health from the Celery
task state. A worker that is killed outright (SIGKILL, power loss) never updates that state: its
task stays STARTED forever, so Dagster's run monitoring would wait on it forever. This subclass
adds one check: for a STARTED task, ask the worker that holds it (named in the task's STARTED
record) to answer a ping over the broker. A worker that does not answer several pings is reported
FAILED; run monitoring then marks the run failed and Dagster's run retries re-execute its zip codes
on a live worker (deploy/celery/dagster.yaml turns both on). Pings are answered by a worker's main
process, so a worker busy with a long run still answers.

Runs that no Celery worker holds (started by `dagster asset materialize` or the zip-etl CLI) are
judged like on one machine (`zip_etl.instance.local_run_health`): failed when their recorded process
is gone from the machine running the daemon, never judged when it ran on another machine.
"""

from __future__ import annotations

import time

from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG

from zip_etl.dagster_internals import CheckRunHealthResult, WorkerStatus
from zip_etl.instance import local_run_health

PING_ATTEMPTS = 3
PING_TIMEOUT_SECONDS = 2.0


class CeleryWorkerRunLauncher(CeleryRunLauncher):
    """`CeleryRunLauncher` whose health check also notices a worker that is gone."""

    def check_run_worker_health(self, run) -> CheckRunHealthResult:
        if DAGSTER_CELERY_TASK_ID_TAG not in run.tags:
            # Not a Celery run: `dagster asset materialize` or the zip-etl CLI on one of the machines.
            # Judged by its recorded process when that is on this machine, else left alone.
            return local_run_health(run)
        result = super().check_run_worker_health(run)
        if result.status != WorkerStatus.RUNNING:
            return result
        info = self.celery.AsyncResult(run.tags[DAGSTER_CELERY_TASK_ID_TAG]).info
        worker = info.get("hostname") if isinstance(info, dict) else None
        if not worker:
            return result
        for attempt in range(PING_ATTEMPTS):
            if self.celery.control.ping(destination=[worker], timeout=PING_TIMEOUT_SECONDS):
                return result
            if attempt + 1 < PING_ATTEMPTS:
                time.sleep(PING_TIMEOUT_SECONDS)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"Celery worker {worker} holds this run but answered none of {PING_ATTEMPTS} pings: "
            "it has stopped (killed, or its machine is down).",
        )
