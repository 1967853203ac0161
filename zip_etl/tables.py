"""The tables zip_etl reads and writes, declared once. The DDL, the COPY column lists, the Arrow
types, the Dagster column schema shown in the UI, the transform's column lists and the checks of a
frame before it is written all come from these declarations."""

from __future__ import annotations

import re
from dataclasses import dataclass

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SQL_TYPE = re.compile(r"^[a-z][a-z0-9 ()]*$")


def validate_identifier(name: str, what: str = "identifier") -> str:
    """Refuse configured table/schema/column names that are not plain SQL identifiers."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        raise ValueError(
            f"Invalid {what} {name!r}: use letters, digits and underscores, starting with a letter or "
            "underscore, at most 63 characters."
        )
    return name


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    nullable: bool = True

    def __post_init__(self):
        validate_identifier(self.name, "column name")
        if not _SQL_TYPE.match(self.sql_type):
            raise ValueError(f"Invalid SQL type {self.sql_type!r} for column {self.name!r}")


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    partition_column: str | None = None

    def __post_init__(self):
        validate_identifier(self.schema, "schema name")
        validate_identifier(self.name, "table name")
        names = {c.name for c in self.columns}
        for key in (*self.primary_key, *([self.partition_column] if self.partition_column else [])):
            if key not in names:
                raise ValueError(f"{key!r} is not a column of {self.qualified_name}")

    @property
    def qualified_name(self) -> str:
        """`schema.name`, as messages and Dagster's metadata show the table."""
        return f"{self.schema}.{self.name}"

    @property
    def identifier(self):
        """The table's name for psycopg2's `sql` composition (quoted by the driver, never pasted)."""
        from psycopg2 import sql

        return sql.Identifier(self.schema, self.name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def column_types(self) -> dict[str, str]:
        return {c.name: c.sql_type for c in self.columns}

    def with_name(self, schema: str, name: str) -> Table:
        return Table(schema, name, self.columns, self.primary_key, self.partition_column)


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

# The data version of a zip code's raw rows. It relies on two columns of the raw table (a `Source`'s
# `key` and `updated_at`; RAW_COMPANIES's are these):
# - `raw_id`: unique per row, never reused (a deleted row's id does not come back);
# - `updated_at`: set by upstream whenever a row is inserted or changed.
# Version = row count + md5 of the zip code's (raw_id, updated_at) pairs in raw_id order, so an
# insert, a delete, an update (which bumps updated_at) and a row moving to another zip code all
# change it. A zip code with no rows (never had any, or all deleted) has EMPTY_RAW_VERSION.
# An update that does not bump `updated_at` is not seen: upstream must maintain that column.
EMPTY_RAW_VERSION = "0-empty"

_ROW_ID_TYPES = ("smallint", "integer", "bigint")
_TIME_TYPES = ("timestamptz", "timestamp")


@dataclass(frozen=True)
class Source:
    """A raw table zip_etl reads a partition at a time: its declaration, and the two columns its data
    versions are made of (see EMPTY_RAW_VERSION above): `key`, a whole-number row id that is never
    reused (rejected rows are known by it in the quarantine), and `updated_at`, the time upstream
    last changed the row."""

    table: Table
    key: str
    updated_at: str

    def __post_init__(self):
        types = self.table.column_types
        where = self.table.qualified_name
        if not self.table.partition_column:
            raise ValueError(f"{where} has no partition column: zip_etl reads a partition at a time")
        for role, column, allowed in (("key", self.key, _ROW_ID_TYPES), ("updated_at", self.updated_at, _TIME_TYPES)):
            if column not in types:
                raise ValueError(f"{where}: its {role} column {column!r} is not one of its columns {list(types)}")
            if types[column] not in allowed:
                raise ValueError(f"{where}: its {role} column {column!r} is {types[column]}, expected one of "
                                 f"{list(allowed)}")

    def located(self, schema: str, name: str) -> Source:
        """The same declaration, read from `schema`.`name` (test mode's sample, a test's schema)."""
        return Source(self.table.with_name(schema, name), self.key, self.updated_at)


RAW_SOURCE = Source(RAW_COMPANIES, key="raw_id", updated_at="updated_at")

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


def quarantine_table(table: Table) -> Table:
    """Where rows rejected from `table`'s partitions are kept: the partition they came from, why they
    were rejected, and every original value (as JSON, so it survives any change of the raw schema)."""
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
    """Rows per partition of `table` and of its quarantine, so the table's totals are one small sum
    instead of a count over the whole table."""
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


@dataclass(frozen=True)
class Target:
    """A partitioned table zip_etl writes, declared with the two tables every write of it keeps in
    the same transaction: its quarantine (rejected rows, so per partition rows in = rows in `table` +
    rows in `quarantine`, at any moment) and its partition counts. A write resolves and ensures the
    three together, from this one declaration. `rejected_key` is the raw table's row id, which names a
    rejected row among its original values (`raw_values`) in the quarantine."""

    table: Table
    quarantine: Table
    counts: Table
    rejected_key: str = "raw_id"

    @classmethod
    def of(cls, table: Table, rejected_key: str = "raw_id") -> Target:
        if not table.partition_column:
            raise ValueError(f"{table.qualified_name} has no partition column: zip_etl writes partitioned tables")
        return cls(table, quarantine_table(table), partition_counts_table(table), rejected_key)

    def in_schema(self, schema: str) -> Target:
        """The same three tables in another schema (test mode, the benchmarks, the tests)."""
        return self.located(validate_identifier(schema, "target_schema"), self.table.name)

    def located(self, schema: str, name: str) -> Target:
        """The same declaration written as `schema`.`name` (with its quarantine and counts beside it)."""
        return Target.of(self.table.with_name(schema, name), self.rejected_key)

    @property
    def tables(self) -> tuple[Table, Table, Table]:
        return self.table, self.quarantine, self.counts


CLEANED_TARGET = Target.of(CLEANED_COMPANIES, rejected_key=RAW_SOURCE.key)
