"""Dagster's `dg` toolchain from the repository root (dg.toml), beside the README's `dagster dev`:
`dg check defs`, `dg list defs`, `dg launch` on the real definitions, and the reason dg.toml is not
a [tool.dg] block of pyproject.toml."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from zip_etl import settings
from zip_etl_tests.conftest import ARTIFACTS
from zip_etl_tests.helpers import drop_written_partitions, seed_raw

ROOT = Path(__file__).resolve().parents[1]
DG = Path(sys.executable).parent / "dg"


def dg(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`dg ARGS` as a user runs it from the repository root (the checkout's dagster.yaml, so no DAGSTER_HOME)."""
    return subprocess.run(
        [str(DG), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},
    )


def test_dg_check_defs_validates_the_yaml_and_loads_the_definitions():
    result = dg("check", "defs")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All component YAML validated successfully." in result.stdout + result.stderr
    assert "All definitions loaded successfully." in result.stdout + result.stderr


def test_dg_list_defs_shows_what_cleaned_companies_had_before_the_component():
    result = dg("list", "defs", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = json.loads(result.stdout)
    assets = {a["asset_key"]: a for a in listed["assets"]}
    assert set(assets) == {"cleaned_companies", "raw_companies"}
    assert assets["cleaned_companies"]["dependency_keys"] == ["raw_companies"]
    assert assets["cleaned_companies"]["group_name"] == assets["raw_companies"]["group_name"] == "companies"
    # The descriptions come from template variables of the defs.yaml: rendered, not left as `{{ ... }}`.
    for key, asset in assets.items():
        assert asset["description"] and "{{" not in asset["description"], (key, asset["description"])
    assert {c["key"] for c in listed["asset_checks"]} == {
        f"cleaned_companies:{name}" for name in ("schema_matches_declaration", "key_is_unique", "required_values_present",
                                                 "zip_codes_are_partitions", "rows_reconcile", "raw_rows_have_partitions")}
    assert {j["name"] for j in listed["jobs"]} >= {"cleaned_companies_debug", "observe_raw_companies",
                                                   "refresh_cleaned_companies"}
    assert {s["name"] for s in listed["sensors"]} == {"refresh_changed_zip_codes"}


def test_dg_launch_builds_one_zip_code_with_its_checks(zip_etl_environment, query):
    """The README's one-zip-code command: `dg launch --assets cleaned_companies --partition 10016`,
    the zip code written and its checks run, with no warning above the run's output."""
    etl_url = zip_etl_environment["etl_url"]
    seed_raw(etl_url, "public", rows=300, zip_codes=["10016"])
    drop_written_partitions(etl_url, ["10016"])
    try:
        result = dg("launch", "--assets", "cleaned_companies", "--partition", "10016")
        written = query("SELECT count(*) FROM public.cleaned_companies WHERE zip_code = '10016'")[0][0]
        quarantined = query("SELECT count(*) FROM public.cleaned_companies_quarantine WHERE zip_code = '10016'")[0][0]
    finally:  # other suites read public.cleaned_companies
        drop_written_partitions(etl_url, ["10016"])
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert written + quarantined == 300 and written > 0
    assert "Asset check 'raw_rows_have_partitions' on 'cleaned_companies' passed." in output
    assert "Warning" not in output, output


def test_no_pyproject_block_hides_workspace_yaml_from_dagster_dev():
    """`dagster dev` prefers a [tool.dagster] or [tool.dg] block of pyproject.toml to workspace.yaml, and
    would then serve zip_etl alone, without test mode's zip_etl_test: dg's settings live in dg.toml,
    which `dagster dev` does not read. (test_testmode.py's test_the_readme_dagster_dev_serves_test_mode
    starts the README's `dagster dev` and sees both locations.)"""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    assert not {"dagster", "dg"} & set(tool)
    dg_toml = tomllib.loads((ROOT / "dg.toml").read_text())
    assert dg_toml["directory_type"] == "project"
    assert dg_toml["project"]["code_location_target_module"] == "zip_etl.definitions"


@pytest.mark.slow
def test_dg_dev_with_the_workspace_serves_both_code_locations(zip_etl_environment):
    """`dg dev` in a dg project serves that one project (zip_etl); `dg dev -w workspace.yaml` hands the
    README's workspace to the same server, which then serves test mode's zip_etl_test too."""
    from zip_etl_tools.dagster_dev import running_dagster_dev

    env = {**os.environ, settings.AUTO_REFRESH: "off"}
    with running_dagster_dev(ARTIFACTS / "dg-dev.log", env=env, command=[str(DG), "dev", "-w", "workspace.yaml"]) as server:
        assert server.code_locations() == {"zip_etl": "LOADED", "zip_etl_test": "LOADED"}
