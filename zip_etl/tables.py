"""The tables zip_etl reads and writes, declared once: DDL, COPY column lists and the UI's schema
all come from here."""

from __future__ import annotations

import dagster as dg

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
        Column("zip4", "smallint"),
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
