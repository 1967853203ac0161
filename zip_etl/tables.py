"""The tables zip_etl reads and writes, declared once: DDL, COPY column lists and the UI's schema
all come from here."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from psycopg2 import sql

from zip_etl.db.tables import Column, Table

RAW_COMPANIES = Table(
    schema="public",
    name="raw_companies",
    columns=(
        Column("raw_id", "bigint", nullable=False),
        Column("updated_at", "timestamptz", nullable=False),
        Column("record_id", "text"),
        Column("company_name", "text"),
        Column("street_address", "text"),
        Column("city", "text"),
        Column("state", "text"),
        Column("zip_code", "text", nullable=False),
        Column("postal_code", "text"),
        Column("phone", "text"),
        Column("employees", "text"),
        Column("annual_revenue", "text"),
        Column("founded_year", "text"),
        Column("industry", "text"),
    ),
    primary_key=("raw_id",),
    partition_column="zip_code",
)

# The data version of a zip code's raw rows. It relies on two columns of the raw table:
# - `raw_id`: unique per row, never reused (a deleted row's id does not come back);
# - `updated_at`: set by upstream whenever a row is inserted or changed.
# Version = row count + md5 of the zip code's (raw_id, updated_at) pairs in raw_id order, so an
# insert, a delete, an update (which bumps updated_at) and a row moving to another zip code all
# change it. A zip code with no rows (never had any, or all deleted) has EMPTY_RAW_VERSION.
# An update that does not bump `updated_at` is not seen: upstream must maintain that column.
EMPTY_RAW_VERSION = "0-empty"

_RAW_VERSIONS = """
SELECT {zip}, count(*) || '-' || md5(string_agg(
           {id}::text || '@' || (extract(epoch FROM {updated}) * 1000000)::bigint::text, ',' ORDER BY {id}))
FROM {table} {where} GROUP BY {zip}
"""


def raw_data_versions(cursor, table: Table, zip_codes: Sequence[str] | None = None) -> dict[str, str]:
    """Data version per zip code of `table` (shaped like RAW_COMPANIES), for every zip code (or
    `zip_codes`) in ONE grouped query; zip codes without rows get EMPTY_RAW_VERSION."""
    zip_column = sql.Identifier(table.partition_column)
    statement = sql.SQL(_RAW_VERSIONS).format(
        zip=zip_column,
        id=sql.Identifier("raw_id"),
        updated=sql.Identifier("updated_at"),
        table=table.identifier,
        where=sql.SQL("WHERE {} = ANY(%s)").format(zip_column) if zip_codes is not None else sql.SQL(""),
    )
    cursor.execute(statement, (list(zip_codes),) if zip_codes is not None else None)
    versions = dict(cursor.fetchall())
    if zip_codes is not None:
        return {z: versions.get(z, EMPTY_RAW_VERSION) for z in zip_codes}
    return versions


CLEANED_COMPANIES = Table(
    schema="public",
    name="cleaned_companies",
    columns=(
        Column("zip_code", "text", nullable=False),
        Column("record_id", "text", nullable=False),
        Column("company_name", "text", nullable=False),
        Column("street_address", "text"),
        Column("city", "text"),
        Column("state", "text"),
        Column("zip4", "text"),
        Column("phone", "text"),
        Column("employees", "integer"),
        Column("annual_revenue_usd", "bigint"),
        Column("founded_year", "smallint"),
        Column("industry", "text"),
        Column("raw_id", "bigint", nullable=False),
        Column("source_updated_at", "timestamptz", nullable=False),
    ),
    primary_key=("zip_code", "record_id"),
    partition_column="zip_code",
)


# Changes to CLEANED_COMPANIES since a release wrote tables with it, and how `zip-etl migrate` brings
# such a table up to date in place: column -> (type it had, USING expression giving the new value).
# zip4 was a smallint, which dropped its leading zeros; every zip4 has four digits, so padding the
# stored number back to four digits restores the original text exactly.
CLEANED_COMPANIES_MIGRATIONS = {"zip4": ("smallint", "lpad({column}::text, 4, '0')")}
MIGRATE_HINT = "run `zip-etl migrate` to bring the table up to date (it changes no value)"


def migration_statements(cursor, table: Table) -> list[sql.Composed]:
    """ALTER statements that bring `table` (shaped like CLEANED_COMPANIES) from an earlier release's
    declaration to today's; empty when it is current or does not exist."""
    cursor.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (table.schema, table.name),
    )
    found = dict(cursor.fetchall())
    statements = []
    for column in table.columns:
        old = CLEANED_COMPANIES_MIGRATIONS.get(column.name)
        if old and found.get(column.name) == old[0]:
            using = sql.SQL(old[1]).format(column=sql.Identifier(column.name))
            statements.append(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}").format(
                    table.identifier, sql.Identifier(column.name), sql.SQL(column.sql_type), using
                )
            )
    return statements


def quarantine_table(table: Table) -> Table:
    """Where rows rejected from `table`'s partitions are kept: the partition they came from, why they
    were rejected, and every original value (as JSON, so it survives any change of the raw schema).

    It is written in the same transaction as `table`'s partitions, so for every partition
    rows in = rows in `table` + rows here, at any moment.
    """
    return Table(
        schema=table.schema,
        name=f"{table.name}_quarantine",
        columns=(
            Column(table.partition_column, "text", nullable=False),
            Column("reason", "text", nullable=False),
            Column("detail", "text"),
            Column("raw_values", "jsonb", nullable=False),
        ),
        partition_column=table.partition_column,
    )


def partition_counts_table(table: Table) -> Table:
    """Rows per partition of `table` and of its quarantine, kept in the same transaction as every
    write, so the table's totals are one small sum instead of a count over the whole table."""
    return Table(
        schema=table.schema,
        name=f"{table.name}_partitions",
        columns=(
            Column(table.partition_column, "text", nullable=False),
            Column("rows", "bigint", nullable=False),
            Column("rows_quarantined", "bigint", nullable=False),
            Column("written_at", "timestamptz", nullable=False),
        ),
        primary_key=(table.partition_column,),
        partition_column=table.partition_column,
    )


def dagster_table_schema(table: Table) -> dg.TableSchema:
    """The table's columns as Dagster shows them (and as the IO manager creates them)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                c.sql_type,
                constraints=dg.TableColumnConstraints(nullable=c.nullable),
            )
            for c in table.columns
        ]
    )


def table_from_dagster_schema(
    schema: str, name: str, table_schema: dg.TableSchema, primary_key, partition_column
) -> Table:
    return Table(
        schema=schema,
        name=name,
        columns=tuple(
            Column(c.name, c.type, nullable=c.constraints.nullable if c.constraints else True)
            for c in table_schema.columns
        ),
        primary_key=tuple(primary_key or ()),
        partition_column=partition_column,
    )
