"""The Celery deployment (deploy/celery, docs/DEPLOYMENT.md) with its real pieces on this machine.

redis-server, a PostgreSQL server on TCP, two `dagster-celery` workers (each in its own network
namespace with its own address and hostname when the tests run as root, reaching Redis and
PostgreSQL over its own link; processes on loopback otherwise) and `dagster dev` with
deploy/celery/dagster.yaml. A backfill launched through the webserver's GraphQL API must be spread
over both workers, survive one of them being SIGKILLed mid-run, and leave every zip code's cleaned
rows in PostgreSQL exactly once.
"""

import os
import re
import time

import pytest

from zip_etl.db.connection import transaction
from zip_etl.demo_data import generate_raw_companies, write_raw_companies
from zip_etl.partitions import ZIP_CODES
from zip_etl.transform.cleaning import clean_companies
from zip_etl_tools.local_cluster import LocalCeleryCluster

pytestmark = pytest.mark.slow

KEYS = ZIP_CODES[:400]
PER_RUN = 50  # 8 runs, so that both workers get several


def _seed(etl_url: str, rows: int, seed: int) -> dict:
    """Raw rows for KEYS in public.raw_companies; the cleaned row count each zip code must end with."""
    raw = generate_raw_companies(rows, KEYS, seed=seed)
    write_raw_companies(etl_url, raw)
    return clean_companies(raw).cleaned.groupby("zip_code").size().to_dict()


def _written(etl_url: str) -> dict:
    """Cleaned rows per zip code in PostgreSQL (the primary key rules out duplicate records)."""
    with transaction(etl_url) as cursor:
        cursor.execute("SELECT zip_code, count(*), count(DISTINCT record_id) FROM public.cleaned_companies GROUP BY 1")
        rows = cursor.fetchall()
    assert all(n == distinct for _, n, distinct in rows), "duplicate records in cleaned_companies"
    return {zip_code: n for zip_code, n, _ in rows}


def _cluster(workers: int = 2) -> LocalCeleryCluster:
    # Its own PostgreSQL server, reached over TCP: from the worker hosts through their own links.
    return LocalCeleryCluster(workers, dict(os.environ), partitions_per_run=PER_RUN, own_database=True)


def _run_workers(instance, run_ids) -> dict:
    """The `worker` each run's observation of its facts names (hostname and pid of the process that ran it)."""
    from dagster import DagsterEventType

    workers = {}
    for run_id in run_ids:
        for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_OBSERVATION):
            metadata = record.dagster_event.asset_observation_data.asset_observation.metadata
            if "worker" in metadata:
                workers[run_id] = metadata["worker"].value
    return workers


def test_backfill_is_spread_over_two_worker_hosts_and_written_once():
    with _cluster() as cluster:
        expected = _seed(cluster.etl_url, 8000, seed=71)
        backfill_id = cluster.dagster.launch_backfill(KEYS)
        backfill = cluster.dagster.wait_for_backfill(backfill_id)
        assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, backfill
        runs = backfill["runs"]
        assert len(runs) == len(KEYS) // PER_RUN and all(r["status"] == "SUCCESS" for r in runs), runs
        with cluster.instance() as instance:
            workers = _run_workers(instance, [r["runId"] for r in runs])
        print(f"namespaces: {cluster.isolate}; run -> worker: {workers}")
        hosts = {w.split(" pid ")[0] for w in workers.values()}
        if cluster.isolate:  # one hostname per namespace, each host on its own address
            assert hosts == {w.host.name for w in cluster.workers}, workers
            assert {w.host.address for w in cluster.workers} <= cluster.postgres.client_addresses()
        else:
            assert len(set(workers.values())) >= 2, workers
        assert _written(cluster.etl_url) == expected


def test_worker_killed_mid_run_its_range_is_rerun_elsewhere():
    with _cluster() as cluster:
        expected = _seed(cluster.etl_url, 200_000, seed=72)  # runs of a few seconds: the kill lands mid-run
        app = cluster.celery_app()
        backfill_id = cluster.dagster.launch_backfill(KEYS)
        killed = {}

        def kill_a_worker_mid_run(backfill):
            if killed:
                return
            for run in backfill["runs"]:
                tags = {t["key"]: t["value"] for t in run["tags"]}
                if run["status"] != "STARTED" or "dagster-celery/task_id" not in tags:
                    continue
                info = app.AsyncResult(tags["dagster-celery/task_id"]).info
                holder = info.get("hostname") if isinstance(info, dict) else None
                victim = next((w for w in cluster.workers if w.node_name == holder), None)
                if victim:
                    victim.kill()
                    killed.update(run_id=run["runId"], worker=victim, at=time.time())
                    return

        backfill = cluster.dagster.wait_for_backfill(backfill_id, on_poll=kill_a_worker_mid_run, poll_seconds=0.3)
        assert killed, "no run was seen running on a worker"
        with cluster.instance() as instance:
            runs = {r.run_id: r for r in instance.get_runs()}
            dead = runs[killed["run_id"]]
            retries = [r for r in runs.values() if r.tags.get("dagster/parent_run_id") == killed["run_id"]]
            workers = _run_workers(instance, [r.run_id for r in retries])
            why = [e.message for e in instance.all_logs(killed["run_id"]) if "pings" in (e.message or "")]
        print(f"killed {killed['worker'].host.name} during run {killed['run_id']}; monitoring: {why}; "
              f"retry {[r.run_id for r in retries]} on {workers}; backfill {backfill['status']}")
        # FAILURE, not SUCCESS: the worker died before the run could finish.
        assert dead.status.value == "FAILURE" and why, "the killed worker had finished its run already"
        assert len(retries) == 1 and retries[0].status.value == "SUCCESS", (backfill, retries)
        survivor = next(w for w in cluster.workers if w is not killed["worker"])
        if cluster.isolate:
            assert workers[retries[0].run_id].startswith(survivor.host.name), workers
        for range_tag in ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end"):
            assert retries[0].tags[range_tag] == dead.tags[range_tag]
        # Every zip code's rows exactly once: the killed run's range was written by its retry alone
        # (or, had it committed before dying, replaced by it in one transaction).
        assert _written(cluster.etl_url) == expected


def test_distributed_bench_at_a_tiny_scale_measures_each_worker_count(zip_etl_environment, tmp_path):
    """`zip-etl bench --distributed --scale 0.02` (docs/BENCHMARKS.md's several-machines block, tiny):
    each shape's backfill on 1 and 2 Celery workers, every row accounted for, the runs spread over the
    workers, and CPU measured for the workers and the server (the figures themselves mean nothing here)."""
    from zip_etl.cli.main import main
    from zip_etl_tools.bench.distributed import DISTRIBUTED_SHAPES
    from zip_etl_tools.local_cluster import namespaces_available

    report = tmp_path / "BENCHMARKS.md"
    report.write_text("# Benchmarks\n")
    assert main(["bench", "--distributed", "--scale", "0.02", "--worker-counts", "1,2", "--output", str(report)]) == 0

    text = report.read_text()
    for shape in DISTRIBUTED_SHAPES:
        section = text.split(f"### Celery deployment, {shape}:")[1].split("### Celery")[0]
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()
                if re.match(r"\| \d+ \|", line)]
        assert [r[0] for r in rows] == ["1", "2"], section
        for workers, hosts, runs, spread, *figures in rows:
            assert hosts == ("own netns each" if namespaces_available() else "loopback")
            assert int(runs) >= 2, section
            if hosts == "own netns each":  # one host name per worker: the spread is known
                counts = [int(n) for n in spread.split(",")]
                assert sum(counts) == int(runs) and len(counts) == int(workers), section
            seconds, span, worker_cpu, server_cpu, control_cpu, worker_us, server_us, load = figures
            assert 0 < float(span) <= float(seconds), section
            assert all(float(v.replace(",", "")) > 0 for v in (worker_cpu, server_cpu, worker_us, server_us)), section
        accounted = re.search(r"^- rows in = written \+ quarantined: (.*)$", section, re.M).group(1)
        for rows_in, written, quarantined in re.findall(r"([\d,]+) = ([\d,]+) \+ ([\d,]+)", accounted):
            rows_in, written, quarantined = (int(n.replace(",", "")) for n in (rows_in, written, quarantined))
            assert rows_in == written + quarantined and written > 0, accounted
