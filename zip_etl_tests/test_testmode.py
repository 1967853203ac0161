"""Test mode (a second instance of the cleaned_companies component): the sample table through the real
pipeline equals the hand-written truth, and a broken cleaning rule makes the truth check fail naming
the zip code, column and values."""

import dagster as dg
import pyarrow.compute as pc
import pytest

from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from zip_etl.db.connection import transaction
from zip_etl.testmode import SAMPLE_TABLE, TEST_SCHEMA, load_fixtures
from zip_etl.testmode_definitions import defs
from zip_etl.transform import cleaning


@pytest.fixture
def fixtures_loaded(etl_url, query):
    with transaction(etl_url) as cursor:
        counts = load_fixtures(cursor)
    query(f"DROP TABLE IF EXISTS {TEST_SCHEMA}.cleaned_companies")
    return counts


def run_test_partitions():
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        asset_selection=[dg.AssetKey(["test", "cleaned_companies"])],
        tags={ASSET_PARTITION_RANGE_START_TAG: "00501", ASSET_PARTITION_RANGE_END_TAG: "10016"},
        raise_on_error=False,
    )


def test_fixtures_load(fixtures_loaded, query):
    assert fixtures_loaded == (12, 7)
    assert query(f"SELECT count(*) FROM {SAMPLE_TABLE.schema}.{SAMPLE_TABLE.name} WHERE company_name LIKE %s",
                 ("%\t%",))[0][0] == 2  # tabs survive loading (raw rows 1 and 11)


def production_rows(query):
    exists = query("SELECT to_regclass('public.cleaned_companies') IS NOT NULL")[0][0]
    return query("SELECT count(*), sum(hashtext(c::text)) FROM public.cleaned_companies c")[0] if exists else None


@pytest.mark.slow
def test_test_partitions_match_the_truth(fixtures_loaded, query):
    production_before = production_rows(query)
    result = run_test_partitions()
    assert result.success
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["matches_truth"].passed, checks["matches_truth"].metadata["first_mismatches"].value
    assert checks["matches_truth"].metadata["rows_expected"].value == 7
    assert all(e.passed for e in checks.values())
    assert query(f"SELECT count(*) FROM {TEST_SCHEMA}.cleaned_companies")[0][0] == 7  # written to the test schema
    assert production_rows(query) == production_before  # the production table is never touched


@pytest.mark.slow
def test_a_broken_rule_fails_the_truth_check_with_a_useful_message(fixtures_loaded, monkeypatch):
    phone = cleaning.RULES_BY_NAME["phone"]  # the phone rule forgets E.164's +1
    original = phone.function
    monkeypatch.setattr(phone, "function", lambda raw: pc.utf8_slice_codeunits(original(raw), 2))
    result = run_test_partitions()
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    truth = checks["matches_truth"]
    assert not truth.passed
    mismatches = truth.metadata["first_mismatches"].value
    assert "00501/C010: phone expected '+16315550110', got '6315550110'" in mismatches
    assert truth.metadata["mismatches"].value == 5  # the five rows that have a phone


TEST_ASSET_CHECKS = """
{ assetNodeOrError(assetKey: {path: ["test", "cleaned_companies"]}) {
    __typename
    ... on AssetNode { assetChecksOrError { ... on AssetChecks { checks { name } } } } } }"""


@pytest.mark.slow
def test_the_readme_dagster_dev_serves_test_mode(dagster_dev):
    """`dagster dev` exactly as the README runs it, from the repository root, serves both code locations
    of workspace.yaml: test mode's asset and its matches_truth check can be reached from the UI."""
    from zip_etl_tools.dagster_dev import README_COMMAND

    assert [README_COMMAND[0].rsplit("/", 1)[-1], *README_COMMAND[1:]] == ["dagster", "dev"]
    assert dagster_dev.code_locations() == {"zip_etl": "LOADED", "zip_etl_test": "LOADED"}
    node = dagster_dev.client()._execute(TEST_ASSET_CHECKS)["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    assert "matches_truth" in {c["name"] for c in node["assetChecksOrError"]["checks"]}
