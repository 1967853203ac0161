"""The resources zip_etl's assets, checks and sensors use: `postgres` and `postgres_writer`, one of
each per process, which every cleaned table's component brings (so a code location's instances share
them, and a `defs.yaml` alone makes a working code location). Where the database is comes from the
environment: with ZIP_ETL_DATABASE_URL set, the UI shows the resource reading that variable (never its
value); unset, the embedded server (zip_etl/settings.py). Which tables they read and write is each
component's (its defs.yaml)."""

from __future__ import annotations

import functools

import dagster as dg

from zip_etl import settings
from zip_etl.resources import PostgresResource, PostgresWriter


@functools.cache
def resources() -> dict[str, dg.ConfigurableResource]:
    """`postgres` and `postgres_writer`: the same objects on every call, as Dagster needs to merge the
    definitions of several components that bring them."""
    url = dg.EnvVar(settings.DATABASE_URL) if settings.database_url() else None
    postgres = PostgresResource(database_url=url)
    return {"postgres": postgres, "postgres_writer": PostgresWriter(postgres=postgres)}
