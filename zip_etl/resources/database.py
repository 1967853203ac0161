"""The ETL database as a Dagster resource."""


import contextlib
from collections.abc import Iterator, Sequence

import dagster as dg
import pandas as pd
from pydantic import Field

from zip_etl.db.connection import DatabaseError, etl_database_url, transaction
from zip_etl.db.tables import Table, read_partitions, table_exists, validate_identifier
from zip_etl.tables import RAW_COMPANIES


class PostgresResource(dg.ConfigurableResource):
    """Connections to the ETL database and reads of the raw table.

    With no `database_url`, ``ZIP_ETL_DATABASE_URL`` is used, else the embedded server. Set the URL
    with ``dg.EnvVar`` so that credentials stay out of run config and the UI.
    """

    database_url: str | None = Field(
        default=None, description="libpq URL; default: ZIP_ETL_DATABASE_URL, else the embedded server"
    )
    raw_schema: str = Field(default=RAW_COMPANIES.schema, description="schema of the raw table")
    raw_table: str = Field(default=RAW_COMPANIES.name, description="table holding the raw records")

    def url(self) -> str:
        return self.database_url or etl_database_url()

    @contextlib.contextmanager
    def transaction(self) -> Iterator:
        """A cursor in one transaction: committed at the end, rolled back on error."""
        with transaction(self.url()) as cursor:
            yield cursor

    @property
    def raw(self) -> Table:
        return RAW_COMPANIES.with_name(
            validate_identifier(self.raw_schema, "raw_schema"), validate_identifier(self.raw_table, "raw_table")
        )

    def read_raw(self, zip_codes: Sequence[str]) -> pd.DataFrame:
        """The raw rows of `zip_codes`, in one `COPY (SELECT ... WHERE zip_code = ANY(%s))`."""
        table = self.raw
        with self.transaction() as cursor:
            if not table_exists(cursor, table.schema, table.name):
                raise DatabaseError(
                    f"The raw table {table.schema}.{table.name} does not exist. Load it (`zip-etl seed` for "
                    "demo data) or point the `raw_table`/`raw_schema` settings of the `postgres` resource at it."
                )
            return read_partitions(cursor, table, zip_codes)
