"""scripts/materialize_partition.py, the GraphQL-client flow users copy, against a real `dagster dev`."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from zip_etl.demo_data import generate_raw_companies, write_raw_companies
from zip_etl.transform import clean_companies
from zip_etl_tests.helpers import drop_written_partitions

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "materialize_partition.py"
ZIP = "60601"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900
    )


@pytest.mark.slow
def test_script_launches_one_partition_waits_and_prints_its_metadata(zip_etl_environment, dagster_dev, query):
    raw = generate_raw_companies(500, [ZIP, "60602"], seed=8)
    write_raw_companies(zip_etl_environment["etl_url"], raw)
    cleaned = clean_companies(raw[raw["zip_code"] == ZIP])
    drop_written_partitions(zip_etl_environment["etl_url"], [ZIP])
    try:
        result = run_script(ZIP, "--url", dagster_dev.url)
        written = query("SELECT count(*) FROM public.cleaned_companies WHERE zip_code = %s", (ZIP,))[0][0]
    finally:  # other suites read public.cleaned_companies
        drop_written_partitions(zip_etl_environment["etl_url"], [ZIP])
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert re.search(r"^run [\w-]+: SUCCESS after [\d.]+s$", out, re.M), out
    assert f"cleaned_companies partition {ZIP} materialized:" in out

    def printed(label: str) -> str:
        return re.search(rf"^  {re.escape(label)}\s+(\S+)$", out, re.M).group(1)

    assert int(printed("rows_in")) == len(raw[raw["zip_code"] == ZIP])
    assert int(printed("rows_out")) == len(cleaned.cleaned) > 0
    assert int(printed("rows_rejected")) == len(cleaned.rejected)
    reasons = re.findall(r"^  rejected_\w+\s+(\d+)$", out, re.M)
    assert len(reasons) == 7 and sum(map(int, reasons)) == len(cleaned.rejected)  # every reason, adding up
    passed = re.findall(r"^check (\w+): passed$", out, re.M)
    assert sorted(passed) == ["key_is_unique", "raw_rows_have_partitions", "required_values_present",
                              "rows_reconcile", "schema_matches_declaration", "zip_codes_are_partitions"], out
    assert written == len(cleaned.cleaned)


@pytest.mark.slow
def test_script_names_a_zip_code_that_is_not_a_partition(dagster_dev):
    result = run_script("00000", "--url", dagster_dev.url)
    assert result.returncode == 2
    assert "'00000' is not a partition of cleaned_companies (41,749 partitions, 00501 .. 99950)" in result.stderr
    assert "Traceback" not in result.stderr and "launched run" not in result.stdout, result.stdout + result.stderr


def test_script_says_when_no_webserver_answers():
    from zip_etl_tools.tcp_postgres import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = run_script(ZIP, "--url", url)
    assert result.returncode == 2
    assert f"cannot launch cleaned_companies partition {ZIP} at {url}" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr


from zip_etl_tools.dagster_dev import LAUNCH_RUN  # noqa: E402

RUN = """
query($id: ID!) {
  runOrError(runId: $id) {
    ... on Run { status eventConnection { events { __typename ... on ExecutionStepFailureEvent { error { message } } } } }
  }
}"""


@pytest.mark.slow
def test_a_run_launched_for_an_unknown_partition_names_it_once(dagster_dev):
    """Launching cleaned_companies with the partition tag `ABCDE` (the UI's launchpad, or its GraphQL API):
    the run fails saying once that ABCDE is not a partition key and what partition keys look like
    (it said `Nonexistent partition keys: ['ABCDE', 'ABCDE']`)."""
    import time

    client = dagster_dev.client()
    params = {
        "selector": {"repositoryLocationName": "zip_etl", "repositoryName": "__repository__",
                     "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["cleaned_companies"]}]},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "ABCDE"}]},
    }
    launched = client._execute(LAUNCH_RUN, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    deadline = time.monotonic() + 300
    while (run := client._execute(RUN, {"id": run_id})["runOrError"])["status"] not in {"FAILURE", "SUCCESS", "CANCELED"}:
        assert time.monotonic() < deadline, run
        time.sleep(1)
    assert run["status"] == "FAILURE"
    (message,) = [e["error"]["message"] for e in run["eventConnection"]["events"]
                  if e["__typename"] == "ExecutionStepFailureEvent"]
    print(message)
    assert "'ABCDE' is not a partition key: the partitions are the 41,749 active US zip codes, as 5-digit strings " \
           "from 00501 to 99950." in message
    assert message.count("ABCDE") == 1
