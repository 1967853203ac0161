"""The ETL database as a Dagster resource."""


import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import adbc_driver_manager
import dagster as dg
import psycopg2.errors
from psycopg2 import sql
from pydantic import Field

from zip_etl.db.arrow_io import driver_error_is_transient
from zip_etl.db.connection import DatabaseError, etl_database_url, transaction
from zip_etl.db.ddl import information_schema_type, raw_data_versions, table_exists
from zip_etl.partitions import zip_code_partitions
from zip_etl.tables import RAW_SOURCE, Source, Table, validate_identifier

DEFAULT_CHUNK_ROWS = 200_000
"""Raw rows read and cleaned at once, unless a component's `chunk_rows` or the resource's says otherwise."""


class PostgresResource(dg.ConfigurableResource):
    """Connections to the ETL database and reads of raw tables.

    With no `database_url`, ``ZIP_ETL_DATABASE_URL`` is used, else the embedded server. Set the URL
    with ``dg.EnvVar`` so that credentials stay out of run config and the UI.

    Which raw table an asset reads, and in chunks of how many rows, is its component's (its
    `defs.yaml`: `source`, `chunk_rows`); `reads(source)` gives those reads. `raw_schema`, `raw_table`
    and `chunk_rows` set here override them for every asset this resource serves (the tests and the
    benchmarks point runs at a schema of their own this way). With no source named, the reads are
    `raw_companies`'s (`raw`, `raw_snapshot`, `raw_data_versions`: the zip-etl commands use them).
    """

    database_url: str | None = Field(
        default=None, description="libpq URL; default: ZIP_ETL_DATABASE_URL, else the embedded server"
    )
    raw_schema: str | None = Field(
        default=None, description="schema of the raw table (default: the one the component's YAML names)"
    )
    raw_table: str | None = Field(
        default=None, description="table holding the raw records (default: the one the component's YAML names)"
    )
    chunk_rows: int | None = Field(
        default=None,
        gt=0,
        description=(
            "raw rows read and cleaned at once (default: the component's `chunk_rows`, 200,000): a run streams "
            "its zip codes through in chunks of at most this many rows (a zip code with more streams in parts), "
            "so a run's memory follows this setting, not the size of its zip codes (`zip-etl sizing` measures "
            "memory per chunk)"
        ),
    )

    def url(self) -> str:
        return self.database_url or etl_database_url()

    @contextlib.contextmanager
    def transaction(self) -> Iterator:
        """A cursor in one transaction: committed at the end, rolled back on error."""
        with transaction(self.url()) as cursor:
            yield cursor

    def reads(self, source: Source = RAW_SOURCE, chunk_rows: int = DEFAULT_CHUNK_ROWS,
              partitions: dg.StaticPartitionsDefinition = zip_code_partitions) -> "RawReads":
        """Reads of `source` (as declared, partitioned by `partitions`) in chunks of `chunk_rows`, this
        resource's settings applied."""
        table = source.table
        schema = validate_identifier(self.raw_schema, "raw_schema") if self.raw_schema is not None else table.schema
        name = validate_identifier(self.raw_table, "raw_table") if self.raw_table is not None else table.name
        return RawReads(self, source.located(schema, name), self.chunk_rows or chunk_rows, partitions)

    @property
    def raw(self) -> Table:
        return self.reads().raw

    def raw_snapshot(self):
        return self.reads().raw_snapshot()

    def raw_data_versions(self, zip_codes: Sequence[str] | None = None) -> dict[str, str]:
        return self.reads().raw_data_versions(zip_codes)

    @property
    def partition_keys(self) -> Sequence[str]:
        return self.reads().partition_keys


@dataclass(frozen=True)
class RawReads:
    """What an asset reads through a `PostgresResource`: one raw table (`source`, where the settings
    put it) in chunks of `chunk_rows` rows."""

    resource: PostgresResource
    source: Source
    chunk_rows: int
    partitions: dg.StaticPartitionsDefinition

    @property
    def partition_keys(self) -> Sequence[str]:
        return self.partitions.get_partition_keys()

    def url(self) -> str:
        return self.resource.url()

    def transaction(self):
        return self.resource.transaction()

    @property
    def raw(self) -> Table:
        return self.source.table

    def raw_snapshot(self):
        """A `TableSnapshot` of the raw table (enter it to open its REPEATABLE READ transaction): rows of
        zip codes, streamed by binary COPY as Arrow record batches or Arrow-backed frames.

        The table is checked first (exists, readable, declared columns; retyped columns are cast), so
        problems surface as one clear line before anything is read.
        """
        from zip_etl.db.snapshot import TableSnapshot  # noqa: PLC0415

        table = self.raw
        with self.transaction() as cursor:
            expressions = raw_column_expressions(cursor, table, qualifier="r")
            cursor.execute("SELECT current_setting('server_encoding')")
            sql_ascii = cursor.fetchone()[0] == "SQL_ASCII"
        return TableSnapshot(self.url(), table, expressions, sql_ascii=sql_ascii)

    def raw_data_versions(self, zip_codes: Sequence[str] | None = None) -> dict[str, str]:
        """The data version of every zip code with rows (or of each of `zip_codes`), in one query."""
        table = self.raw
        with self.transaction() as cursor:
            raw_column_expressions(cursor, table)  # the table exists, with the declared columns
            return raw_data_versions(cursor, table, zip_codes, key=self.source.key, updated_at=self.source.updated_at)


@contextlib.contextmanager
def failures_explained() -> Iterator[None]:
    """A DatabaseError becomes a Dagster Failure with its one-line message (no library stack trace),
    retried by the step's RetryPolicy only when trying again can help."""
    try:
        yield
    except DatabaseError as error:
        raise dg.Failure(description=str(error), allow_retries=error.retriable) from None
    except (psycopg2.Error, adbc_driver_manager.Error) as error:
        # Deadlocks, serialization failures, cancelled or timed-out statements may pass; a statement
        # PostgreSQL refuses (permissions, constraints, types) will be refused again.
        transient = isinstance(
            error, (psycopg2.OperationalError, psycopg2.errors.TransactionRollbackError)
        ) or (isinstance(error, adbc_driver_manager.Error) and driver_error_is_transient(error))
        first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
        raise dg.Failure(
            description=f"PostgreSQL refused a statement: {type(error).__name__}: {first_line}",
            allow_retries=transient,
        ) from None


def _require_table(cursor, table: Table) -> None:
    cursor.execute("SELECT has_schema_privilege(current_user, %s, 'USAGE') FROM pg_namespace WHERE nspname = %s",
                   (table.schema, table.schema))
    usage = cursor.fetchone()
    if usage is not None and not usage[0]:
        raise DatabaseError(_privilege_message(cursor, table, f"USAGE on schema {table.schema}"))
    if not table_exists(cursor, table.schema, table.name):
        raise DatabaseError(
            f"The raw table {table.qualified_name} does not exist. Load it (`zip-etl seed` for "
            "demo data) or point the component's `source` (its defs.yaml) at it."
        )
    cursor.execute("SELECT has_table_privilege(current_user, %s, 'SELECT')", (f'"{table.schema}"."{table.name}"',))
    if not cursor.fetchone()[0]:
        raise DatabaseError(_privilege_message(cursor, table, f"SELECT on {table.qualified_name}"))


def _privilege_message(cursor, table: Table, missing: str) -> str:
    cursor.execute("SELECT current_user")
    return (
        f"The role {cursor.fetchone()[0]} cannot read the raw table {table.qualified_name}: it lacks {missing}. "
        "Grant it (docs/RELIABILITY.md lists the least-privilege grants) or connect as another role "
        "(ZIP_ETL_DATABASE_URL)."
    )


_TEXT_TYPES = {"text", "character varying", "character"}
logger = logging.getLogger(__name__)


def raw_column_expressions(cursor, table: Table, qualifier: str | None = None) -> dict[str, sql.Composable]:
    """How to select each declared column from the table as it is now: casts for retyped columns.

    Raises a DatabaseError when the table does not exist, naming the columns when it lacks one, or
    when its partition column is not text (an integer zip code has lost its leading zeros: 00501
    would read as 501).
    """
    _require_table(cursor, table)
    cursor.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
        (table.schema, table.name),
    )
    actual = dict(cursor.fetchall())
    missing = [c for c in table.column_names if c not in actual]
    if missing:
        raise DatabaseError(
            f"The raw table {table.qualified_name} lacks the column(s) {missing} that zip_etl reads "
            f"(it has {sorted(actual)}). Restore them, or change the table's declaration (for raw_companies, "
            "RAW_COMPANIES in zip_etl/tables.py) and the cleaning rules together."
        )
    extra = sorted(set(actual) - set(table.column_names))
    if extra:
        logger.warning("raw table %s.%s: ignoring columns zip_etl does not declare: %s", table.schema, table.name, extra)
    expressions = {}
    for column in table.columns:
        found, declared = actual[column.name], information_schema_type(column.sql_type)
        if column.name == table.partition_column and found not in _TEXT_TYPES:
            raise DatabaseError(
                f"The raw table's partition column {table.qualified_name}.{column.name} is {found}, not text: "
                "zip codes must be text to keep their leading zeros (00501). Alter it to text."
            )
        if found != declared and not (declared == "text" and found in _TEXT_TYPES):
            name = sql.Identifier(qualifier, column.name) if qualifier else sql.Identifier(column.name)
            expressions[column.name] = sql.SQL("CAST({} AS {})").format(name, sql.SQL(column.sql_type))
    return expressions
