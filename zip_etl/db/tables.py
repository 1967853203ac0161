"""Tables as zip_etl uses them: declared columns, created if missing, partitions replaced atomically."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from psycopg2 import sql


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
                raise ValueError(f"{key!r} is not a column of {self.schema}.{self.name}")

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def column_types(self) -> dict[str, str]:
        return {c.name: c.sql_type for c in self.columns}

    def with_name(self, schema: str, name: str) -> Table:
        return Table(schema, name, self.columns, self.primary_key, self.partition_column)


def create_table_statement(table: Table) -> sql.Composed:
    parts = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(c.name), sql.SQL(c.sql_type), sql.SQL("" if c.nullable else " NOT NULL")
        )
        for c in table.columns
    ]
    if table.primary_key:
        parts.append(
            sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, table.primary_key)))
        )
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table.identifier, sql.SQL(", ").join(parts))


def ensure_table(cursor, table: Table) -> None:
    """Create the schema and table if missing; an existing table is left as it is.

    No DDL runs when the table exists, so a role with only SELECT/INSERT/DELETE on tables a DBA
    created can write them (see docs/RELIABILITY.md, least-privilege roles).
    """
    if table_exists(cursor, table.schema, table.name):
        return
    cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (table.schema,))
    if cursor.fetchone() is None:
        cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
    cursor.execute(create_table_statement(table))
    if table.partition_column and table.partition_column not in table.primary_key[:1]:
        cursor.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(f"{table.name}_{table.partition_column}_idx"),
                table.identifier,
                sql.Identifier(table.partition_column),
            )
        )


# information_schema's name for a declared type, where the two differ.
_TYPE_NAMES = {"timestamptz": "timestamp with time zone"}


def information_schema_type(sql_type: str) -> str:
    return _TYPE_NAMES.get(sql_type, sql_type)


def column_differences(cursor, table: Table) -> list[str]:
    """How `table` as it is in the database differs from its declaration (names, types, nullability,
    order), one line per difference; empty when they agree or the table does not exist."""
    cursor.execute(
        "SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (table.schema, table.name),
    )
    actual = [tuple(row) for row in cursor.fetchall()]
    if not actual:
        return []
    declared = [(c.name, information_schema_type(c.sql_type), c.nullable) for c in table.columns]
    differences = [
        f"column {d[0]}: declared {d[1]}{'' if d[2] else ' NOT NULL'}, found {a[0]} {a[1]}{'' if a[2] else ' NOT NULL'}"
        for d, a in zip(declared, actual)
        if d != a
    ]
    if len(declared) != len(actual):
        differences.append(f"declared {len(declared)} columns, found {len(actual)}")
    return differences


def table_exists(cursor, schema: str, name: str) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{name}"',))
    return bool(cursor.fetchone()[0])
