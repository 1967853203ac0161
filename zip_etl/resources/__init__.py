"""Dagster resources: the ETL database and the COPY IO manager that writes partitions to it."""

from zip_etl.resources.io_manager import DataFrameChunks, PostgresCopyIOManager, WithQuarantine
from zip_etl.resources.postgres import PostgresResource

__all__ = ["DataFrameChunks", "PostgresCopyIOManager", "PostgresResource", "WithQuarantine"]
