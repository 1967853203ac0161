"""Materialize one zip code of cleaned_companies through a running Dagster webserver, as the UI does.

    python scripts/materialize_partition.py 10016                      # dagster dev on localhost:3000
    python scripts/materialize_partition.py 10016 --url http://host:3000 --timeout 600

Launches one run of the partition (with the asset's checks, as the UI's "Materialize" does), polls
until the run finishes, then prints the partition's metadata and the checks' results. Exit status:
0 when the run succeeded and every check passed, 1 otherwise, 2 when it could not be launched
(webserver unreachable, unknown zip code). It needs only `dagster-graphql`
(`pip install dagster-graphql`), so copy it anywhere that can reach the webserver.
"""

from __future__ import annotations

import argparse
import sys
import time
from urllib.parse import urlsplit

from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

# Dagster's implicit job for materializing assets: what the UI launches for "Materialize". Every code
# location of `dagster dev` (zip_etl, and test mode's zip_etl_test) has one, in the repository Dagster
# names `__repository__` for a Definitions object, so both names are given.
ASSET_JOB = "__ASSET_JOB"
REPOSITORY = "__repository__"
PARTITION_TAG = "dagster/partition"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

PARTITION_KEYS = """
query($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    __typename
    ... on AssetNode { partitionKeysByDimension { partitionKeys } }
  }
}
"""

RUN_EVENTS = """
query($runId: ID!, $cursor: String) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: 1000) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events {
        __typename
        ... on MaterializationEvent {
          partition
          assetKey { path }
          metadataEntries {
            label
            __typename
            ... on IntMetadataEntry { intRepr }
            ... on FloatMetadataEntry { floatValue }
            ... on TextMetadataEntry { text }
            ... on JsonMetadataEntry { jsonString }
          }
        }
        ... on AssetCheckEvaluationEvent {
          evaluation { checkName success description severity }
        }
        ... on ExecutionStepFailureEvent {
          stepKey
          error { message }
        }
      }
    }
    ... on PythonError { message }
    ... on RunNotFoundError { message }
  }
}
"""


def client_for(url: str) -> DagsterGraphQLClient:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return DagsterGraphQLClient(
        parts.hostname or "localhost", port_number=parts.port, use_https=parts.scheme == "https"
    )


class CannotLaunch(Exception):
    pass


def check_partition(client: DagsterGraphQLClient, asset: str, partition: str) -> None:
    """Refuse a partition the asset does not have, before a run is created for it."""
    node = client._execute(PARTITION_KEYS, {"path": asset.split("/")})["assetNodeOrError"]
    if node["__typename"] != "AssetNode":
        raise CannotLaunch(f"no asset {asset} in the workspace")
    keys = node["partitionKeysByDimension"][0]["partitionKeys"] if node["partitionKeysByDimension"] else []
    if partition not in set(keys):
        span = f", {keys[0]} .. {keys[-1]}" if keys else ""
        raise CannotLaunch(f"{partition!r} is not a partition of {asset} ({len(keys):,} partitions{span})")


def launch(client: DagsterGraphQLClient, asset: str, partition: str, location: str | None) -> str:
    """Start one run of `asset`'s `partition` (its checks included); return the run id."""
    check_partition(client, asset, partition)
    return client.submit_job_execution(
        ASSET_JOB,
        repository_location_name=location,
        repository_name=REPOSITORY,
        tags={PARTITION_TAG: partition},
        asset_selection=[asset.split("/")],
    )


def wait(client: DagsterGraphQLClient, run_id: str, timeout: float, poll_seconds: float = 0.5) -> str:
    """Poll the run's status until it is finished; return it."""
    deadline = time.monotonic() + timeout
    while True:
        status = client.get_run_status(run_id).value
        if status in TERMINAL:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {status} after {timeout:.0f}s")
        time.sleep(poll_seconds)


def run_events(client: DagsterGraphQLClient, run_id: str) -> list[dict]:
    events, cursor = [], None
    while True:
        page = client._execute(RUN_EVENTS, {"runId": run_id, "cursor": cursor})["logsForRun"]
        if page["__typename"] != "EventConnection":
            raise RuntimeError(f"cannot read the events of run {run_id}: {page.get('message')}")
        events += page["events"]
        cursor = page["cursor"]
        if not page["hasMore"]:
            return events


def _value(entry: dict):
    for field in ("intRepr", "floatValue", "text", "jsonString"):
        if field in entry:
            return entry[field]
    return f"({entry['__typename']})"


def report(events: list[dict], out=sys.stdout) -> bool:
    """Print materializations' metadata and check results; return whether every check passed."""
    passed = True
    for event in events:
        if event["__typename"] == "MaterializationEvent":
            key = "/".join(event["assetKey"]["path"])
            print(f"{key} partition {event['partition']} materialized:", file=out)
            width = max((len(e["label"]) for e in event["metadataEntries"]), default=0)
            for entry in event["metadataEntries"]:
                print(f"  {entry['label']:<{width}}  {_value(entry)}", file=out)
        elif event["__typename"] == "AssetCheckEvaluationEvent":
            evaluation = event["evaluation"]
            passed &= evaluation["success"]
            verdict = "passed" if evaluation["success"] else f"FAILED ({evaluation['severity']})"
            detail = f": {evaluation['description']}" if evaluation["description"] else ""
            print(f"check {evaluation['checkName']}: {verdict}{detail}", file=out)
        elif event["__typename"] == "ExecutionStepFailureEvent":
            print(f"step {event['stepKey']} failed: {event['error']['message'].strip()}", file=out)
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("partition", help="zip code to materialize, e.g. 10016")
    parser.add_argument("--url", default="http://localhost:3000", help="Dagster webserver (default %(default)s)")
    parser.add_argument("--asset", default="cleaned_companies")
    parser.add_argument("--location", default="zip_etl", help="code location (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run")
    args = parser.parse_args(argv)

    started = time.monotonic()
    try:
        client = client_for(args.url)
        run_id = launch(client, args.asset, args.partition, args.location)
    except (DagsterGraphQLClientError, CannotLaunch) as error:
        detail = " ".join(str(part) for part in error.args if part) or type(error).__name__
        print(f"cannot launch {args.asset} partition {args.partition} at {args.url}: {detail}", file=sys.stderr)
        return 2
    print(f"launched run {run_id} for {args.asset} partition {args.partition}", flush=True)
    status = wait(client, run_id, args.timeout)
    print(f"run {run_id}: {status} after {time.monotonic() - started:.1f}s", flush=True)
    checks_passed = report(run_events(client, run_id))
    return 0 if status == "SUCCESS" and checks_passed else 1


if __name__ == "__main__":
    sys.exit(main())
