"""Runs whose process is SIGKILLed are marked failed within a bounded time, never left STARTED: a run of
`dagster asset materialize` (the README's command), a `zip-etl demo` pool worker, and a run the daemon
launched. The run queue and the refresh sensor then go on. Each run is held on a lock of the raw
table so the kill lands mid-run, on a real process, with a real SIGKILL.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from zip_etl.instance import RUN_WORKER_TAG, WARM, ZipEtlRunLauncher, get_instance, local_run_health
from zip_etl.partitions import ZIP_CODES
from zip_etl.run_liveness import PROCESS_TAG, Liveness, RunProcess, liveness, run_process
from zip_etl_tests.helpers import seed_raw

ROOT = Path(__file__).resolve().parents[1]
MONITORING_POLL_SECONDS = 5  # dagster.yaml, run_monitoring.poll_interval_seconds
# The bound documented in docs/RELIABILITY.md: one monitoring pass, plus slack for the daemon's own
# loop on a loaded machine.
MARKED_FAILED_WITHIN = 6 * MONITORING_POLL_SECONDS
WILL_RETRY = "dagster/will_retry"  # Dagster's documented tag: whether the run retries daemon re-launches it


def wait_for(what: str, condition, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def raw_table_locked(etl_url: str):
    """Hold public.raw_companies so that runs reading it wait mid-run until the block ends."""
    conn = psycopg2.connect(etl_url)
    try:
        with conn.cursor() as cur:
            cur.execute("LOCK TABLE public.raw_companies IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        conn.rollback()
        conn.close()


def runs_by_id(instance, run_ids):
    return {run_id: instance.get_run_by_id(run_id) for run_id in run_ids}


def started_runs_with_process(instance, exclude=()):
    """Started runs that recorded their process, newest first."""
    runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
    return [r for r in runs if run_process(r) is not None and r.run_id not in exclude]


def failure_message(instance, run_id) -> str:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return "\n".join(e.message or "" for e in events)


def failed_at(instance, run_id) -> float:
    return min(e.timestamp for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE))


# -- the liveness check itself, on real processes -------------------------------------------------


def test_a_process_is_alive_then_dead_after_sigkill_and_never_judged_elsewhere():
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        process = RunProcess.of(sleeper.pid)
        assert RunProcess.parse(process.tag_value()) == process
        assert liveness(process) is Liveness.ALIVE
        sleeper.send_signal(signal.SIGKILL)
        wait_for("the sleeper to die", lambda: sleeper.poll() is not None, 30)
        assert liveness(process) is Liveness.DEAD
        # The same pid seen later (reused by another process) is not the run's process.
        assert liveness(RunProcess(process.host, process.machine, os.getpid(), process.started)) is Liveness.DEAD
        # A process recorded on another machine is never judged from here, dead or alive.
        elsewhere = RunProcess("another-host", process.machine, sleeper.pid, process.started)
        assert liveness(elsewhere) is Liveness.ELSEWHERE
    finally:
        if sleeper.poll() is None:
            sleeper.kill()


def test_a_zombie_counts_as_dead():
    child = subprocess.Popen(["sleep", "300"])
    process = RunProcess.of(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    wait_for("the child to become a zombie", lambda: liveness(process) is Liveness.DEAD, 30)
    child.wait()


def test_run_monitoring_answer_for_each_kind_of_run(zip_etl_environment):
    """What ZipEtlRunLauncher tells Dagster's run monitoring: FAILED only for a recorded process that is
    gone from this machine; RUNNING (not known dead) for a live one, one on another machine, or none."""
    sleeper = subprocess.Popen(["sleep", "300"])
    try:
        alive = RunProcess.of(sleeper.pid)
        elsewhere = RunProcess("another-host", alive.machine, 1, alive.started)
        with get_instance() as instance:
            assert isinstance(instance.run_launcher, ZipEtlRunLauncher)
            assert instance.run_launcher.supports_check_run_worker_health and instance.run_monitoring_enabled

            def run_with(tags):
                return dg.DagsterRun(job_name="j", run_id=f"r{time.monotonic_ns()}", tags=tags)

            assert local_run_health(run_with({})).status.value == "RUNNING"
            assert local_run_health(run_with({PROCESS_TAG: alive.tag_value()})).status.value == "RUNNING"
            assert local_run_health(run_with({PROCESS_TAG: elsewhere.tag_value()})).status.value == "RUNNING"
            sleeper.kill()
            sleeper.wait()
            health = instance.run_launcher.check_run_worker_health(run_with({PROCESS_TAG: alive.tag_value()}))
            assert health.status.value == "FAILED" and f"pid {sleeper.pid} on {alive.host}" in health.msg
    finally:
        if sleeper.poll() is None:
            sleeper.kill()


# -- a zip-etl demo worker ----------------------------------------------------------------------


@pytest.mark.slow
def test_demo_worker_sigkilled_its_run_is_failed_at_once_and_the_rest_go_on(zip_etl_environment, etl_url):
    keys = ZIP_CODES[:40]
    seed_raw(etl_url, "public", rows=2000, zip_codes=keys, seed=91)
    with get_instance() as instance:
        before = {r.run_id for r in instance.get_runs(limit=500)}
    with raw_table_locked(etl_url):
        demo = subprocess.Popen(
            [sys.executable, "-m", "zip_etl.cli.main", "demo", "--zip-codes", "40", "--partitions-per-run", "10",
             "--workers", "2"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        with get_instance() as instance:
            running = wait_for(
                "two demo runs to start", lambda: (lambda r: r if len(r) >= 2 else None)(
                    [r for r in started_runs_with_process(instance, before)
                     if _parent(run_process(r).pid) == demo.pid]),
                timeout=240)
            victim = running[0]
            pid = run_process(victim).pid
            os.kill(pid, signal.SIGKILL)
            killed_at = time.time()
    output, _ = demo.communicate(timeout=600)
    print(output)

    assert demo.returncode == 1, output
    assert f"FAILED: worker process pid {pid} was killed by signal 9 (SIGKILL) mid-run; run {victim.run_id} " \
           "marked failed" in output
    assert "zip codes done:   30 of 40 (10 failed)" in output  # the other three ranges were written
    with get_instance() as instance:
        runs = [r for r in instance.get_runs(limit=500) if r.run_id not in before]
        statuses = {r.run_id: r.status for r in runs}
        assert statuses[victim.run_id] == dg.DagsterRunStatus.FAILURE
        assert sorted(s.value for s in statuses.values()) == ["FAILURE", "SUCCESS", "SUCCESS", "SUCCESS"]
        # Marked by the pool, or (when `dagster dev` runs too) by run monitoring if it got there first.
        assert f"pid {pid}" in failure_message(instance, victim.run_id)
        seconds = failed_at(instance, victim.run_id) - killed_at
        print(f"demo worker: marked failed {seconds:.1f}s after the SIGKILL")
        assert seconds < 10
        # The CLI's run has no code location a daemon could re-launch it from: not tagged to be retried.
        assert instance.get_run_by_id(victim.run_id).tags[WILL_RETRY] == "false"


def _parent(pid: int) -> int | None:
    import psutil

    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).ppid()
    return None


# -- dagster asset materialize (the README's command) and daemon-launched runs, under dagster dev --


def start_cli_run(zip_code: str) -> subprocess.Popen:
    dagster = Path(sys.executable).parent / "dagster"
    return subprocess.Popen(
        [str(dagster), "asset", "materialize", "-m", "zip_etl.definitions", "--select", "cleaned_companies",
         "--partition", zip_code],
        cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )


from zip_etl_tools.dagster_dev import LAUNCH_RUN  # noqa: E402


def launch_partition(dagster_dev, zip_code: str) -> str:
    """Launch one zip code as the UI's "Materialize" does (through the run queue)."""
    params = {
        "selector": {"repositoryLocationName": "zip_etl", "repositoryName": "__repository__",
                     "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["cleaned_companies"]}]},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": zip_code}]},
    }
    launched = dagster_dev.client()._execute(LAUNCH_RUN, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


@pytest.mark.slow
def test_cli_runs_sigkilled_are_failed_by_run_monitoring_and_the_queue_and_sensor_go_on(
    zip_etl_environment, etl_url, dagster_dev
):
    """Two `dagster asset materialize` runs killed mid-run held both slots of the run queue
    (max_concurrent_runs: 2) and made the refresh sensor wait, forever. Now run monitoring marks them
    failed within one pass; the queued UI run then starts and succeeds, and the sensor plans again."""
    from zip_etl.definitions import defs
    from zip_etl.resources import PostgresResource

    zips = ["10016", "10017", "10018"]
    seed_raw(etl_url, "public", rows=600, zip_codes=zips, seed=92)
    sensor = defs.resolve_sensor_def("refresh_changed_zip_codes")
    with get_instance() as instance:
        before = {r.run_id for r in instance.get_runs(limit=500)}
        with raw_table_locked(etl_url):
            cli_runs = [start_cli_run(z) for z in zips[:2]]
            try:
                victims = wait_for("both CLI runs to start", lambda: (lambda r: r if len(r) == 2 else None)(
                    [r for r in started_runs_with_process(instance, before)
                     if run_process(r).pid in {p.pid for p in cli_runs}]), timeout=240)
                queued = launch_partition(dagster_dev, zips[2])
                # Both slots are held: the UI's run waits in the queue, and the sensor waits too.
                time.sleep(3)
                assert instance.get_run_by_id(queued).status == dg.DagsterRunStatus.QUEUED
                with dg.build_sensor_context(instance=instance, resources={"postgres": PostgresResource()}) as context:
                    waiting = sensor(context)
                assert isinstance(waiting, dg.SkipReason) and "in progress" in waiting.skip_message, waiting

                for process in cli_runs:
                    os.kill(process.pid, signal.SIGKILL)
                killed_at = time.time()
                for process in cli_runs:
                    process.wait(30)
                marked = wait_for(
                    "run monitoring to mark both killed runs failed",
                    lambda: all(instance.get_run_by_id(r.run_id).status == dg.DagsterRunStatus.FAILURE for r in victims),
                    timeout=MARKED_FAILED_WITHIN + 60,
                )
                assert marked
            finally:
                for process in cli_runs:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGKILL)
        for victim in victims:
            seconds = failed_at(instance, victim.run_id) - killed_at
            message = failure_message(instance, victim.run_id)
            print(f"CLI run {victim.run_id[:8]}: marked failed {seconds:.1f}s after the SIGKILL: {message}")
            assert f"({run_process(victim).describe()}) is gone" in message
            assert "show as failed until they are materialized again" in message
            assert seconds < MARKED_FAILED_WITHIN
            # No daemon can re-launch a CLI run (it has no code location): it says so, it is not retried.
            tags = wait_for("the run's retry decision", lambda v=victim: (lambda t: t if WILL_RETRY in t else None)(
                instance.get_run_by_id(v.run_id).tags), timeout=30)
            assert tags[WILL_RETRY] == "false" and tags["dagster/max_retries"] == "0"

        # The queue goes on: the UI's run starts and succeeds.
        wait_for("the queued run to succeed",
                 lambda: instance.get_run_by_id(queued).status == dg.DagsterRunStatus.SUCCESS, timeout=300, interval=1)
        # The sensor goes on: no run of cleaned_companies is in progress, so it plans a refresh.
        with dg.build_sensor_context(instance=instance, resources={"postgres": PostgresResource()}) as context:
            planned = sensor(context)
        assert not (isinstance(planned, dg.SkipReason) and "in progress" in planned.skip_message), planned
        assert not started_runs_with_process(instance, before)
        assert not instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": victims[0].run_id}))


@pytest.mark.slow
def test_daemon_launched_run_sigkilled_is_failed_and_retried(zip_etl_environment, etl_url, dagster_dev):
    """A run the daemon launched (the UI's Materialize), its process SIGKILLed mid-run: marked failed,
    then re-run by Dagster's run retries (dagster.yaml), which writes the zip code."""
    zip_code = "10019"
    seed_raw(etl_url, "public", rows=300, zip_codes=[zip_code], seed=93)
    with get_instance() as instance:
        with raw_table_locked(etl_url):
            run_id = launch_partition(dagster_dev, zip_code)
            run = wait_for("the launched run to start", lambda: (lambda r: r if r.status == dg.DagsterRunStatus.STARTED
                           and run_process(r) else None)(instance.get_run_by_id(run_id)), timeout=240)
            process = run_process(run)
            os.kill(process.pid, signal.SIGKILL)
            killed_at = time.time()
            wait_for("the killed run to be marked failed",
                     lambda: instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE,
                     timeout=MARKED_FAILED_WITHIN + 60)
        seconds = failed_at(instance, run_id) - killed_at
        message = failure_message(instance, run_id)
        print(f"daemon-launched run: marked failed {seconds:.1f}s after the SIGKILL: {message}")
        assert seconds < MARKED_FAILED_WITHIN
        assert f"({process.describe()}) is gone: it was killed by signal 9 (SIGKILL)" in message
        # It ran in a process forked from the warm process, which heard it die.
        assert run.tags[RUN_WORKER_TAG] == WARM
        assert instance.get_run_by_id(run_id).tags[WILL_RETRY] == "true"
        retry = wait_for("the automatic retry", lambda: next(
            (r for r in instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": run_id}))), None), timeout=120)
        wait_for("the retry to succeed",
                 lambda: instance.get_run_by_id(retry.run_id).status == dg.DagsterRunStatus.SUCCESS, timeout=300)
        with psycopg2.connect(etl_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM public.cleaned_companies WHERE zip_code = %s", (zip_code,))
            assert cur.fetchone()[0] > 0
