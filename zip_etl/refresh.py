"""The refresh cycle: find the zip codes whose raw rows changed (or that were never built) and
rebuild only those, in batched runs.

Every run of cleaned_companies records, per partition it writes, the data provenance of what it
wrote (zip_etl/provenance.py). A partition is stale when the data version it would have if built now
(from the zip code's current raw version) differs from the recorded one, and missing when none is
recorded. Both sides come from a query or two each: every zip code's raw version from PostgreSQL
(`zip_etl.db.ddl.raw_data_versions`), every partition's latest data version from Dagster's indexed
event tags (`recorded_data_versions`). So a check over all 41,749 zip codes costs seconds, not 41,749 lookups (Dagster's own
stale-status resolver looks partitions up one by one; docs/BENCHMARKS.md).

The `refresh_changed_zip_codes` sensor (zip_etl/defs/sensors.py) and `zip-etl refresh` run this
check and launch:
- an observation run of `raw_companies` when raw versions changed since the last observation (it
  records only the changed zip codes, so the UI's per-partition versions and staleness stay right);
- one run of `cleaned_companies` per contiguous range of stale or missing zip codes (in partition
  order, at most ZIP_ETL_PARTITIONS_PER_RUN each), like a backfill; zip codes in between are not touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import dagster as dg

from zip_etl import settings
from zip_etl.code_version import CLEANING_CODE_VERSION
from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from zip_etl.provenance import cleaned_data_version, current_raw_versions, latest_data_versions, recorded_data_versions
from zip_etl.resources.postgres import PostgresResource, RawReads

REFRESH_TAG = "zip_etl/refresh"
RAW_KEY = dg.AssetKey("raw_companies")
CLEANED_KEY = dg.AssetKey("cleaned_companies")


def contiguous_ranges(partition_keys: Sequence[str], selected: Iterable[str], max_per_range: int) -> list[list[str]]:
    """The `selected` keys cut into runs of neighbours in `partition_keys` order, at most
    `max_per_range` each: a run covers a range, and a range must not include unselected keys."""
    chosen = set(selected)
    ranges: list[list[str]] = []
    previous_selected = False
    for key in partition_keys:
        if key in chosen:
            if not previous_selected or len(ranges[-1]) >= max_per_range:
                ranges.append([])
            ranges[-1].append(key)
            previous_selected = True
        else:
            previous_selected = False
    return ranges


@dataclass
class RefreshPlan:
    """What a refresh tick found and what it will run."""

    raw_versions: dict[str, str]
    observed_changes: dict[str, str]
    stale: list[str]  # materialized from older raw data (or older code), in partition order
    missing: list[str]  # no provenance recorded: never built (or built before zip_etl recorded it)
    ranges: list[list[str]] = field(default_factory=list)
    expected_versions: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{len(self.observed_changes):,} zip code(s) with a new raw version since the last observation; "
            f"{len(self.stale):,} stale and {len(self.missing):,} missing partition(s) -> {len(self.ranges)} run(s)"
        )


def plan_refresh(
    instance: dg.DagsterInstance,
    postgres: PostgresResource | RawReads,
    *,
    raw_key: dg.AssetKey = RAW_KEY,
    cleaned_key: dg.AssetKey = CLEANED_KEY,
    code_version: str | None = None,
    partition_keys: Sequence[str] | None = None,
    max_per_run: int | None = None,
    everything: bool = False,
) -> RefreshPlan:
    """Compare every zip code's raw version now with what its cleaned partition was built from
    (`partition_keys`: the raw table's partitions by default)."""
    code_version = code_version or CLEANING_CODE_VERSION
    partition_keys = partition_keys or postgres.partition_keys
    raw_versions = current_raw_versions(postgres, partition_keys)
    observed = latest_data_versions(instance, raw_key, dg.DagsterEventType.ASSET_OBSERVATION)
    recorded = recorded_data_versions(instance, cleaned_key)
    expected = {k: cleaned_data_version(raw_key, v, code_version) for k, v in raw_versions.items()}
    missing = [k for k in partition_keys if k not in recorded]
    stale = [k for k in partition_keys if k in recorded and (everything or recorded[k] != expected[k])]
    return RefreshPlan(
        raw_versions=raw_versions,
        observed_changes={k: v for k, v in raw_versions.items() if observed.get(k) != v},
        stale=stale,
        missing=missing,
        ranges=contiguous_ranges(partition_keys, [*stale, *missing], max_per_run or settings.partitions_per_run()),
        expected_versions=expected,
    )


def digest(values: Iterable[str]) -> str:
    return hashlib.md5("\n".join(values).encode()).hexdigest()[:16]


def refresh_run_requests(plan: RefreshPlan, job_name: str) -> list[dg.RunRequest]:
    """One run per range. The run key names the range and the versions it will build, so a range
    is launched once per state of its raw data (a failing zip code is not retried every tick; it
    stays stale or missing in the UI until its data changes or someone materializes it)."""
    return [
        dg.RunRequest(
            run_key=f"{keys[0]}..{keys[-1]}@{digest(plan.expected_versions[k] for k in keys)}",
            job_name=job_name,
            tags={
                ASSET_PARTITION_RANGE_START_TAG: keys[0],
                ASSET_PARTITION_RANGE_END_TAG: keys[-1],
                REFRESH_TAG: "true",
            },
        )
        for keys in plan.ranges
    ]


# Statuses of a run that has not finished (public statuses; Dagster's own list is private).
UNFINISHED_RUN_STATUSES = [
    dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.SUSPENDED,
]


def runs_in_progress(instance: dg.DagsterInstance, asset_key: dg.AssetKey) -> list[str]:
    """Ids of unfinished runs that materialize `asset_key` (refresh, backfill or manual)."""
    runs = instance.get_runs(dg.RunsFilter(statuses=UNFINISHED_RUN_STATUSES))
    return [run.run_id for run in runs if run.asset_selection is None or asset_key in run.asset_selection]
