"""A backfill launched the way the UI launches it, run by `dagster dev`'s daemon through the run queue."""

import pytest

from zip_etl.db.connection import transaction
from zip_etl.demo_data import generate_raw_companies, write_raw_companies
from zip_etl.partitions import ZIP_CODES


@pytest.mark.slow
def test_ui_style_backfill_runs_in_batched_runs_through_the_daemon(zip_etl_environment, query, dagster_dev):
    keys = ZIP_CODES[:2500]  # two runs: 2,000 + 500 zip codes
    write_raw_companies(zip_etl_environment["etl_url"], generate_raw_companies(6000, keys, seed=21))
    if query("SELECT to_regclass('public.cleaned_companies') IS NOT NULL")[0][0]:
        query("TRUNCATE public.cleaned_companies")

    backfill = dagster_dev.wait_for_backfill(dagster_dev.launch_backfill(keys), timeout=600, poll_seconds=3)

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
