"""`zip-etl launch FIRST LAST`: runs of a zip-code range straight into Dagster's run queue, without a
backfill, so without waiting for the backfill daemon.

A backfill launched from the UI is planned by Dagster's backfill daemon, which looks at backfills
every 30 s (fixed in Dagster 1.13: no setting changes it) and marks one complete on a later pass,
so even a few zip codes wait up to 30 s before their first run exists. This command cuts the range
into runs of at most ZIP_ETL_PARTITIONS_PER_RUN zip codes, as the asset's backfill policy does, and
submits them to the running webserver (`dagster dev`) with Dagster's own launchRun, tagged with
their range as Dagster tags a backfill's runs. They are ordinary queued runs: the queue's limit,
warm processes, run monitoring and run retries apply, and the UI shows the zip codes materializing.
There is no backfill page: the runs carry the tag `zip_etl/launch` (filter the Runs page by it).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import click

from zip_etl import settings
from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from zip_etl.partitions import ZIP_CODES
from zip_etl.refresh import contiguous_ranges

LAUNCH_TAG = "zip_etl/launch"
DEFAULT_URL = "http://127.0.0.1:3000"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


class LaunchError(click.ClickException):
    """One line that says what is wrong and what to change."""


@dataclass(frozen=True)
class LaunchedRun:
    run_id: str
    first: str
    last: str
    zip_codes: int


@dataclass(frozen=True)
class Launch:
    group: str  # the value of their zip_etl/launch tag
    runs: list[LaunchedRun]


def zip_code_range(first: str, last: str) -> list[str]:
    """The zip codes from `first` to `last`, in partition order (both must be partitions)."""
    positions = {key: i for i, key in enumerate(ZIP_CODES)}
    unknown = [key for key in dict.fromkeys((first, last)) if key not in positions]
    if unknown:
        raise LaunchError(f"{', '.join(repr(k) for k in unknown)}: not an active US zip code (a partition of "
                          f"cleaned_companies is 5 digits, e.g. 10016)")
    if positions[first] > positions[last]:
        raise LaunchError(f"{first} comes after {last}: give the range as FIRST LAST, in zip-code order")
    return list(ZIP_CODES[positions[first]:positions[last] + 1])


def _client(url: str):
    from dagster_graphql import DagsterGraphQLClient

    parts = urlsplit(url if "://" in url else f"http://{url}")
    if not parts.hostname:
        raise LaunchError(f"--url {url!r}: expected the webserver's address, e.g. {DEFAULT_URL}")
    return DagsterGraphQLClient(parts.hostname, port_number=parts.port, use_https=parts.scheme == "https")


def launch_range(first: str, last: str, url: str = DEFAULT_URL, per_run: int | None = None,
                 location: str = "zip_etl") -> Launch:
    """Submit the runs of `first`..`last` to the webserver at `url`; return them, in range order."""
    from dagster_graphql import DagsterGraphQLClientError

    keys = zip_code_range(first, last)
    client = _client(url)
    group = uuid.uuid4().hex[:8]
    launched = []
    for zip_codes in contiguous_ranges(ZIP_CODES, keys, per_run or settings.partitions_per_run()):
        tags = {ASSET_PARTITION_RANGE_START_TAG: zip_codes[0], ASSET_PARTITION_RANGE_END_TAG: zip_codes[-1],
                LAUNCH_TAG: group}
        try:
            run_id = client.submit_job_execution(
                "__ASSET_JOB", repository_location_name=location, repository_name="__repository__",
                tags=tags, asset_selection=["cleaned_companies"])
        except DagsterGraphQLClientError as error:
            if error.__cause__ is not None:  # the request itself failed: refused, unknown host, timeout
                raise LaunchError(f"cannot reach Dagster's webserver at {url} ({type(error.__cause__).__name__}). "
                                  "Start `dagster dev`, or pass its address with --url") from None
            raise LaunchError(f"the webserver at {url} did not launch the run of {zip_codes[0]}..{zip_codes[-1]}: "
                              f"{' '.join(str(a) for a in error.args)}") from None
        launched.append(LaunchedRun(run_id, zip_codes[0], zip_codes[-1], len(zip_codes)))
    return Launch(group, launched)


def wait_for_runs(runs: list[LaunchedRun], url: str, timeout: float, poll_seconds: float = 0.5) -> dict[str, str]:
    """Each run's final status ("SUCCESS", "FAILURE", "CANCELED"), waiting at most `timeout` seconds."""
    client = _client(url)
    deadline = time.monotonic() + timeout
    statuses: dict[str, str] = {}
    while True:
        for run in runs:
            if statuses.get(run.run_id) not in FINISHED:
                statuses[run.run_id] = client.get_run_status(run.run_id).value
        if all(status in FINISHED for status in statuses.values()):
            return statuses
        if time.monotonic() > deadline:
            waiting = sum(status not in FINISHED for status in statuses.values())
            raise LaunchError(f"{waiting} run(s) not finished after {timeout:.0f} s (--timeout); they go on: "
                              f"see the Runs page, tag {LAUNCH_TAG}")
        time.sleep(poll_seconds)


@click.command("launch")
@click.argument("first")
@click.argument("last")
@click.option("--url", default=DEFAULT_URL, show_default=True, help="the webserver of `dagster dev`")
@click.option("--wait/--no-wait", default=True, show_default=True, help="wait until the runs have finished")
@click.option("--timeout", type=float, default=3600, show_default=True, help="seconds to wait at most")
def launch_command(first, last, url, wait, timeout):
    """Materialize zip codes FIRST..LAST in runs queued at once (no backfill daemon wait)."""
    started = time.monotonic()
    launch = launch_range(first, last, url)
    runs = launch.runs
    zip_codes = sum(run.zip_codes for run in runs)
    click.echo(f"Launched {len(runs)} run(s) for {zip_codes:,} zip code(s) {first}..{last} "
               f"(tag {LAUNCH_TAG}={launch.group}):")
    for run in runs:
        click.echo(f"  {run.first}..{run.last} ({run.zip_codes:,}): {url.rstrip('/')}/runs/{run.run_id}")
    if not wait:
        return
    statuses = wait_for_runs(runs, url, timeout)
    failed = [run for run in runs if statuses[run.run_id] != "SUCCESS"]
    click.echo(f"{len(runs) - len(failed)} of {len(runs)} run(s) succeeded in {time.monotonic() - started:.1f}s")
    for run in failed:
        click.echo(f"  {statuses[run.run_id]}: {run.first}..{run.last} {url.rstrip('/')}/runs/{run.run_id}")
    if failed:
        raise SystemExit(1)
