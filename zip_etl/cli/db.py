"""`zip-etl db`: the embedded PostgreSQL server zip_etl starts when no database is configured."""

from __future__ import annotations

import click

from zip_etl.db.connection import embedded_data_dir, etl_database_url, redact_url


@click.command("db")
@click.argument("action", type=click.Choice(["start", "stop", "url"]))
def db_command(action):
    """Start or stop the embedded server, or print its URL (for psql)."""
    from zip_etl.db.embedded import stop_embedded_server

    if action == "stop":
        click.echo("stopped" if stop_embedded_server(embedded_data_dir()) else "not running")
        return
    url = etl_database_url()
    click.echo(redact_url(url) if action == "url" else f"running: {redact_url(url)}")
