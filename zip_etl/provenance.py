"""Each cleaned partition's data provenance: the raw data version it was built from and the cleaning
code's version, hashed into its data version exactly as Dagster does it (zip_etl/dagster_internals.py).

A run of cleaned_companies reads each zip code's raw version from the rows it cleans
(zip_etl/partition_stream.py) and records the provenance on each partition's materialization (an
Output would give every partition of a run the same tags); the refresh (zip_etl/refresh.py) compares
it with each zip code's raw version now, and the raw asset's observations record the versions that
changed. Both sides read the recorded versions from Dagster's indexed event tags, a query or two per
asset, not one lookup per partition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dagster as dg

from zip_etl.dagster_internals import DATA_VERSION_TAG, logical_data_version, provenance_tags
from zip_etl.resources.postgres import PostgresResource, RawReads
from zip_etl.tables import EMPTY_RAW_VERSION


def raw_dependency(assets_def: dg.AssetsDefinition, key: dg.AssetKey) -> dg.AssetKey:
    """The raw asset `key` is built from (its one dependency; test mode renames it)."""
    (dep,) = assets_def.specs_by_key[key].deps
    return dep.asset_key


def cleaned_data_version(raw_key: dg.AssetKey, raw_version: str, code_version: str) -> str:
    """The data version of a cleaned partition built by `code_version` from `raw_version`."""
    return logical_data_version(code_version, {raw_key: raw_version})


def partition_provenance(instance: dg.DagsterInstance, raw_key: dg.AssetKey, raw_versions: Mapping[str, str],
                         code_version: str, partitions: Sequence[str]) -> dict[str, dict[str, str]]:
    """The provenance tags of each of `partitions`, built by `code_version` from its raw version, each
    pointing at its raw partition's latest observation (one query), as Dagster's own tags would: the
    UI shows the partition stale once a later observation finds another raw version."""
    observed = instance.event_log_storage.get_latest_storage_id_by_partition(
        raw_key, dg.DagsterEventType.ASSET_OBSERVATION, set(partitions))
    return {z: provenance_tags(raw_key, raw_versions[z], code_version, observed.get(z)) for z in partitions}


def latest_data_versions(
    instance: dg.DagsterInstance, key: dg.AssetKey, event_type: dg.DagsterEventType,
    partitions: Sequence[str] | None = None,
) -> dict[str, str]:
    """The data version on each partition's latest event of `event_type`, in one indexed query."""
    tags = instance.event_log_storage.get_latest_tags_by_partition(
        key, event_type, [DATA_VERSION_TAG], asset_partitions=list(partitions) if partitions is not None else None
    )
    return {partition: values[DATA_VERSION_TAG] for partition, values in tags.items() if DATA_VERSION_TAG in values}


def recorded_data_versions(instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Sequence[str] | None = None
                           ) -> dict[str, str]:
    """The data version each partition of a materialized asset was last recorded with: its latest
    materialization's, or a later observation's (a debug run restates the version; runs before the
    materializations carried their own provenance recorded it on an observation after them)."""
    built = latest_data_versions(instance, key, dg.DagsterEventType.ASSET_MATERIALIZATION, partitions)
    observed = latest_data_versions(instance, key, dg.DagsterEventType.ASSET_OBSERVATION, partitions)
    differ = {p for p, version in observed.items() if p in built and built[p] != version}
    if differ:  # the later event of the two says it
        storage = instance.event_log_storage
        built_ids = storage.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_MATERIALIZATION, differ)
        observed_ids = storage.get_latest_storage_id_by_partition(key, dg.DagsterEventType.ASSET_OBSERVATION, differ)
        differ = {p for p in differ if observed_ids.get(p, -1) > built_ids.get(p, -1)}
    return {**observed, **{p: v for p, v in built.items() if p not in differ}}


def current_raw_versions(postgres: PostgresResource | RawReads, partition_keys: Sequence[str] | None = None
                         ) -> dict[str, str]:
    """Every partition's raw data version now (EMPTY_RAW_VERSION where the zip code has no rows);
    `partition_keys`: the raw table's partitions by default."""
    versions = postgres.raw_data_versions()
    return {key: versions.get(key, EMPTY_RAW_VERSION) for key in partition_keys or postgres.partition_keys}


def changed_raw_versions(
    instance: dg.DagsterInstance, raw_key: dg.AssetKey, postgres: PostgresResource | RawReads,
    partition_keys: Sequence[str] | None = None,
) -> dict[str, str]:
    """Raw versions that differ from the last observed ones (all of them on the first observation)."""
    observed = latest_data_versions(instance, raw_key, dg.DagsterEventType.ASSET_OBSERVATION)
    return {k: v for k, v in current_raw_versions(postgres, partition_keys).items() if observed.get(k) != v}
