"""Backfills launched the way the UI launches them, run by `dagster dev`'s daemon through the run queue,
and what the UI's API says meanwhile: partitions materializing while their run executes, failed when
it fails, and the table's total rows on the asset."""

import os
import time

import dagster as dg
import pytest

from zip_etl import settings
from zip_etl.demo_data import generate_raw_companies, write_raw_companies
from zip_etl.partitions import ZIP_CODES, zip_code_partitions

STATUSES = """
{ assetNodeOrError(assetKey: {path: ["cleaned_companies"]}) {
    ... on AssetNode { assetPartitionStatuses { ... on DefaultPartitionStatuses {
        materializedPartitions materializingPartitions failedPartitions } } } } }"""
TABLE_ROWS = """
{ assetOrError(assetKey: {path: ["cleaned_companies"]}) {
    ... on Asset { assetObservations(limit: 1) { partition metadataEntries { label ... on IntMetadataEntry { intValue } } } } } }"""


def partition_statuses(dagster_dev) -> dict[str, set[str]]:
    found = dagster_dev.client()._execute(STATUSES)["assetNodeOrError"]["assetPartitionStatuses"]
    return {name: set(found[name]) for name in ("materializedPartitions", "materializingPartitions", "failedPartitions")}


def table_rows_shown(dagster_dev) -> int | None:
    """The `dagster/row_count` of the asset's latest observation: the run's facts and the table's totals."""
    (latest,) = dagster_dev.client()._execute(TABLE_ROWS)["assetOrError"]["assetObservations"]
    assert latest["partition"] is None
    return next((e["intValue"] for e in latest["metadataEntries"] if e["label"] == "dagster/row_count"), None)


@pytest.mark.slow
def test_ui_style_backfill_runs_in_batched_runs_and_reports_each_partition(zip_etl_environment, query, dagster_dev):
    keys = ZIP_CODES[:2500]  # two runs: 2,000 + 500 zip codes
    write_raw_companies(zip_etl_environment["etl_url"], generate_raw_companies(6000, keys, seed=21))
    for table in ("cleaned_companies", "cleaned_companies_quarantine", "cleaned_companies_partitions"):
        if query(f"SELECT to_regclass('public.{table}') IS NOT NULL")[0][0]:
            query(f"TRUNCATE public.{table}")

    backfill_id = dagster_dev.launch_backfill(keys)
    materializing: set[str] = set()
    deadline = time.time() + 600
    while dagster_dev.backfill(backfill_id)["status"] not in {"COMPLETED", "COMPLETED_SUCCESS", "FAILED", "CANCELED"}:
        assert time.time() < deadline, "the backfill did not finish"
        materializing |= partition_statuses(dagster_dev)["materializingPartitions"]
        time.sleep(0.2)
    backfill = dagster_dev.backfill(backfill_id)

    assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, backfill
    runs = backfill["runs"]
    assert len(runs) == 2 and all(r["status"] == "SUCCESS" for r in runs)
    starts = sorted(
        next(t["value"] for t in r["tags"] if t["key"] == "dagster/asset_partition_range_start") for r in runs
    )
    assert starts == [keys[0], keys[2000]]  # contiguous ranges of BackfillPolicy.multi_run(2000)
    # While their run executed, the UI's API showed its partitions as materializing.
    assert materializing and materializing <= set(keys)
    # Every zip code: each raw row is cleaned or quarantined, exactly once; none beyond the range.
    raw = dict(query("SELECT zip_code, count(*) FROM public.raw_companies GROUP BY 1"))
    out = dict(query("SELECT zip_code, count(*) FROM public.cleaned_companies GROUP BY 1"))
    held = dict(query("SELECT zip_code, count(*) FROM public.cleaned_companies_quarantine GROUP BY 1"))
    assert {z: out.get(z, 0) + held.get(z, 0) for z in keys} == {z: raw.get(z, 0) for z in keys}
    assert set(out) | set(held) <= set(keys)
    statuses = partition_statuses(dagster_dev)
    assert set(keys) <= statuses["materializedPartitions"] and not statuses["materializingPartitions"] & set(keys)
    # The asset shows the table's total rows, not the last partition's.
    assert table_rows_shown(dagster_dev) == sum(out.values())


# Run statuses whose zip codes must show as materialized, materializing or failed. Dagster creates a
# run NOT_STARTED, stores its planned materializations (zip_etl: one statement), then queues it.
LIVE_OR_DONE = {"QUEUED", "STARTING", "STARTED", "SUCCESS", "FAILURE", "CANCELING"}


def zip_codes_of(run: dict) -> list[str]:
    tags = {t["key"]: t["value"] for t in run["tags"]}
    return zip_code_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(
        tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]))


@pytest.mark.slow
def test_no_zip_code_of_a_backfill_shows_as_missing_while_its_run_lives(zip_etl_environment, fresh_dagster_storage):
    """Issue 27: a backfill of 3,000 never-built zip codes in six runs of 500 (on Dagster storage of its
    own: nothing built before), the UI's partition statuses polled from launch to the end. Whenever a
    run is queued, running or done, each of its zip codes shows as materialized, materializing or
    failed, never missing: neither while runs are created beside runs that write (Dagster's status
    cache read past materializations it had not counted, for good) nor while a run's planned
    materializations were stored one statement each (they were, when a run had fewer zip codes than a
    batch, beside its checks' planned evaluations)."""
    from zip_etl_tests.conftest import ARTIFACTS
    from zip_etl_tests.helpers import drop_written_partitions
    from zip_etl_tools.dagster_dev import BACKFILL_DONE, running_dagster_dev

    keys = ZIP_CODES[5000:8000]
    write_raw_companies(zip_etl_environment["etl_url"], generate_raw_companies(9000, keys, seed=27))
    drop_written_partitions(zip_etl_environment["etl_url"], keys)
    env = {**os.environ, settings.AUTO_REFRESH: "off", "ZIP_ETL_PARTITIONS_PER_RUN": "500"}
    with running_dagster_dev(ARTIFACTS / "dagster-dev-partition-status.log", env=env) as dev:
        backfill_id = dev.launch_backfill(keys)
        started, polls, gaps = time.monotonic(), 0, []
        while True:
            backfill = dev.backfill(backfill_id)  # the runs first: each was live before the statuses are read
            statuses = partition_statuses(dev)
            polls += 1
            live = {z for run in backfill["runs"] if run["status"] in LIVE_OR_DONE for z in zip_codes_of(run)}
            missing = live - statuses["materializedPartitions"] - statuses["materializingPartitions"] - \
                statuses["failedPartitions"]
            if missing:
                gaps.append((round(time.monotonic() - started, 1), len(missing), sorted(missing)[:3],
                             sorted(r["status"] for r in backfill["runs"])))
            if backfill["status"] in BACKFILL_DONE:
                break
            assert time.monotonic() - started < 600, "the backfill did not finish"
            time.sleep(0.25)
    runs = backfill["runs"]
    assert backfill["status"] == "COMPLETED_SUCCESS" and len(runs) == 6, backfill
    assert not gaps, f"zip codes of live runs shown as missing at {len(gaps)} of {polls} polls: {gaps[:5]}"
    assert statuses["materializedPartitions"] >= set(keys) and polls > 10


@pytest.mark.slow
def test_a_failed_run_shows_its_zip_codes_as_failed(zip_etl_environment, query, dagster_dev):
    """A run that fails (here the raw table lost a column) leaves its partitions failed, not missing;
    a later good run of them makes them materialized again."""
    keys = ZIP_CODES[3000:3010]
    write_raw_companies(zip_etl_environment["etl_url"], generate_raw_companies(300, keys, seed=22))
    query("ALTER TABLE public.raw_companies RENAME COLUMN phone TO phone_gone")
    try:
        backfill = dagster_dev.wait_for_backfill(dagster_dev.launch_backfill(keys), timeout=600, poll_seconds=0.5)
        assert all(r["status"] == "FAILURE" for r in backfill["runs"]), backfill
        assert set(keys) <= partition_statuses(dagster_dev)["failedPartitions"]
    finally:
        query("ALTER TABLE public.raw_companies RENAME COLUMN phone_gone TO phone")
    backfill = dagster_dev.wait_for_backfill(dagster_dev.launch_backfill(keys), timeout=600, poll_seconds=0.5)
    assert all(r["status"] == "SUCCESS" for r in backfill["runs"]), backfill
    statuses = partition_statuses(dagster_dev)
    assert set(keys) <= statuses["materializedPartitions"] and not statuses["failedPartitions"] & set(keys)


@pytest.mark.slow
def test_zip_etl_launch_queues_range_runs_without_the_backfill_daemon(
    zip_etl_environment, query, dagster_dev, monkeypatch, capsys
):
    """`zip-etl launch FIRST LAST` submits the range's runs to the webserver at once (they exist when the
    command returns, before any pass of the backfill daemon), tagged with their ranges as a backfill's
    runs are; they run through the queue and the UI's API shows the zip codes materialized."""
    import dagster as dg

    from zip_etl.cli.launch import LAUNCH_TAG
    from zip_etl.cli.main import main
    from zip_etl.instance import get_instance
    from zip_etl_tests.helpers import drop_written_partitions

    keys = [z for z in ZIP_CODES if "1000" in z]  # 10001..10009, contiguous
    write_raw_companies(zip_etl_environment["etl_url"], generate_raw_companies(900, keys, seed=23))
    drop_written_partitions(zip_etl_environment["etl_url"], keys)
    monkeypatch.setenv("ZIP_ETL_PARTITIONS_PER_RUN", "4")

    assert main(["launch", keys[0], keys[-1], "--url", dagster_dev.url, "--no-wait"]) == 0
    out = capsys.readouterr().out
    group = out.split(f"{LAUNCH_TAG}=")[1].split(")")[0]
    with get_instance() as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={LAUNCH_TAG: group}))
        assert len(runs) == 3, out  # 4 + 4 + 1 zip codes, all created at once
        ranges = sorted((r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"])
                        for r in runs)
        assert ranges == [(keys[0], keys[3]), (keys[4], keys[7]), (keys[8], keys[8])]
        assert all("dagster/backfill" not in r.tags for r in runs)

    assert main(["launch", keys[0], keys[-1], "--url", dagster_dev.url]) == 0  # again, waiting this time
    out = capsys.readouterr().out
    assert "3 of 3 run(s) succeeded" in out, out
    written = dict(query("SELECT zip_code, count(*) FROM public.cleaned_companies WHERE zip_code = ANY(%s) GROUP BY 1",
                         (keys,)))
    assert sorted(written) == keys
    assert set(keys) <= partition_statuses(dagster_dev)["materializedPartitions"]
    drop_written_partitions(zip_etl_environment["etl_url"], keys)


def test_zip_etl_launch_says_in_one_line_what_is_wrong(capsys):
    from zip_etl.cli.main import main

    assert main(["launch", "1000", "10009"]) == 1
    assert main(["launch", "10009", "10001"]) == 1
    assert main(["launch", "10001", "10009", "--url", "http://127.0.0.1:1"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "Error: '1000': not an active US zip code (a partition of cleaned_companies is 5 digits, e.g. 10016)",
        "Error: 10009 comes after 10001: give the range as FIRST LAST, in zip-code order",
        "Error: cannot reach Dagster's webserver at http://127.0.0.1:1 (TransportConnectionFailed). Start "
        "`dagster dev`, or pass its address with --url",
    ]
