"""Data-quality checks on `cleaned_companies`, evaluated over the zip codes of the run that
materialized them (one query per run, whatever its number of zip codes), or over the whole table
when a check is launched on its own.

Blocking (a failure stops downstream assets in the same run): a table that does not match its
declared schema, duplicate keys, missing required values or rows filed under a zip code that is not
an active zip code would corrupt whatever reads the table. Non-blocking: the row reconciliation,
which flags lost rows for a person to look at but does not make the written rows wrong.
Each failing result names the zip codes concerned in its metadata, so the UI shows them per check.
"""

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)
from psycopg2 import sql

from zip_etl.assets.companies import cleaned_companies
from zip_etl.db.connection import transaction
from zip_etl.db.tables import Table, table_exists
from zip_etl.partitions import ZIP_CODES, zip_code_partitions
from zip_etl.resources.io_manager import PostgresCopyIOManager


def run_zip_codes(context: dg.AssetCheckExecutionContext) -> list[str] | None:
    """The zip codes of the run the check belongs to; None means the whole table."""
    tags = context.run.tags
    if PARTITION_NAME_TAG in tags:
        return [tags[PARTITION_NAME_TAG]]
    if ASSET_PARTITION_RANGE_START_TAG in tags:
        from dagster._core.definitions.partitions.partition_key_range import PartitionKeyRange

        return zip_code_partitions.get_partition_keys_in_range(
            PartitionKeyRange(tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG])
        )
    return None


def _table(io_manager: PostgresCopyIOManager) -> Table:
    return io_manager.table_for(
        cleaned_companies.key, cleaned_companies.metadata_by_key[cleaned_companies.key]
    )


def _where(table: Table, keys: Sequence[str] | None) -> tuple[sql.Composable, tuple]:
    if keys is None:
        return sql.SQL("TRUE"), ()
    return sql.SQL("{} = ANY(%s)").format(sql.Identifier(table.partition_column)), (list(keys),)


def _missing_table(table: Table) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        description=f"{table.schema}.{table.name} does not exist: materialize cleaned_companies first",
    )


@dataclass
class _Scope:
    """What a check looks at: the table, the run's zip codes (None: all) as a WHERE clause, a cursor."""

    table: Table
    keys: list[str] | None
    where: sql.Composable
    params: tuple
    cursor: Any


@contextlib.contextmanager
def check_scope(
    context: dg.AssetCheckExecutionContext | None, io_manager: PostgresCopyIOManager
) -> Iterator[_Scope | None]:
    """The check's scope in one read transaction; None when the table does not exist yet."""
    table = _table(io_manager)
    keys = run_zip_codes(context) if context is not None else None
    where, params = _where(table, keys)
    with transaction(io_manager.postgres.url()) as cursor:
        exists = table_exists(cursor, table.schema, table.name)
        yield _Scope(table, keys, where, params, cursor) if exists else None


@dg.asset_check(asset=cleaned_companies, blocking=True, description="columns and types are the declared ones")
def schema_matches_declaration(postgres_io_manager: dg.ResourceParam[PostgresCopyIOManager]) -> dg.AssetCheckResult:
    with check_scope(None, postgres_io_manager) as scope:
        if scope is None:
            return _missing_table(_table(postgres_io_manager))
        table = scope.table
        scope.cursor.execute(
            "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (table.schema, table.name),
        )
        actual = [(name, kind, nullable) for name, kind, nullable in scope.cursor.fetchall()]
    aliases = {"timestamptz": "timestamp with time zone"}
    declared = [(c.name, aliases.get(c.sql_type, c.sql_type), c.nullable) for c in table.columns]
    differences = [f"declared {d}, found {a}" for d, a in zip(declared, actual) if d != a]
    if len(declared) != len(actual):
        differences.append(f"declared {len(declared)} columns, found {len(actual)}")
    return dg.AssetCheckResult(
        passed=not differences,
        metadata={"differences": dg.MetadataValue.json(differences[:20]), "columns": len(actual)},
    )


@dg.asset_check(asset=cleaned_companies, blocking=True, description="one row per (zip_code, record_id)")
def key_is_unique(
    context: dg.AssetCheckExecutionContext, postgres_io_manager: dg.ResourceParam[PostgresCopyIOManager]
) -> dg.AssetCheckResult:
    with check_scope(context, postgres_io_manager) as scope:
        if scope is None:
            return _missing_table(_table(postgres_io_manager))
        key_columns = sql.SQL(", ").join(map(sql.Identifier, scope.table.primary_key))
        scope.cursor.execute(
            sql.SQL("SELECT {cols}, count(*) FROM {t} WHERE {w} GROUP BY {cols} HAVING count(*) > 1 LIMIT 20").format(
                cols=key_columns, t=scope.table.identifier, w=scope.where
            ),
            scope.params,
        )
        duplicates = scope.cursor.fetchall()
    return dg.AssetCheckResult(
        passed=not duplicates,
        metadata={
            "zip_codes_checked": len(scope.keys) if scope.keys is not None else "all",
            "duplicate_keys": dg.MetadataValue.json([list(map(str, d)) for d in duplicates]),
        },
    )


@dg.asset_check(asset=cleaned_companies, blocking=True, description="required columns have values")
def required_values_present(
    context: dg.AssetCheckExecutionContext, postgres_io_manager: dg.ResourceParam[PostgresCopyIOManager]
) -> dg.AssetCheckResult:
    with check_scope(context, postgres_io_manager) as scope:
        if scope is None:
            return _missing_table(_table(postgres_io_manager))
        required = [c.name for c in scope.table.columns if not c.nullable]
        counts = sql.SQL(", ").join(
            sql.SQL("count(*) FILTER (WHERE {} IS NULL OR {}::text = '')").format(sql.Identifier(c), sql.Identifier(c))
            for c in required
        )
        scope.cursor.execute(
            sql.SQL("SELECT {} FROM {} WHERE {}").format(counts, scope.table.identifier, scope.where), scope.params
        )
        missing = dict(zip(required, scope.cursor.fetchone()))
    bad = {column: n for column, n in missing.items() if n}
    return dg.AssetCheckResult(passed=not bad, metadata={"rows_missing_a_required_value": dg.MetadataValue.json(bad)})


@dg.asset_check(asset=cleaned_companies, blocking=True, description="every row's zip code is an active zip code of the run")
def zip_codes_are_partitions(
    context: dg.AssetCheckExecutionContext, postgres_io_manager: dg.ResourceParam[PostgresCopyIOManager]
) -> dg.AssetCheckResult:
    with check_scope(context, postgres_io_manager) as scope:
        if scope is None:
            return _missing_table(_table(postgres_io_manager))
        scope.cursor.execute(
            sql.SQL("SELECT DISTINCT {c} FROM {t} WHERE {w} AND NOT ({c} = ANY(%s))").format(
                c=sql.Identifier(scope.table.partition_column), t=scope.table.identifier, w=scope.where
            ),
            (*scope.params, ZIP_CODES),
        )
        strays = sorted(r[0] for r in scope.cursor.fetchall())
    return dg.AssetCheckResult(passed=not strays, metadata={"unknown_zip_codes": dg.MetadataValue.json(strays[:50])})


RECONCILE_SAMPLE = 200


@dg.asset_check(
    asset=cleaned_companies,
    description=(
        "per zip code: rows in = rows out + rows rejected, and rows out = rows in the table "
        f"(up to {RECONCILE_SAMPLE} zip codes of the run, the heaviest first)"
    ),
)
def rows_reconcile(
    context: dg.AssetCheckExecutionContext, postgres_io_manager: dg.ResourceParam[PostgresCopyIOManager]
) -> dg.AssetCheckResult:
    # Reading a partition's materialization record costs ~1 ms (Dagster deserializes the whole
    # event), so a 2,000-zip-code run checks a sample: the zip codes with the most rows, where a loss
    # would matter most, plus every zip code when the run is small.
    with check_scope(context, postgres_io_manager) as scope:
        if scope is None:
            return _missing_table(_table(postgres_io_manager))
        scope.cursor.execute(
            sql.SQL("SELECT {c}, count(*) FROM {t} WHERE {w} GROUP BY 1 ORDER BY 2 DESC").format(
                c=sql.Identifier(scope.table.partition_column), t=scope.table.identifier, w=scope.where
            ),
            scope.params,
        )
        in_table = dict(scope.cursor.fetchall())
    asset_key = context.check_specs[0].asset_key  # cleaned_companies, or its copy in test mode
    keys = scope.keys
    if keys is None:
        keys = sorted(context.instance.get_materialized_partitions(asset_key))
    keys = (list(in_table) + [k for k in keys if k not in in_table])[:RECONCILE_SAMPLE]
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=list(keys)), limit=len(keys) * 2 + 10
    ).records
    latest: dict[str, dict] = {}
    for record in records:  # newest first
        event = record.asset_materialization
        if event and event.partition and event.partition not in latest:
            latest[event.partition] = {k: v.value for k, v in event.metadata.items()}
    problems = []
    for zip_code in keys:
        metadata = latest.get(zip_code)
        if not metadata or "rows_in" not in metadata:
            continue
        if metadata["rows_in"] != metadata["rows_out"] + metadata["rows_rejected"]:
            problems.append(f"{zip_code}: {metadata['rows_in']} in != {metadata['rows_out']} out + {metadata['rows_rejected']} rejected")
        elif metadata["rows_out"] != in_table.get(zip_code, 0):
            problems.append(f"{zip_code}: {metadata['rows_out']} out but {in_table.get(zip_code, 0)} rows in the table")
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={"zip_codes_checked": len(latest), "problems": dg.MetadataValue.json(problems[:20]),
                  "problem_count": len(problems)},
    )


QUALITY_CHECKS = [schema_matches_declaration, key_is_unique, required_values_present, zip_codes_are_partitions,
                  rows_reconcile]
