"""`zip-etl migrate` and `zip-etl load-fixtures`: the cleaned table from an earlier release brought up
to date, and the test mode's tables loaded."""

from __future__ import annotations

import click

from zip_etl.db.connection import etl_database_url, transaction


@click.command("migrate")
@click.option("--schema", default="public", show_default=True, help="schema of the cleaned table")
def migrate_command(schema):
    """Bring cleaned_companies written by an earlier release up to today's declaration (no value changes)."""
    from zip_etl.db.ddl import migration_statements
    from zip_etl.tables import CLEANED_COMPANIES

    table = CLEANED_COMPANIES.with_name(schema, CLEANED_COMPANIES.name)
    with transaction(etl_database_url()) as cursor:
        statements = migration_statements(cursor, table)
        for statement in statements:
            click.echo(statement.as_string(cursor))
            cursor.execute(statement)
    click.echo(f"{table.qualified_name}: " + ("migrated" if statements else "already up to date"))


@click.command("load-fixtures")
def load_fixtures_command():
    """Load the test mode's sample raw table and its hand-written truth table (zip_etl/fixtures/)."""
    from zip_etl.testmode import SAMPLE_TABLE, TRUTH_TABLE, load_fixtures

    with transaction(etl_database_url()) as cursor:
        raw, truth = load_fixtures(cursor)
    click.echo(f"Loaded {raw} rows into {SAMPLE_TABLE.schema}.{SAMPLE_TABLE.name} and {truth} rows into "
               f"{TRUTH_TABLE.schema}.{TRUTH_TABLE.name}")
