"""One big table cleaned per partition: what a `PartitionedTableCleaning` component's YAML resolves to
(zip_etl/components/), and what the asset, check, job and sensor factories of zip_etl/defs/ build
from. `cleaned_companies` is one (zip_etl/defs/cleaned_companies/defs.yaml), test mode another.

The transform's contract: a callable taking a pandas DataFrame of raw rows (the source's columns, the
rows of whole partitions, or of one part of a partition larger than `chunk_rows`) and returning a
`zip_etl.transform.CleaningResult`: `cleaned` (the target's columns, each row's partition column
unchanged), `rejected` (rows as they came, the source's columns, plus `reason` and `detail`), and
optionally `unparseable` (values set to NULL, per column). Rows in = cleaned + rejected, per
partition. It must not read or write the database: the stream feeds it, the writer writes what it
returns. An optional attribute `rejection_reasons` (a sequence of strings) fixes the reasons each
partition's metadata counts, in that order (else: the reasons rows were rejected for).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from zip_etl.tables import Source, Table, Target
from zip_etl.transform import clean_companies

if TYPE_CHECKING:
    import pandas as pd

    from zip_etl.partition_stream import PartitionStream
    from zip_etl.resources.postgres import PostgresResource, RawReads
    from zip_etl.resources.writer import PostgresWriter, TargetWrites
    from zip_etl.transform import CleaningResult


@dataclass(frozen=True)
class TableCleaning:
    """A raw table cleaned into a target table, one partition (zip code) at a time, by a transform."""

    asset_key: dg.AssetKey
    """The cleaned table's asset (`cleaned_companies`; test mode: `test/cleaned_companies`)."""
    source_key: dg.AssetKey
    """The raw table's observable source asset."""
    source: Source
    target: Target
    transform: Callable[[pd.DataFrame], CleaningResult]
    partitions: dg.StaticPartitionsDefinition
    chunk_rows: int
    partitions_per_run: int
    code_version: str
    group_name: str
    description: str
    source_description: str
    truth: Table | None = None
    """A hand-written table the cleaned partitions must equal (test mode's `matches_truth` check)."""
    debug_job: bool = True
    refresh_sensor: str | None = None
    """The name of the sensor that rebuilds stale and missing partitions; None: no sensor."""

    @property
    def name(self) -> str:
        """The asset key as one identifier, for the names of its jobs (`test_cleaned_companies`)."""
        return "_".join(self.asset_key.path)

    @property
    def source_name(self) -> str:
        return "_".join(self.source_key.path)

    @functools.cached_property
    def partition_keys(self) -> list[str]:
        return list(self.partitions.get_partition_keys())

    @property
    def rejection_reasons(self) -> Sequence[str] | None:
        return getattr(self.transform, "rejection_reasons", None)

    @property
    def settles_duplicates(self) -> bool:
        """clean_companies' duplicate rule is settled across the parts of a zip code larger than a
        chunk by the stream (zip_etl/partition_stream.py); another transform's parts are cleaned alone."""
        return self.transform is clean_companies

    def reads(self, postgres: PostgresResource) -> RawReads:
        """What this table's assets read through `postgres` (its settings applied)."""
        return postgres.reads(self.source, self.chunk_rows, self.partitions)

    def bind(self, postgres: PostgresResource, writer: PostgresWriter) -> tuple[RawReads, TargetWrites]:
        """The reads and writes of this table through the `postgres` and `postgres_writer` resources."""
        reads = self.reads(postgres)
        return reads, writer.writes(self.target, reads)

    def stream(self, postgres: RawReads, zip_codes: Sequence[str]) -> PartitionStream:
        """A run's zip codes, read from the source and cleaned by the transform, chunk by chunk."""
        from zip_etl.partition_stream import PartitionStream  # noqa: PLC0415 - the stream imports pandas and Arrow

        return PartitionStream(
            postgres.raw_snapshot(), zip_codes, postgres.chunk_rows, clean=self.transform,
            id_column=self.source.key, updated_column=self.source.updated_at,
            rejection_reasons=self.rejection_reasons, settle_duplicates=self.settles_duplicates,
        )
