"""The resources zip_etl's assets, checks and sensors use. Where the database is comes from the
environment: with ZIP_ETL_DATABASE_URL set, the UI shows the resource reading that variable (never
its value); unset, the embedded server (zip_etl/settings.py)."""

from __future__ import annotations

import dagster as dg

from zip_etl import settings
from zip_etl.resources import PostgresResource, PostgresWriter


def resources(**postgres_settings) -> dict[str, dg.ConfigurableResource]:
    """`postgres` and `postgres_writer`, the raw table and target schema as given (default: the
    production ones)."""
    target_schema = postgres_settings.pop("target_schema", "public")
    url = dg.EnvVar(settings.DATABASE_URL) if settings.database_url() else None
    postgres = PostgresResource(database_url=url, **postgres_settings)
    return {"postgres": postgres, "postgres_writer": PostgresWriter(postgres=postgres, target_schema=target_schema)}
