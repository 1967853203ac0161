"""Dagster resources: the ETL database and the COPY IO manager that writes partitions to it."""

from zip_etl.resources.postgres import PostgresResource
from zip_etl.resources.io_manager import PostgresCopyIOManager, WithQuarantine

__all__ = ["PostgresCopyIOManager", "PostgresResource", "WithQuarantine"]
