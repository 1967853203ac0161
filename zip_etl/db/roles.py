"""Least-privilege grants for the role zip_etl's runs use on the ETL database.

The ETL role reads the raw table and writes the cleaned tables, nothing else: it cannot change the
raw rows, and it cannot create schemas. Dagster's storage has a role of its own that owns only the
Dagster database (Dagster creates and migrates its tables there). docs/RELIABILITY.md shows the SQL;
the security tests run these statements and the whole pipeline under such roles.
"""

from __future__ import annotations

from psycopg2 import sql

from zip_etl.tables import Table, validate_identifier


def etl_role_grants(role: str, raw: Table, target_schema: str) -> list[sql.Composed]:
    """What a DBA runs (as the raw table's and target schema's owner) for `role`."""
    role_id = sql.Identifier(validate_identifier(role, "role"))
    target = sql.Identifier(validate_identifier(target_schema, "target_schema"))
    return [
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(raw.schema), role_id),
        sql.SQL("GRANT SELECT ON {} TO {}").format(raw.identifier, role_id),
        # Create (and so own) cleaned_companies and its quarantine; no rights on other schemas' tables.
        sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(target, role_id),
    ]


def dagster_role_statements(role: str, database: str) -> list[sql.Composed]:
    """Dagster's storage: a database the role owns; nobody else may connect to it."""
    role_id = sql.Identifier(validate_identifier(role, "role"))
    db = sql.Identifier(validate_identifier(database, "database"))
    return [
        sql.SQL("CREATE DATABASE {} OWNER {}").format(db, role_id),
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db),
    ]
