"""`PostgresCopyIOManager`: pandas DataFrames to and from PostgreSQL with bulk COPY.

Shaped after Dagster's own DbIOManager / DbTypeHandler split: the IO manager works out *where*
(table, schema, partitions) from the asset's definition, and a type handler does *how* (pandas
and COPY). Each write replaces whole partitions in ONE transaction (DELETE the partitions' rows,
COPY the new ones), so it is atomic and idempotent: re-running a partition never duplicates rows,
and a failure leaves the previous rows as they were.

The asset declares what the IO manager needs in its definition metadata:

- ``dagster/column_schema``: a `TableSchema`; the table is created from it if missing.
- ``partition_expr``: the column holding the partition key (as in dagster-duckdb).
- ``primary_key`` (optional): list of key columns.

An asset that rejects rows returns `WithQuarantine(rows, rejected)`: the rejected rows go to
``<table>_quarantine`` (reason, detail, original values as JSON) in the same transaction, so no
row is ever silently dropped and rows in = rows written + rows quarantined for every partition.
"""


import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import psycopg2.errors
import pyarrow as pa
import pyarrow.compute as pc
from pandera.errors import SchemaErrors
from pandera.pandas import Column as PanderaColumn
from pandera.pandas import DataFrameSchema
from psycopg2 import sql
from pydantic import Field

from zip_etl.db.arrow_io import PartitionWriter, TableSnapshot
from zip_etl.db.connection import DatabaseError, transaction
from zip_etl.db.ddl import column_differences, ensure_table, table_exists
from zip_etl.partition_stream import CleanedChunk
from zip_etl.resources.postgres import PostgresResource, failures_explained
from zip_etl.tables import MIGRATE_HINT, Column, Table, partition_counts_table, quarantine_table, validate_identifier


@dataclass(frozen=True)
class WithQuarantine:
    """An asset's output together with the rows it rejected.

    `rejected` has the partition column, `reason`, optionally `detail`, and the original columns;
    the original values are kept as JSON in the quarantine table's `raw_values`.
    """

    rows: pd.DataFrame
    rejected: pd.DataFrame


@dataclass(frozen=True)
class WrittenPartitions:
    """The output of an asset that streamed its partitions through `PostgresCopyIOManager.write`
    inside its step (its rows never all exist at once): already committed, nothing left to write."""

    rows_written: int
    rows_quarantined: int


class DataFrameChunks:
    """Annotate an input with this type to receive its partitions' rows in DataFrames of at most the
    postgres resource's `chunk_rows`, read from one snapshot as you iterate, instead of one frame."""

    def __init__(self, frames: Iterator[pd.DataFrame]):
        self._frames = frames

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return self._frames


@dataclass
class WriteSummary:
    rows_written: int
    rows_quarantined: int
    seconds: float


PARTITION_SAVEPOINT = "zip_etl_partition"


def write_chunks(writer: PartitionWriter, chunks: Iterable[CleanedChunk], partition_keys: Sequence[str] | None = None) -> None:
    """Apply a run's chunks in order on `writer` (one transaction): each chunk deletes the previous
    rows of the zip codes it starts, then adds its cleaned and rejected rows. A zip code that streams
    in parts is held between a savepoint and its release, so if it fails part-way its previous rows
    come back and the other zip codes of the run stay written."""
    key = list(writer.table.primary_key)
    counts_at_savepoint = (0, 0)
    replaced: list[str] | None = []
    for chunk in chunks:
        if chunk.aborts:
            writer.execute(f"ROLLBACK TO SAVEPOINT {PARTITION_SAVEPOINT}")
            writer.execute(f"RELEASE SAVEPOINT {PARTITION_SAVEPOINT}")
            writer.rows_written, writer.rows_quarantined = counts_at_savepoint
            if replaced is not None and chunk.aborts in replaced:
                replaced.remove(chunk.aborts)
            continue
        if chunk.begins:
            writer.execute(f"SAVEPOINT {PARTITION_SAVEPOINT}")
            counts_at_savepoint = (writer.rows_written, writer.rows_quarantined)
        writer.delete_partitions(chunk.replace)
        if chunk.replace is None:
            replaced = None
        elif replaced is not None:
            replaced += chunk.replace
        if chunk.superseded is not None and len(chunk.superseded):
            writer.delete_keys(key, chunk.superseded)  # each key is one row an earlier chunk wrote
            writer.rows_written -= len(chunk.superseded)
        if chunk.cleaned is not None:
            validate_frame(writer.table, partition_keys, chunk.cleaned)
            writer.append(chunk.cleaned)
        if chunk.rejected is not None:
            writer.append_rejected(chunk.rejected)
        if chunk.ends:
            writer.execute(f"RELEASE SAVEPOINT {PARTITION_SAVEPOINT}")
    if writer.quarantine is not None and writer.table.partition_column:
        writer.record_partition_counts(partition_counts_table(writer.table), replaced)


def frame_contract(table: Table) -> DataFrameSchema:
    """What a frame written to `table` must be, from its declaration: exactly its columns, and values
    in every NOT NULL one. (Types are not checked here: the writer casts each column to its declared
    type and names the column it cannot cast.)"""
    return DataFrameSchema(
        {c.name: PanderaColumn(nullable=c.nullable, required=True) for c in table.columns},
        strict=True,
        name=f"{table.schema}.{table.name}",
    )


def validate_frame(table: Table, partition_keys: Sequence[str] | None, df: pd.DataFrame) -> None:
    """Refuse, in one line, a frame that does not fit `table`: other columns, NULL in a NOT NULL
    column, or rows of partitions other than those being written."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"PostgresCopyIOManager writes pandas DataFrames, got {type(df).__name__}")
    try:
        frame_contract(table).validate(df, lazy=True)
    except SchemaErrors as errors:
        raise ValueError(f"DataFrame for {table.schema}.{table.name} does not match its declaration: "
                         f"{_contract_problems(table, df, errors.failure_cases)}") from None
    if partition_keys is not None and len(df):
        values = pa.array(df[table.partition_column].astype(str))
        outside = pc.unique(pc.filter(values, pc.invert(pc.is_in(values, value_set=pa.array(list(partition_keys)))))).to_pylist()
        if outside:
            raise ValueError(
                f"Rows for {table.partition_column} {sorted(outside)[:5]} do not belong to the "
                f"partitions being written ({len(partition_keys)} partition(s)); refusing to write "
                "them into another partition"
            )


def _contract_problems(table: Table, df: pd.DataFrame, failures: pd.DataFrame) -> str:
    missing = [c for c in table.column_names if c not in df.columns]
    extra = [c for c in df.columns if c not in table.column_names]
    problems = []
    if missing or extra:
        problems.append(f"missing columns {missing}, unexpected columns {extra}")
    for column, cases in failures[failures["check"] == "not_nullable"].groupby("column", sort=False):
        rows = [int(i) for i in cases["index"].head(3)]
        problems.append(f"column {column!r} is NOT NULL but {len(cases)} rows have no value, e.g. rows {rows}")
    return "; ".join(problems) or "; ".join(failures["failure_case"].astype(str).head(3))


def _input_type(context: dg.InputContext):
    try:
        return context.dagster_type.typing_type
    except dg.DagsterInvariantViolationError:  # a context built without a type (tests, direct calls)
        return None


def _metadata_value(metadata, key: str):
    value = (metadata or {}).get(key)
    return getattr(value, "value", value)


def dagster_table_schema(table: Table) -> dg.TableSchema:
    """The table's columns as Dagster shows them (and as the IO manager creates them)."""
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                c.name,
                c.sql_type,
                constraints=dg.TableColumnConstraints(nullable=c.nullable),
            )
            for c in table.columns
        ]
    )


def table_from_dagster_schema(
    schema: str, name: str, table_schema: dg.TableSchema, primary_key, partition_column
) -> Table:
    return Table(
        schema=schema,
        name=name,
        columns=tuple(
            Column(c.name, c.type, nullable=c.constraints.nullable if c.constraints else True)
            for c in table_schema.columns
        ),
        primary_key=tuple(primary_key or ()),
        partition_column=partition_column,
    )


class PostgresCopyIOManager(dg.ConfigurableIOManager):
    """Stores each asset as the table named by its key, in `schema`, one partition at a time or many."""

    postgres: PostgresResource
    target_schema: str = Field(default="public", description="schema of the tables this IO manager writes")
    dry_run: bool = Field(
        default=False,
        description="debug mode: assets run in full and record their metadata, but nothing is written",
    )

    def table_for(self, asset_key: dg.AssetKey, definition_metadata) -> Table:
        """The table an asset is stored in, from its key and its definition metadata."""
        column_schema = _metadata_value(definition_metadata, "dagster/column_schema")
        if column_schema is None:
            raise ValueError(
                f"Asset {asset_key.to_user_string()} has no 'dagster/column_schema' metadata; "
                "PostgresCopyIOManager creates tables from it"
            )
        schema = validate_identifier(self.target_schema, "target_schema")
        name = validate_identifier(asset_key.path[-1], "table name")
        return table_from_dagster_schema(
            schema,
            name,
            column_schema,
            primary_key=_metadata_value(definition_metadata, "primary_key"),
            partition_column=_metadata_value(definition_metadata, "partition_expr"),
        )

    def _ensure_table(self, table: Table) -> None:
        # Own short transaction: concurrent runs may race to create the table; the loser retries.
        for attempt in range(3):
            try:
                with transaction(self.postgres.url()) as cursor:
                    ensure_table(cursor, table)
                    differences = column_differences(cursor, table)
                if differences:
                    # e.g. a table written by an earlier release: writing into it would mix old and new
                    # forms of a value (zip4 0332 stored as 332), so refuse and name the fix.
                    raise DatabaseError(
                        f"{table.schema}.{table.name} does not match its declaration ({'; '.join(differences)}): "
                        f"nothing written; {MIGRATE_HINT}"
                    )
                return
            except (psycopg2.errors.UniqueViolation, psycopg2.errors.DuplicateTable, psycopg2.errors.DuplicateObject):
                if attempt == 2:
                    raise
                time.sleep(0.1)

    def _ensure_partition_counts(self, table: Table) -> None:
        """The partition-counts table of `table`; created with a count of what `table` already holds
        (once: a table written before the counts were kept)."""
        if not table.partition_column:
            return
        counts = partition_counts_table(table)
        with transaction(self.postgres.url()) as cursor:
            if table_exists(cursor, counts.schema, counts.name):
                return
        self._ensure_table(counts)
        with PartitionWriter(self.postgres.url(), table, quarantine_table(table)) as writer:
            writer.record_partition_counts(counts, None)

    def table_totals(self, table: Table) -> dict[str, int]:
        """Rows in `table` and its quarantine, and partitions written, from the partition counts."""
        counts = partition_counts_table(table)
        with transaction(self.postgres.url()) as cursor:
            if not table_exists(cursor, counts.schema, counts.name):
                return {"rows": 0, "rows_quarantined": 0, "partitions": 0}
            cursor.execute(sql.SQL("SELECT coalesce(sum(rows), 0), coalesce(sum(rows_quarantined), 0), count(*) FROM {}")
                           .format(counts.identifier))
            rows, quarantined, partitions = cursor.fetchone()
        return {"rows": int(rows), "rows_quarantined": int(quarantined), "partitions": int(partitions)}

    def _refuse_in_dry_run(self, table: Table) -> None:
        if self.dry_run:
            raise RuntimeError(f"dry run: refusing to write {table.schema}.{table.name}")

    def write(
        self, table: Table, chunks: Iterable[CleanedChunk], partition_keys: Sequence[str] | None = None
    ) -> WriteSummary:
        """Apply `chunks` to `table` and its quarantine table in ONE transaction: committed once every
        chunk is applied, nothing kept otherwise. The one write path of this IO manager."""
        self._refuse_in_dry_run(table)
        quarantine = quarantine_table(table)
        for target in (table, quarantine):
            self._ensure_table(target)
        self._ensure_partition_counts(table)
        started = time.perf_counter()
        with PartitionWriter(self.postgres.url(), table, quarantine) as writer:
            writer.lock_partitions(partition_keys)  # a concurrent writer of these zip codes finishes first
            write_chunks(writer, chunks, partition_keys)
        return WriteSummary(writer.rows_written, writer.rows_quarantined, time.perf_counter() - started)

    def write_partitions(
        self,
        table: Table,
        partition_keys: Sequence[str] | None,
        df: pd.DataFrame,
        rejected: pd.DataFrame | None = None,
    ) -> int:
        """Replace `partition_keys` (every row when None) of `table` with `df`, and of its quarantine
        table with `rejected`; return the rows written to `table`."""
        self._refuse_in_dry_run(table)
        validate_frame(table, partition_keys, df)
        chunk = CleanedChunk(replace=list(partition_keys) if partition_keys is not None else None,
                             cleaned=df, rejected=rejected)
        return self.write(table, [chunk], partition_keys).rows_written

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame | WithQuarantine | WrittenPartitions) -> None:
        table = self.table_for(context.asset_key, context.definition_metadata)
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else None
        if isinstance(obj, WrittenPartitions):
            quarantine = quarantine_table(table)
            context.add_output_metadata({
                "dagster/table_name": f"{table.schema}.{table.name}",
                "quarantine_table": f"{quarantine.schema}.{quarantine.name}",
            })
            return
        rows, rejected = (obj.rows, obj.rejected) if isinstance(obj, WithQuarantine) else (obj, None)
        started = time.perf_counter()
        with failures_explained():
            try:
                written = self.write_partitions(table, keys, rows, rejected)
            except (ValueError, TypeError) as error:  # the frame itself is wrong: retrying cannot help
                raise dg.Failure(
                    description=f"Nothing written to {table.schema}.{table.name}: {error}", allow_retries=False
                ) from None
        metadata = {
            "dagster/table_name": f"{table.schema}.{table.name}",
            "rows_written": dg.MetadataValue.int(written),
            "write_seconds": dg.MetadataValue.float(round(time.perf_counter() - started, 4)),
        }
        if rejected is not None:
            quarantine = quarantine_table(table)
            metadata["quarantine_table"] = f"{quarantine.schema}.{quarantine.name}"
            metadata["rows_quarantined"] = dg.MetadataValue.int(len(rejected))
        context.add_output_metadata(metadata)

    def read_partitions(self, table: Table, partition_keys: Sequence[str] | None) -> pd.DataFrame:
        """The rows of `partition_keys` (every row when None), with pandas' nullable dtypes."""
        with TableSnapshot(self.postgres.url(), table, arrow_dtypes=False) as snapshot:
            frames = list(snapshot.rows(partition_keys, chunk_rows=1 << 62))
        return frames[0] if frames else snapshot.empty_frame()

    def stream_partitions(self, table: Table, partition_keys: Sequence[str] | None) -> Iterator[pd.DataFrame]:
        """The same rows, in frames of at most the postgres resource's `chunk_rows`, from one snapshot."""
        with TableSnapshot(self.postgres.url(), table, arrow_dtypes=False) as snapshot:
            yield from snapshot.rows(partition_keys, chunk_rows=self.postgres.chunk_rows)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame | DataFrameChunks:
        """An input annotated `DataFrameChunks` streams in chunks of `chunk_rows` rows; a DataFrame
        input gets one frame, with a warning first when it holds more rows than a chunk (memory is
        then the input's size, not the chunk's)."""
        upstream = context.upstream_output
        table = self.table_for(context.asset_key, upstream.definition_metadata if upstream else {})
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else None
        if _input_type(context) is DataFrameChunks:
            return DataFrameChunks(self.stream_partitions(table, keys))
        rows = self.partition_rows(table, keys)
        if rows > self.postgres.chunk_rows:
            context.log.warning(
                f"Loading {rows:,} rows of {table.schema}.{table.name} into one DataFrame, more than chunk_rows="
                f"{self.postgres.chunk_rows:,} of the postgres resource: annotate the input as DataFrameChunks "
                "(zip_etl.resources) to receive it in chunks instead."
            )
        with failures_explained():
            return self.read_partitions(table, keys)

    def partition_rows(self, table: Table, partition_keys: Sequence[str] | None) -> int:
        """Rows of `partition_keys` (all when None), from the partition counts (no scan of the table)."""
        counts = partition_counts_table(table)
        with transaction(self.postgres.url()) as cursor:
            if not table_exists(cursor, counts.schema, counts.name):
                return 0
            where = sql.SQL("") if partition_keys is None else sql.SQL(" WHERE {} = ANY(%s)").format(
                sql.Identifier(counts.partition_column))
            cursor.execute(sql.SQL("SELECT coalesce(sum(rows), 0) FROM {}").format(counts.identifier) + where,
                           None if partition_keys is None else (list(partition_keys),))
            return int(cursor.fetchone()[0])
