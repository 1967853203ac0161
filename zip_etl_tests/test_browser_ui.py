"""The Dagster UI as users use it, in headless Chromium: one zip code, a backfill, the checks.

`dagster dev` runs from the repository root on the test databases; the browser clicks what a person
clicks and the test checks what the UI shows, then the database. Screenshots go to
test-artifacts/browser/ (and a Playwright trace, on failure). A second run of the same zip code is
forked from the warm process the first started; a killed `dagster asset materialize` run's zip code
shows failed, as the docs say. Needs Debian's chromium; marked `browser` and `slow`, so
`-m "not slow"` skips it locally; CI (`.ci/run`) runs it.
"""

import os
import re
import shutil
import signal

import dagster as dg
import pytest

from zip_etl.demo_data import generate_raw_companies, write_raw_companies
from zip_etl.instance import get_instance
from zip_etl.partitions import ZIP_CODES
from zip_etl.run_liveness import run_process
from zip_etl.transform import clean_companies
from zip_etl_tests.conftest import ARTIFACTS
from zip_etl_tests.dagster_ui import VIEWPORT, DagsterUI, chromium_page
from zip_etl_tests.helpers import drop_written_partitions
from zip_etl_tests.test_dead_runs import raw_table_locked, start_cli_run, started_runs_with_process, wait_for

ONE = "10016"
# A zip code whose `dagster asset materialize` run is killed mid-run (not retried: no daemon can re-launch it).
KILLED = "10018"
# Typing "1000" in the partition filter lists exactly these, a contiguous range: one batched run.
BACKFILL_FILTER = "1000"
BACKFILL = [z for z in ZIP_CODES if BACKFILL_FILTER in z]
CHECKS = {"key_is_unique", "required_values_present", "rows_reconcile", "schema_matches_declaration",
          "zip_codes_are_partitions", "raw_rows_have_partitions"}
BACKFILL_PARTITIONS = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { partitionNames } } }"""
MATERIALIZED = """
{ assetNodeOrError(assetKey: {path: ["cleaned_companies"]}) {
    ... on AssetNode { assetPartitionStatuses { ... on DefaultPartitionStatuses { materializedPartitions } } } } }"""


def metadata_value(page, label: str) -> str:
    row = page.locator("tr").filter(has=page.get_by_text(label, exact=True)).first
    return row.locator("td").nth(1).inner_text().strip()


@pytest.mark.slow
@pytest.mark.browser
def test_materialize_backfill_and_checks_in_the_browser(zip_etl_environment, dagster_dev, query):
    raw = generate_raw_companies(4000, [ONE, *BACKFILL, KILLED], seed=6)
    write_raw_companies(zip_etl_environment["etl_url"], raw)
    cleaned = clean_companies(raw)
    expected = cleaned.cleaned["zip_code"].astype(str).value_counts().to_dict()
    rejected = int((cleaned.rejected["zip_code"].astype(str) == ONE).sum())
    assert all(expected.get(z, 0) > 0 for z in [ONE, *BACKFILL, KILLED])  # every partition has rows to write
    drop_written_partitions(zip_etl_environment["etl_url"], [ONE, *BACKFILL, KILLED])
    try:
        check_ui_flow(dagster_dev, query, expected, rejected, zip_etl_environment["etl_url"])
    finally:  # other suites read public.cleaned_companies
        drop_written_partitions(zip_etl_environment["etl_url"], [ONE, *BACKFILL, KILLED])


def check_ui_flow(dagster_dev, query, expected: dict[str, int], rejected_in_one: int, etl_url: str) -> None:
    def rows_in_table(zip_codes):
        return dict(query(
            "SELECT zip_code, count(*) FROM public.cleaned_companies WHERE zip_code = ANY(%s) GROUP BY 1",
            (list(zip_codes),),
        ))

    artifacts = ARTIFACTS / "browser"
    shutil.rmtree(artifacts, ignore_errors=True)
    with chromium_page(artifacts) as page:
        ui = DagsterUI(page, dagster_dev.url, artifacts)

        ui.open_asset("overview")
        page.get_by_text("Cleaning rules").first.wait_for()
        page.get_by_role("button", name="Show more").click()
        page.get_by_text("cleaned_companies_quarantine").first.wait_for()
        ui.screenshot("01_asset_description")

        # One zip code: Materialize -> 10016 -> Launch 1 run; the run succeeds, checks included.
        run_id, _ = ui.materialize_partition(ONE)
        assert ui.wait_for_run(run_id, timeout=600) == "Success"
        ui.screenshot("02_run_one_partition")
        ui.wait_for_partition_status(ONE, "Materialized", run_id=run_id)
        assert metadata_value(page, "rows_out") == str(expected[ONE])
        assert page.get_by_text("read_seconds", exact=True).count() == 0  # the run's facts are not copied here
        ui.screenshot("03_partition_metadata", full_page=True)
        assert rows_in_table([ONE]) == {ONE: expected[ONE]}
        quarantined = query("SELECT count(*) FROM public.cleaned_companies_quarantine WHERE zip_code = %s", (ONE,))
        assert quarantined[0][0] == rejected_in_one == int(metadata_value(page, "rows_rejected"))

        # The same zip code again, as after a rule change: its run is forked from the warm process the
        # first run started (the run's log says so), and replaces the rows.
        again, _ = ui.materialize_partition(ONE)
        assert ui.wait_for_run(again, timeout=600) == "Success"
        show_run_events(page, "warm process")
        page.get_by_text(re.compile(r"forked from the warm process of code location zip_etl")).first.wait_for()
        assert page.get_by_text(re.compile(r"started for this run")).count() == 0  # the first run's warm process
        ui.screenshot("03b_second_run_warm")
        ui.wait_for_partition_status(ONE, "Materialized", run_id=again)
        assert rows_in_table([ONE]) == {ONE: expected[ONE]}

        # A range: filter "1000" -> Select all (9) -> Launch backfill; the backfill completes.
        backfill_id = ui.launch_backfill(BACKFILL_FILTER, len(BACKFILL))
        assert ui.wait_for_backfill(backfill_id, timeout=600) == "Succeeded"
        # What the dialog's filter selected is exactly the contiguous range the test expects.
        launched = dagster_dev.client()._execute(BACKFILL_PARTITIONS, {"id": backfill_id})["partitionBackfillOrError"]
        assert sorted(launched["partitionNames"]) == BACKFILL == [f"1000{i}" for i in range(1, 10)]
        page.get_by_text(f"{len(BACKFILL)} partitions").first.wait_for()
        ui.screenshot("04_backfill_succeeded")
        assert rows_in_table(BACKFILL) == {z: expected[z] for z in BACKFILL}

        # The partitions list marks what is materialized (green) among its neighbours (grey).
        ui.open_asset("partitions")
        page.get_by_placeholder("Filter by name").fill("100")
        page.set_viewport_size({"width": 1440, "height": 1300})  # tall enough to list 10016 too
        page.get_by_text(ONE, exact=True).first.wait_for()
        ui.screenshot("05_partitions_materialized")
        page.set_viewport_size(VIEWPORT)

        status = dagster_dev.client()._execute(MATERIALIZED)["assetNodeOrError"]["assetPartitionStatuses"]
        assert {ONE, *BACKFILL} <= set(status["materializedPartitions"])

        # The overview's Row count is the whole table's, not the last partition's.
        total = query("SELECT count(*) FROM public.cleaned_companies")[0][0]
        assert total > max(expected.values())
        ui.open_asset("overview")
        row_count = page.get_by_text("Row count", exact=True).first.locator("xpath=..")
        ui.poll("the table's Row count", lambda: row_count.count() and f"{total:,}" in row_count.inner_text(), timeout=60)
        ui.screenshot("05b_overview_row_count")

        # The checks, from the Checks tab's "Execute all", over the whole table: all pass.
        checks_run = ui.execute_all_checks()
        assert ui.wait_for_run(checks_run, timeout=600) == "Success"
        results = ui.check_results()
        assert results == {name: "Succeeded" for name in CHECKS}, results
        page.get_by_text("Passed", exact=True).first.wait_for()
        ui.screenshot("06_checks_passed")

        # Numeric metadata is plotted: Overview -> Metadata -> Plots -> Events.
        ui.open_asset("overview")
        page.get_by_role("button", name="Plots").click()
        page.get_by_role("button").filter(has_text=re.compile("^Events$")).click()
        plots = page.get_by_text("rows_rejected", exact=True)  # the description names it first
        ui.poll("the rows_rejected plot", lambda: plots.count() > 1, timeout=60)
        plots.last.scroll_into_view_if_needed()
        ui.screenshot("07_metadata_plots")

        check_killed_run_shows_failed(ui, page, etl_url)


def show_run_events(page, text: str) -> None:
    """Filter the run page's event log by `text` (its rows are rendered only when scrolled to)."""
    page.get_by_placeholder(re.compile(r"^Filter")).fill(text)


def check_killed_run_shows_failed(ui: DagsterUI, page, etl_url: str) -> None:
    """docs/RELIABILITY.md: a killed run is marked failed; its zip codes keep their previous rows and
    show as failed until they are materialized again; a `dagster asset materialize` run is not retried
    (dagster/will_retry=false). The UI shows exactly that."""
    with get_instance() as instance:
        before = {r.run_id for r in instance.get_runs(limit=500)}
        with raw_table_locked(etl_url):
            cli = start_cli_run(KILLED)
            try:
                (run,) = wait_for("the CLI run to start", lambda: [
                    r for r in started_runs_with_process(instance, before) if run_process(r).pid == cli.pid], 240)
                os.kill(cli.pid, signal.SIGKILL)
                cli.wait(30)
            finally:
                if cli.poll() is None:
                    cli.kill()
            wait_for("run monitoring to mark the killed run failed",
                     lambda: instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE, 120)
        assert wait_for("the retry decision", lambda: instance.get_run_by_id(run.run_id).tags.get(
            "dagster/will_retry"), 30) == "false"
    assert ui.wait_for_run(run.run_id, timeout=60) == "Failure"
    show_run_events(page, "is gone")
    page.get_by_text(re.compile(r"show as failed until they are materialized again")).first.wait_for()
    ui.screenshot("08_killed_run_failed")
    ui.wait_for_partition_failed(KILLED, run.run_id)
    page.get_by_text(re.compile(r"^Failed \(1\)$")).first.wait_for()
    ui.screenshot("09_killed_zip_code_failed", full_page=True)


TEST_CHECKS = CHECKS | {"matches_truth"}


@pytest.mark.slow
@pytest.mark.browser
def test_test_mode_in_the_browser(zip_etl_environment, dagster_dev, query):
    """The README's test mode, in the UI `dagster dev` serves: `zip-etl load-fixtures`, then open
    test/cleaned_companies, materialize 10016 and see matches_truth (and the other checks) pass."""
    import subprocess
    import sys

    from zip_etl.testmode import TEST_SCHEMA

    loaded = subprocess.run([sys.executable, "-m", "zip_etl.cli.main", "load-fixtures"], capture_output=True,
                            text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    query(f"DROP TABLE IF EXISTS {TEST_SCHEMA}.cleaned_companies")
    artifacts = ARTIFACTS / "browser-testmode"
    shutil.rmtree(artifacts, ignore_errors=True)
    with chromium_page(artifacts) as page:
        ui = DagsterUI(page, dagster_dev.url, artifacts, asset="test/cleaned_companies")
        run_id, _ = ui.materialize_partition(ONE)
        assert ui.wait_for_run(run_id, timeout=600) == "Success"
        results = ui.check_results()
        assert results == {name: "Succeeded" for name in TEST_CHECKS}, results
        ui.screenshot("08_test_mode_checks")
    truth = query(f"SELECT count(*) FROM {TEST_SCHEMA}.cleaned_companies_truth WHERE zip_code = %s", (ONE,))[0][0]
    written = query(f"SELECT count(*) FROM {TEST_SCHEMA}.cleaned_companies WHERE zip_code = %s", (ONE,))[0][0]
    assert written == truth > 0
