"""Dagster resources: the ETL database, and the writer that writes partitions to it."""

from zip_etl.resources.postgres import PostgresResource
from zip_etl.resources.writer import PostgresWriter

__all__ = ["PostgresResource", "PostgresWriter"]
