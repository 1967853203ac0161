"""A backfill launched the way the UI launches it, run by `dagster dev`'s daemon through the run queue."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zip_etl.db.connection import transaction
from zip_etl.demo_data import generate_raw_companies, write_raw_companies
from zip_etl.partitions import ZIP_CODES
from zip_etl.refresh import AUTO_REFRESH_ENV

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions runs(limit: 100) { runId status tags { key value } } }
  }
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_style_backfill_runs_in_batched_runs_through_the_daemon(zip_etl_environment, query, tmp_path):
    from dagster_graphql import DagsterGraphQLClient

    keys = ZIP_CODES[:2500]  # two runs: 2,000 + 500 zip codes
    with transaction(zip_etl_environment["etl_url"]) as cursor:
        write_raw_companies(cursor, generate_raw_companies(6000, keys, seed=21))
    if query("SELECT to_regclass('public.cleaned_companies') IS NOT NULL")[0][0]:
        query("TRUNCATE public.cleaned_companies")

    port = free_port()
    log = open(tmp_path / "dagster-dev.log", "w")
    # The refresh sensor would start building every missing zip code; this test drives a backfill alone.
    env = {**{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}, AUTO_REFRESH_ENV: "off"}
    server = subprocess.Popen(
        [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        client = DagsterGraphQLClient("127.0.0.1", port_number=port)
        deadline = time.time() + 180
        while True:
            try:
                client._execute("{ version }")
                break
            except Exception:
                if time.time() > deadline or server.poll() is not None:
                    raise AssertionError((tmp_path / "dagster-dev.log").read_text()[-3000:])
                time.sleep(2)

        launched = client._execute(
            LAUNCH,
            {"params": {"assetSelection": [{"path": ["cleaned_companies"]}], "partitionNames": keys}},
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        deadline = time.time() + 600
        while True:
            backfill = client._execute(STATUS, {"id": backfill_id})["partitionBackfillOrError"]
            if backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}:
                break
            assert time.time() < deadline, f"backfill still {backfill['status']}"
            time.sleep(3)

        assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, backfill
        runs = backfill["runs"]
        assert len(runs) == 2 and all(r["status"] == "SUCCESS" for r in runs)
        starts = sorted(
            next(t["value"] for t in r["tags"] if t["key"] == "dagster/asset_partition_range_start") for r in runs
        )
        assert starts == [keys[0], keys[2000]]  # contiguous ranges of BackfillPolicy.multi_run(2000)
        written = query("SELECT count(DISTINCT zip_code), min(zip_code), max(zip_code) FROM public.cleaned_companies")[0]
        with_rows = query("SELECT count(DISTINCT zip_code) FROM public.raw_companies")[0][0]
        assert written[0] > 0.8 * with_rows and written[1] >= keys[0] and written[2] <= keys[-1]
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
        log.close()
