"""SQL about tables: create them from their declaration (a write's three tables in one step), compare
them with it, bring an earlier release's table up to date, and each raw zip code's data version."""

from __future__ import annotations

from collections.abc import Sequence

from psycopg2 import sql

from zip_etl.db.connection import DatabaseError
from zip_etl.tables import CLEANED_COMPANIES_MIGRATIONS, EMPTY_RAW_VERSION, MIGRATE_HINT, Table, Target


def create_table_statement(table: Table, *, temporary: bool = False) -> sql.Composed:
    """The table's CREATE TABLE (if not exists); `temporary`: a temporary table of that name, dropped
    when its transaction ends."""
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
    columns = sql.SQL(", ").join(parts)
    if temporary:
        return sql.SQL("CREATE TEMPORARY TABLE {} ({}) ON COMMIT DROP").format(sql.Identifier(table.name), columns)
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table.identifier, columns)


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


def ensure_target(cursor, target: Target) -> None:
    """Create what is missing of a write's three tables (and their schema), in the caller's
    transaction; a partition-counts table created beside a table that already holds rows (written by a
    release that kept no counts) starts with their counts. Raises a DatabaseError, naming the fix, when
    a table that exists differs from its declaration: writing into it would mix old and new forms of
    a value (zip4 0332 stored as 332)."""
    counts_existed = table_exists(cursor, target.counts.schema, target.counts.name)
    for table in target.tables:
        ensure_table(cursor, table)
    if not counts_existed:
        cursor.execute(count_partitions_statement(target))
    for table in target.tables:
        differences = column_differences(cursor, table)
        if differences:
            raise DatabaseError(f"{table.qualified_name} does not match its declaration ({'; '.join(differences)}): "
                                f"nothing written; {MIGRATE_HINT}")


def count_partitions_statement(target: Target) -> sql.Composed:
    """Count every partition's rows in the table and its quarantine into the (empty) counts table."""
    part = sql.Identifier(target.table.partition_column)
    return sql.SQL(
        "INSERT INTO {counts} ({part}, rows, rows_quarantined, written_at) "
        "SELECT coalesce(c.k, q.k), coalesce(c.n, 0), coalesce(q.n, 0), now() "
        "FROM (SELECT {part} AS k, count(*) AS n FROM {table} GROUP BY 1) c "
        "FULL JOIN (SELECT {part} AS k, count(*) AS n FROM {quarantine} GROUP BY 1) q ON c.k = q.k"
    ).format(counts=target.counts.identifier, part=part, table=target.table.identifier,
             quarantine=target.quarantine.identifier)


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


_RAW_VERSIONS = """
SELECT {zip}, count(*) || '-' || md5(string_agg(
           {id}::text || '@' || (extract(epoch FROM {updated}) * 1000000)::bigint::text, ',' ORDER BY {id}))
FROM {table} {where} GROUP BY {zip}
"""


def raw_data_versions(cursor, table: Table, zip_codes: Sequence[str] | None = None, *, key: str = "raw_id",
                      updated_at: str = "updated_at") -> dict[str, str]:
    """Data version per zip code of `table` (a raw table: its row id `key` and update time `updated_at`,
    RAW_COMPANIES's by default), for every zip code (or `zip_codes`) in ONE grouped query; zip codes
    without rows get EMPTY_RAW_VERSION."""
    zip_column = sql.Identifier(table.partition_column)
    statement = sql.SQL(_RAW_VERSIONS).format(
        zip=zip_column,
        id=sql.Identifier(key),
        updated=sql.Identifier(updated_at),
        table=table.identifier,
        where=sql.SQL("WHERE {} = ANY(%s)").format(zip_column) if zip_codes is not None else sql.SQL(""),
    )
    cursor.execute(statement, (list(zip_codes),) if zip_codes is not None else None)
    versions = dict(cursor.fetchall())
    if zip_codes is not None:
        return {z: versions.get(z, EMPTY_RAW_VERSION) for z in zip_codes}
    return versions
