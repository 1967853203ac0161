"""One poisoned zip code in a batch: the others are written and marked, the bad one is reported."""

import dagster as dg
import pandas as pd
import pytest
from psycopg2 import sql

from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from zip_etl.definitions import cleaned_companies, raw_companies
from zip_etl.demo_data import generate_raw_companies
from zip_etl.partitions import ZIP_CODES
from zip_etl.transform import cleaning
from zip_etl.transform.isolation import clean_isolating_failures
from zip_etl_tests.helpers import pipeline_resources, seed_raw

ZIPS = ["00501", "00544", "01001", "01002", "01003"]
POISON = "POISON-PILL"


def poison_the_phone_rule(monkeypatch):
    """The phone rule, raising when a column holds the poison value."""
    import pyarrow.compute as pc

    rule = cleaning.RULES_BY_NAME["phone"]
    original = rule.function

    def phone(values):
        if pc.any(pc.equal(values, POISON)).as_py():
            raise RuntimeError("poisoned phone value")
        return original(values)

    monkeypatch.setattr(rule, "function", phone)


def test_bisection_isolates_exactly_the_bad_zip_codes(monkeypatch):
    raw = generate_raw_companies(2000, ZIPS, seed=3)
    raw.loc[raw.index[raw["zip_code"] == "01002"][:1], "phone"] = POISON
    poison_the_phone_rule(monkeypatch)
    calls = []

    def counting_clean(frame: pd.DataFrame):
        calls.append(frame["zip_code"].nunique())
        return cleaning.clean_companies(frame)

    result, failures = clean_isolating_failures(raw, ZIPS, counting_clean)
    assert list(failures) == ["01002"] and "poisoned phone value" in failures["01002"]
    assert set(result.cleaned["zip_code"].astype(str)) == set(ZIPS) - {"01002"}
    good = raw[raw["zip_code"] != "01002"]
    assert len(result.cleaned) + len(result.rejected) == len(good)
    assert len(calls) <= 1 + 2 * 3  # log2(5) levels, two calls per level at most


def test_clean_batch_is_cleaned_in_one_call():
    raw = generate_raw_companies(500, ZIPS, seed=4)
    calls = []
    result, failures = clean_isolating_failures(raw, ZIPS, lambda f: calls.append(1) or cleaning.clean_companies(f))
    assert failures == {} and len(calls) == 1


@pytest.fixture
def seeded(schema, etl_url):
    raw = generate_raw_companies(1500, ZIPS, seed=5)
    raw.loc[raw.index[raw["zip_code"] == "01002"][:1], "phone"] = POISON
    seed_raw(etl_url, schema, raw)
    return schema


def test_poisoned_zip_code_in_a_batched_run(seeded, query, monkeypatch):
    resources = pipeline_resources(seeded)
    table = sql.Identifier(seeded, "cleaned_companies")
    instance = dg.DagsterInstance.ephemeral()

    # First a clean run of the whole range, so 01002 has previous rows.
    first = dg.materialize([raw_companies, cleaned_companies], selection=[cleaned_companies], resources=resources,
                           instance=instance,
                           tags={ASSET_PARTITION_RANGE_START_TAG: "00501", ASSET_PARTITION_RANGE_END_TAG: "01003"})
    assert first.success
    before = dict(query(sql.SQL("SELECT zip_code, count(*) FROM {} GROUP BY 1").format(table)))
    assert before["01002"] > 0

    poison_the_phone_rule(monkeypatch)
    result = dg.materialize([raw_companies, cleaned_companies], selection=[cleaned_companies], resources=resources,
                            instance=instance, raise_on_error=False,
                            tags={ASSET_PARTITION_RANGE_START_TAG: "00501", ASSET_PARTITION_RANGE_END_TAG: "01003"})
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert "1 of" in message and "01002: RuntimeError: poisoned phone value" in message
    assert failure.step_failure_data.user_failure_data.metadata["failed_zip_codes"].value == ["01002"]

    in_range = [z for z in ZIP_CODES if "00501" <= z <= "01003"]
    materialized = sorted(e.partition for e in result.get_asset_materialization_events())
    assert materialized == [z for z in in_range if z != "01002"]
    after = dict(query(sql.SQL("SELECT zip_code, count(*) FROM {} GROUP BY 1").format(table)))
    assert after == before  # good zip codes rewritten identically; the failed one kept its old rows
    meta = {e.partition: e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert meta["01001"]["rows_out"].value == after["01001"]
