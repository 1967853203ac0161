"""`PartitionedTableCleaning`: a big PostgreSQL table cleaned per partition (zip code), as a component.

One `defs.yaml` is one table: where its raw rows are, the transform that cleans them, where the
cleaned rows go, and how runs cut the work. `build_defs` gives what `cleaned_companies` has: the raw
table's observable source asset with its data versions, the partitioned cleaned asset (backfill
policy, retries, metadata, column schema), its checks, debug mode's job, the refresh sensor and its
jobs, and the `postgres`/`postgres_writer` resources they use. The YAML's fields are this class's
(`dg list components --json`, or the Docs tab of the UI, show them); docs/USING.md shows how to add
a table.

A table's columns are declared once: in the YAML (`columns:` as a list), or by naming a Python
declaration (`columns: package.module.TABLE`, a `zip_etl.tables.Table`, as cleaned_companies'
tables are: the transform, the DDL and the docs read them too). The partition column and keys the
YAML names must then be the declaration's (a difference stops the load, naming both).
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Annotated, Literal

import dagster as dg
from pydantic import Field

from zip_etl import settings
from zip_etl.code_version import transform_code_version
from zip_etl.defs.assets import build_assets
from zip_etl.defs.checks import build_checks
from zip_etl.defs.jobs import debug_job, refresh_jobs
from zip_etl.defs.resources import resources
from zip_etl.defs.sensors import build_refresh_sensor
from zip_etl.partitions import zip_code_partitions
from zip_etl.resources.postgres import DEFAULT_CHUNK_ROWS
from zip_etl.table_cleaning import TableCleaning
from zip_etl.tables import Column, Source, Table, Target

# Dagster's component loader stores a component's checks as AssetsDefinitions (it stamps each
# definition with its component's origin); resolving them back into checks passes the beta
# `execution_type` parameter, which warns on every load of the definitions (`dg launch`, each run
# worker): Dagster's own bookkeeping, nothing a user can act on, so it is not printed above every run.
warnings.filterwarnings("ignore", message="Parameter `execution_type` of function `AssetsDefinition.__init__`",
                        category=dg.BetaWarning)


class ColumnDeclaration(dg.Model, dg.Resolvable):
    """A column of a table declared in the YAML."""

    name: str
    type: str = Field(description="its SQL type: text, bigint, integer, smallint, timestamptz, numeric, boolean, ...")
    nullable: bool = True


class SourceTable(dg.Model, dg.Resolvable):
    """The raw table: read a partition at a time, never written."""

    asset: str = Field(description="the raw table's asset key (an observable source): `raw_companies`, `test/raw_companies`")
    table: str = Field(description="where it is: `schema.table`")
    columns: str | list[ColumnDeclaration] = Field(
        description="its columns: a list, or the dotted name of a `zip_etl.tables.Table` that declares them"
    )
    partition_column: str | None = Field(
        default=None, description="the column holding each row's partition (zip code, as text); the cleaned table "
        "has a column of the same name (taken from a Python declaration when not given)")
    key: str = Field(description="a whole-number row id, unique and never reused: with `updated_at`, each "
                                 "partition's data version; rejected rows are known by it")
    updated_at: str = Field(description="the time upstream last inserted or changed the row (timestamptz)")
    description: str | None = Field(default=None, description="the raw asset's description (Markdown)")


class TargetTable(dg.Model, dg.Resolvable):
    """The cleaned table, written a partition at a time with its quarantine and partition counts."""

    table: str = Field(description="where it goes: `schema.table` (`<table>_quarantine` and `<table>_partitions` beside it)")
    columns: str | list[ColumnDeclaration] = Field(
        description="its columns: a list, or the dotted name of a `zip_etl.tables.Table` that declares them"
    )
    key: list[str] | None = Field(
        default=None, description="its primary key (taken from a Python declaration when not given)")


TEMPLATE = """\
# A table cleaned per partition (zip code): `dg list components` describes every field.
type: {type_name}

attributes:
  asset: {name}
  group: {name}

  source:
    asset: raw_{stem}
    table: public.raw_{stem}
    # Declare the raw table's columns here (or name a zip_etl.tables.Table: `columns: package.module.TABLE`).
    columns:
      - {{name: row_id, type: bigint, nullable: false}}
      - {{name: changed_at, type: timestamptz, nullable: false}}
      - {{name: zip, type: text, nullable: false}}
      - {{name: value, type: text}}
    partition_column: zip
    key: row_id
    updated_at: changed_at

  # A callable: DataFrame of raw rows -> zip_etl.transform.CleaningResult (zip_etl/table_cleaning.py).
  transform: my_project.transforms.clean_{stem}

  target:
    table: public.{name}
    columns:
      - {{name: zip, type: text, nullable: false}}
      - {{name: row_id, type: bigint, nullable: false}}
      - {{name: value, type: text}}
    key: [zip, row_id]

  partitions: zip_codes
  chunk_rows: {chunk_rows}
"""


def _partition_keys(context: dg.ResolutionContext, keys: str | list[str]) -> str | list[str]:
    """The partition keys as the YAML writes them: rendered as templates, `"10016"` would become the
    number 10016."""
    return keys if isinstance(keys, str) else [str(key) for key in keys]


class PartitionedTableCleaningScaffolder(dg.Scaffolder):
    """`dg scaffold defs zip_etl.components.PartitionedTableCleaning <folder>`: a defs.yaml to fill in,
    named after the folder (`cleaned_contacts`: raw table `public.raw_contacts`)."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        if request.scaffold_format != "yaml":
            return dg.scaffold_component(request)
        name = Path(request.target_path).name
        stem = name.removeprefix("cleaned_")
        text = TEMPLATE.format(type_name=request.type_name, name=name, stem=stem, chunk_rows=DEFAULT_CHUNK_ROWS)
        (Path(request.target_path) / "defs.yaml").write_text(text, encoding="utf-8")


@dg.scaffold_with(PartitionedTableCleaningScaffolder)
class PartitionedTableCleaning(dg.Component, dg.Model, dg.Resolvable):
    """Clean a big PostgreSQL table per partition (zip code): read a run's partitions from one snapshot
    with binary COPY, clean them with a pandas transform a chunk at a time, write them with COPY in one
    transaction (rejected rows quarantined with their reason), with checks, data versions, a refresh
    sensor and debug mode."""

    asset: str = Field(description="the cleaned table's asset key: `cleaned_companies`, `test/cleaned_companies`")
    group: str = Field(default="default", description="the asset group of both assets")
    description: str | None = Field(default=None, description="the cleaned asset's description (Markdown)")
    source: SourceTable
    transform: str = Field(
        description="the dotted name of the transform: a callable taking a DataFrame of raw rows and returning "
        "a `zip_etl.transform.CleaningResult` (the cleaned rows, and the rejected ones with `reason` and "
        "`detail`); contract in zip_etl/table_cleaning.py"
    )
    target: TargetTable
    partitions: Annotated[Literal["zip_codes"] | list[str],
                          dg.Resolver(_partition_keys, model_field_type=Literal["zip_codes"] | list[str])] = Field(
        default="zip_codes", description="`zip_codes` (the 41,749 active US zip codes) or a list of partition keys "
        "(used in sorted order)"
    )
    chunk_rows: int = Field(default=DEFAULT_CHUNK_ROWS, gt=0, description=(
        "raw rows read and cleaned at once: a run's memory follows it (`zip-etl sizing`); the `postgres` "
        "resource's `chunk_rows` overrides it"))
    partitions_per_run: int | None = Field(default=None, gt=0, description=(
        "partitions per run of a backfill or refresh (unset: ZIP_ETL_PARTITIONS_PER_RUN, 2000)"))
    truth_table: str | None = Field(default=None, description=(
        "`schema.table`, shaped like the target, that the cleaned partitions must equal: adds the "
        "`matches_truth` check (test mode)"))
    debug_job: bool = Field(default=True, description="add `<asset>_debug`, the job that runs in debug mode")
    refresh_sensor: str | bool = Field(default=True, description=(
        "the refresh sensor (and its jobs): true names it `refresh_<asset>`, a string names it, false leaves it out"))

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        spec = self.table_cleaning()
        raw, cleaned = build_assets(spec)
        jobs, sensors = [debug_job(spec)] if spec.debug_job else [], []
        if spec.refresh_sensor:
            observe, refresh = refresh_jobs(spec)
            jobs += [observe, refresh]
            sensors.append(build_refresh_sensor(spec, observe, refresh))
        return dg.Definitions(assets=[raw, cleaned], asset_checks=build_checks(spec, cleaned), jobs=jobs,
                              sensors=sensors, resources=resources())

    def table_cleaning(self) -> TableCleaning:
        """The YAML, resolved and checked: each problem stops the load with one line naming its field."""
        where = f"PartitionedTableCleaning {self.asset}"
        transform = _import(f"{where}: transform", self.transform)
        if not callable(transform):
            raise ValueError(f"{where}: transform {self.transform!r} is a {type(transform).__name__}, not a callable")
        source_declared, source_table = _table(f"{where}: source", self.source.table, self.source.columns,
                                               self.source.partition_column, None)
        partition_column = source_table.partition_column
        target_declared, target_table = _table(f"{where}: target", self.target.table, self.target.columns,
                                               partition_column, self.target.key)
        if not target_table.primary_key:
            raise ValueError(f"{where}: target.key is missing: the cleaned table needs a primary key")
        try:
            source = Source(source_table, key=self.source.key, updated_at=self.source.updated_at)
        except ValueError as error:
            raise ValueError(f"{where}: source: {error}") from None
        key = dg.AssetKey.from_user_string(self.asset)
        per_run = self.partitions_per_run or settings.partitions_per_run()
        sensor = self.refresh_sensor if isinstance(self.refresh_sensor, str) else (
            f"refresh_{'_'.join(key.path)}" if self.refresh_sensor else None)
        return TableCleaning(
            asset_key=key,
            source_key=dg.AssetKey.from_user_string(self.source.asset),
            source=source,
            target=Target.of(target_table, rejected_key=source.key),
            transform=transform,
            # In sorted order: a run's partitions are a range, and raw_rows_have_partitions gives each
            # run the raw values between its range and the next one's.
            partitions=(zip_code_partitions if self.partitions == "zip_codes"
                        else dg.StaticPartitionsDefinition(sorted(set(self.partitions)))),
            chunk_rows=self.chunk_rows,
            partitions_per_run=per_run,
            code_version=_code_version(where, transform, (source_declared, target_declared)),
            group_name=self.group,
            description=self.description or (
                f"`{source_table.qualified_name}` cleaned by `{self.transform}`, one partition per "
                f"{partition_column}, written to `{target_table.qualified_name}` (rejected rows: "
                f"`{target_table.name}_quarantine`)."),
            source_description=self.source.description or (
                f"Raw rows of `{source_table.qualified_name}`, loaded outside Dagster; each row's "
                f"`{partition_column}` is its partition. Observing it records the partitions whose data version "
                f"(row count + md5 of {self.source.key}/{self.source.updated_at}) changed."),
            truth=(_located(f"{where}: truth_table", self.truth_table, target_table)
                   if self.truth_table else None),
            debug_job=self.debug_job,
            refresh_sensor=sensor,
        )


def _import(where: str, dotted: str):
    """`package.module.attribute` (or `package.module:attribute`), imported."""
    module_name, _, attribute = dotted.rpartition(":") if ":" in dotted else dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"{where}: cannot import {dotted!r} ({type(error).__name__}: {error}); name it as "
                         "package.module.attribute, importable where Dagster loads the code") from None


def _split(where: str, qualified: str) -> tuple[str, str]:
    schema, dot, name = qualified.partition(".")
    if not dot or "." in name:
        raise ValueError(f"{where}: {qualified!r} is not `schema.table`")
    return schema, name


def _located(where: str, qualified: str, declared: Table) -> Table:
    try:
        return declared.with_name(*_split(where, qualified))
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _table(where: str, qualified: str, columns, partition_column: str | None, key: list[str] | None
           ) -> tuple[Table, Table]:
    """(the declaration, the table where the YAML puts it) from a `table:` and `columns:` pair."""
    if isinstance(columns, str):
        declared = _import(f"{where}.columns", columns)
        if not isinstance(declared, Table):
            raise ValueError(f"{where}.columns: {columns!r} is a {type(declared).__name__}, not a zip_etl.tables.Table")
        if partition_column is not None and partition_column != declared.partition_column:
            raise ValueError(f"{where}: the partition column is {partition_column!r} here but "
                             f"{declared.partition_column!r} in {columns}")
        if key is not None and tuple(key) != declared.primary_key:
            raise ValueError(f"{where}.key: {key} here but {list(declared.primary_key)} in {columns}")
    else:
        if partition_column is None:
            raise ValueError(f"{where}.partition_column is missing: name the column holding each row's zip code")
        schema, name = _split(where, qualified)
        try:
            declared = Table(schema, name, tuple(Column(c.name, c.type, c.nullable) for c in columns),
                             primary_key=tuple(key or ()), partition_column=partition_column)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    return declared, _located(where, qualified, declared)


def _code_version(where: str, transform, tables: tuple[Table, ...]) -> str:
    try:
        return transform_code_version(transform, tables)
    except (TypeError, OSError) as error:
        raise ValueError(f"{where}: transform: its source cannot be found for the code version ({error}); "
                         "name a function defined in a module") from None
