"""Latency of one zip code from the Dagster UI: from the click on "Launch 1 run" to success.

    python scripts/ui_latency.py                       # starts dagster dev on a free port
    python scripts/ui_latency.py --repeat 5 --url http://127.0.0.1:3000
    python scripts/ui_latency.py --repeat 5 --after-edit zip_etl/transform/rules.py   # a rule saved before each click

Drives headless Chromium (Debian's /usr/bin/chromium) like a person: Materialize -> pick a zip code
-> Launch 1 run -> the toast's View, then watches the run's page (which updates live) until it shows "Success".
Reports, per launch and as median and 90th percentile, the click-to-"Success" time seen in the
browser, and from the run's record: the webserver creating the run after the click, time queued (until
the run's process started it), the worker's start-up until the asset step began, the asset step, the
run's end (after its checks), and the page showing Success after that end. Uses the configured database (the embedded
one by default) and its raw table: run `zip-etl seed` first. The refresh sensor is off in the
`dagster dev` it starts, so the launched runs are the only ones. Needs the test extra (playwright).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zip_etl import settings  # noqa: E402
from zip_etl.db.connection import etl_database_url, transaction  # noqa: E402
from zip_etl_tests.dagster_ui import DagsterUI, chromium_page  # noqa: E402
from zip_etl_tools.dagster_dev import DagsterDev, running_dagster_dev  # noqa: E402

RUN_TIMES = """
query($runId: ID!) {
  runOrError(runId: $runId) {
    ... on Run { status creationTime startTime endTime stepStats { stepKey startTime endTime } }
  }
}"""


def zip_codes_with_rows(count: int) -> list[str]:
    """The zip codes with the most raw rows: each launch does real work."""
    with transaction(etl_database_url()) as cursor:
        cursor.execute(
            "SELECT zip_code FROM public.raw_companies GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT %s", (count,)
        )
        return [row[0] for row in cursor.fetchall()]


def run_times(client, run_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        run = client._execute(RUN_TIMES, {"runId": run_id})["runOrError"]
        if run.get("endTime") or time.monotonic() > deadline:
            return run
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running webserver (default: start dagster dev on a free port)")
    parser.add_argument("--repeat", type=int, default=3, help="launches, one zip code each (default %(default)s)")
    parser.add_argument("--backfill", type=int, default=0, metavar="N",
                        help="then launch a backfill of the first N zip codes as the UI does, and time it to done; "
                             "then the same zip codes with `zip-etl launch`")
    parser.add_argument("--artifacts", default="test-artifacts/ui_latency", help="screenshots and logs")
    parser.add_argument("--after-edit", type=Path, metavar="FILE",
                        help="before each launch, mark FILE as saved now (its modification time; the content stays), "
                             "then wait --think seconds, as a person editing a rule and going back to the browser")
    parser.add_argument("--think", type=float, default=5.0,
                        help="seconds from the save to the click with --after-edit (default %(default)s)")
    parser.add_argument(
        "--checkout",
        help="run dagster dev from this checkout's code instead (e.g. a clone of main, for a before/after "
        "on the same data: set ZIP_ETL_DATABASE_URL and ZIP_ETL_DAGSTER_DATABASE_URL to this one's)",
    )
    args = parser.parse_args(argv)
    artifacts = Path(args.artifacts).resolve()
    artifacts.mkdir(parents=True, exist_ok=True)

    keys = zip_codes_with_rows(args.repeat) if args.repeat else []
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores", flush=True)
    rows = []
    with ExitStack() as stack:
        if args.url:  # a running webserver: only its address is needed
            parts = urlsplit(args.url)
            server = DagsterDev(port=parts.port or 80, host=parts.hostname or "127.0.0.1", log_path=Path(os.devnull))
        else:
            # The refresh sensor off: only the runs launched here should compete for the queue.
            env = {**os.environ, settings.AUTO_REFRESH: "off"}
            checkout = Path(args.checkout).resolve() if args.checkout else None
            if checkout:
                env["PYTHONPATH"] = str(checkout)
            server = stack.enter_context(running_dagster_dev(artifacts / "dagster-dev.log", env=env, cwd=checkout))
        client = server.client()
        page = stack.enter_context(chromium_page(artifacts))
        ui = DagsterUI(page, server.url, artifacts)
        for key in keys:
            if args.after_edit:
                os.utime(args.after_edit)
                time.sleep(args.think)
            run_id, clicked = ui.materialize_partition(key)
            clicked_at = time.time() - (time.monotonic() - clicked)  # the click on the wall clock, as runs record time
            status = ui.wait_for_run(run_id, via_toast=True)
            shown_at = ui.final_status_shown_at(run_id)  # as the page recorded it
            seen = shown_at - clicked_at if shown_at else time.monotonic() - clicked
            if status != "Success":
                raise SystemExit(f"run {run_id} for {key}: {status} (see {artifacts})")
            run = run_times(client, run_id)
            asset_step = next(s for s in run["stepStats"] if s["stepKey"] == "cleaned_companies")
            created = run["creationTime"]
            row = {
                "zip": key,
                "click->Success shown": seen,
                "click->created": created - clicked_at,
                "queued": run["startTime"] - created,
                "worker start-up": asset_step["startTime"] - run["startTime"],
                "asset step": asset_step["endTime"] - asset_step["startTime"],
                "created->run end (with checks)": run["endTime"] - created,
                "run end->Success shown": clicked_at + seen - run["endTime"],
            }
            rows.append(row)
            print("  ".join(f"{k} {v:.1f}s" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
        if rows:
            ui.screenshot("ui_latency_last_partition")
        if args.backfill:
            backfill_latency(server, client, args.backfill)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if rows:
        for name, statistic in (("median", statistics.median), ("p90", p90)):
            print(f"{name}: " + "  ".join(
                f"{k} {statistic([r[k] for r in rows]):.1f}s" for k in rows[0] if k != "zip"
            ))
    return 0


def p90(values: list[float]) -> float:
    """The 90th percentile, interpolated between the launches (the slowest of fewer than two)."""
    if len(values) < 2:
        return max(values)
    return statistics.quantiles(values, n=10, method="inclusive")[-1]


BACKFILL_RUNS = """
query($backfillId: String!) {
  runsOrError(filter: {tags: [{key: "dagster/backfill", value: $backfillId}]}) {
    ... on Runs { results { runId status creationTime startTime endTime } }
  }
}"""


def backfill_latency(server: DagsterDev, client, count: int) -> None:
    """A backfill of the first `count` zip codes (`launchPartitionBackfill`, as the UI's "Launch
    backfill" sends it), from launch to COMPLETED, against its runs' own time; then the same zip codes
    launched by `zip-etl launch` (range runs straight into the queue), from launch to its runs' end."""
    from zip_etl.cli.launch import launch_range, wait_for_runs
    from zip_etl.partitions import ZIP_CODES

    launched = time.time()
    backfill_id = server.launch_backfill(list(ZIP_CODES[:count]))
    done = server.wait_for_backfill(backfill_id, poll_seconds=0.2)
    seconds = time.time() - launched
    runs = client._execute(BACKFILL_RUNS, {"backfillId": backfill_id})["runsOrError"]["results"]
    print(f"backfill of {count} zip codes: {done['status']} {seconds:.1f}s after launch; "
          f"{_runs_summary(runs, launched)}", flush=True)

    launched = time.time()
    launch = launch_range(ZIP_CODES[0], ZIP_CODES[count - 1], server.url)
    statuses = wait_for_runs(launch.runs, server.url, timeout=600, poll_seconds=0.2)
    seconds = time.time() - launched
    runs = [run_times(client, run.run_id) for run in launch.runs]
    print(f"zip-etl launch of {count} zip codes: {'/'.join(sorted(set(statuses.values())))} {seconds:.1f}s after "
          f"launch; {_runs_summary(runs, launched)}", flush=True)


def _runs_summary(runs: list[dict], launched: float) -> str:
    first_created = min(r["creationTime"] for r in runs)
    return (f"{len(runs)} run(s), first created {first_created - launched:.1f}s after launch, "
            f"queued {sum(r['startTime'] - r['creationTime'] for r in runs):.1f}s, "
            f"running {sum(r['endTime'] - r['startTime'] for r in runs):.1f}s (summed over runs)")


if __name__ == "__main__":
    sys.exit(main())
