"""scripts/materialize_partition.py, the GraphQL-client flow users copy, against a real `dagster dev`."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from zip_etl.db.connection import transaction
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
    assert re.search(rf"^run [\w-]+: SUCCESS after [\d.]+s$", out, re.M), out
    assert f"cleaned_companies partition {ZIP} materialized:" in out

    def printed(label: str) -> str:
        return re.search(rf"^  {re.escape(label)}\s+(\S+)$", out, re.M).group(1)

    assert int(printed("rows_in")) == len(raw[raw["zip_code"] == ZIP])
    assert int(printed("rows_out")) == len(cleaned.cleaned) > 0
    assert int(printed("rows_rejected")) == len(cleaned.rejected)
    assert float(printed("transform_seconds")) >= 0
    passed = re.findall(r"^check (\w+): passed$", out, re.M)
    assert sorted(passed) == ["key_is_unique", "required_values_present", "rows_reconcile",
                              "schema_matches_declaration", "zip_codes_are_partitions"], out
    assert written == len(cleaned.cleaned)


@pytest.mark.slow
def test_script_names_a_zip_code_that_is_not_a_partition(dagster_dev):
    result = run_script("00000", "--url", dagster_dev.url)
    assert result.returncode == 2
    assert "'00000' is not a partition of cleaned_companies (41,749 partitions, 00501 .. 99950)" in result.stderr
    assert "Traceback" not in result.stderr and "launched run" not in result.stdout, result.stdout + result.stderr


def test_script_says_when_no_webserver_answers():
    from zip_etl.db.embedded import free_port

    url = f"http://127.0.0.1:{free_port()}"
    result = run_script(ZIP, "--url", url)
    assert result.returncode == 2
    assert f"cannot launch cleaned_companies partition {ZIP} at {url}" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr
