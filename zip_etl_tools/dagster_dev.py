"""`dagster dev` as a child process on a free local port: for the browser and GraphQL tests and for
`scripts/ui_latency.py`, which must drive the real webserver and daemon, never a fixed port that
another checkout on the same machine may hold.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from zip_etl import settings
from zip_etl_tools.tcp_postgres import free_port

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions runs(limit: 1000) { runId status tags { key value } } }
  }
}"""
LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}"""
BACKFILL_DONE = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
WORKSPACE = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def _dagster_executable() -> str:
    """This virtualenv's `dagster` script (the README's `.venv/bin/dagster`)."""
    local = Path(sys.executable).parent / "dagster"
    return str(local) if local.exists() else "dagster"


README_COMMAND = [_dagster_executable(), "dev"]


@dataclass(frozen=True)
class DagsterDev:
    """A running `dagster dev`: its URL, port, log file and process."""

    port: int
    log_path: Path
    host: str = "127.0.0.1"
    pid: int | None = None  # the `dagster dev` process (webserver, daemon and code servers are its children)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self):
        from dagster_graphql import DagsterGraphQLClient

        return DagsterGraphQLClient(self.host, port_number=self.port)

    def code_locations(self) -> dict[str, str]:
        """The code locations the webserver serves, with their load status (what the UI lists)."""
        entries = self.client()._execute(WORKSPACE)["workspaceOrError"]["locationEntries"]
        return {entry["name"]: entry["loadStatus"] for entry in entries}

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def launch_backfill(self, partition_keys: list[str], asset: str = "cleaned_companies") -> str:
        """Launch a backfill the way the UI's "Launch backfill" does; return its id."""
        launched = self.client()._execute(
            LAUNCH_BACKFILL, {"params": {"assetSelection": [{"path": [asset]}], "partitionNames": partition_keys}}
        )["launchPartitionBackfill"]
        if launched["__typename"] != "LaunchBackfillSuccess":
            raise RuntimeError(f"backfill not launched: {launched}")
        return launched["backfillId"]

    def backfill(self, backfill_id: str) -> dict:
        return self.client()._execute(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]

    def wait_for_backfill(self, backfill_id: str, timeout: float = 900, on_poll=None, poll_seconds: float = 1) -> dict:
        deadline = time.time() + timeout
        while True:
            backfill = self.backfill(backfill_id)
            if backfill["status"] in BACKFILL_DONE:
                return backfill
            if time.time() > deadline:
                raise TimeoutError(f"backfill {backfill_id} still {backfill['status']} after {timeout:.0f}s")
            if on_poll:
                on_poll(backfill)
            time.sleep(poll_seconds)


def _wait_until_serving(server: subprocess.Popen, dev: DagsterDev, timeout: float) -> None:
    """Return once the webserver answers GraphQL and every code location has loaded."""
    client = dev.client()
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"dagster dev exited with status {server.returncode}:\n{dev.log_tail()}")
        with contextlib.suppress(Exception):
            entries = client._execute(WORKSPACE)["workspaceOrError"]["locationEntries"]
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"dagster dev did not serve {dev.url} within {timeout:.0f}s:\n{dev.log_tail()}")
        time.sleep(1)


@contextlib.contextmanager
def running_dagster_dev(
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 240,
    dagster_home: Path | None = None,
    command: Sequence[str] | None = None,
) -> Iterator[DagsterDev]:
    """Start `dagster dev` (webserver + daemon) from the repository root, as the README does, on a
    free 127.0.0.1 port; yield once it serves; stop it and its children afterwards.

    Without `dagster_home`, DAGSTER_HOME is removed from the environment so that dagster.yaml in the
    checkout is used; with it, that instance (e.g. a deployment's, deploy/celery/dagster.yaml).
    `command`: another command that starts the same server (`dg dev -w workspace.yaml`), given the
    host and port as options.
    """
    environment = {k: v for k, v in (env if env is not None else os.environ).items() if k != "DAGSTER_HOME"}
    if dagster_home is not None:
        environment["DAGSTER_HOME"] = str(dagster_home)
    dev = DagsterDev(port=free_port(), log_path=log_path)
    # The README's command, word for word: `dagster dev`, nothing after it, so that what it loads
    # (workspace.yaml, dagster.yaml) is what a user gets. Host and port go through the environment
    # variables Dagster's CLI reads for its options (DAGSTER_CLI_<COMMAND>_<OPTION>).
    environment.update({"DAGSTER_CLI_DEV_HOST": dev.host, "DAGSTER_CLI_DEV_PORT": str(dev.port)})
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            README_COMMAND if command is None else [*command, "--host", dev.host, "--port", str(dev.port)],
            cwd=cwd or settings.project_root(), env=environment, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops the daemon and run workers too
            # A shell that starts us in the background ignores SIGINT, and the child would inherit
            # that; `dagster dev` shuts its webserver and daemon down cleanly only on SIGINT.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        dev = replace(dev, pid=server.pid)
        try:
            _wait_until_serving(server, dev, timeout)
            yield dev
        finally:
            _stop(server)


def _stop(server: subprocess.Popen) -> None:
    """Ctrl-C for `dagster dev`; then whatever is left of its process group is killed."""
    with contextlib.suppress(ProcessLookupError):
        server.send_signal(signal.SIGINT)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        time.sleep(1)
    server.wait()
