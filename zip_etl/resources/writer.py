"""`PostgresWriter`: the resource a cleaned table (`cleaned_companies`) writes its partitions with.

It is a resource the asset calls, not a Dagster IO manager: a run's rows never exist all at once (they
stream through in chunks), so there is no output object for an IO manager to store; the asset writes
them inside its step and reports the result with a `MaterializeResult`. A write resolves the target
(the table, its quarantine and its partition counts, declared once in zip_etl/tables.py) in the
configured schema, ensures the three in one step, then applies the run's chunks in ONE transaction
(`zip_etl.db.partition_writer.PartitionWriter`): atomic and idempotent, a failure leaves the previous
rows, writing the same partitions again replaces them whole. `totals()` reads the table's totals
(rows, quarantined rows, partitions) from its partition counts.

The chunks are applied by a thread of the writer's own while the caller's thread reads and cleans the
next one (the driver sends the COPY without holding the GIL); a bounded hand-off keeps at most one
chunk waiting, so memory stays a few chunks.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import psycopg2.errors
import pyarrow as pa
import pyarrow.compute as pc
from pandera.errors import SchemaErrors
from pandera.pandas import Column as PanderaColumn
from pandera.pandas import DataFrameSchema
from pydantic import Field

from zip_etl.db.connection import transaction
from zip_etl.db.ddl import ensure_target
from zip_etl.db.partition_writer import PartitionWriter, read_totals
from zip_etl.partition_stream import CleanedChunk
from zip_etl.resources.postgres import PostgresResource, RawReads
from zip_etl.tables import CLEANED_TARGET, Table, Target


@dataclass
class WriteResult:
    """What a write did."""

    rows_written: int
    rows_quarantined: int
    seconds: float
    """The writing thread's busy time (it overlaps the reading and cleaning)."""


class PostgresWriter(dg.ConfigurableResource):
    """Writes partitions of a target table (and of its quarantine and counts).

    Which table is the asset's component's (its `defs.yaml`: `target`); `writes(target)` gives those
    writes. `target_schema` set here overrides the schema for every asset this resource serves (the
    tests and benchmarks write a schema of their own). With no target named, the writes are
    `cleaned_companies`'s (`target`, `write`)."""

    postgres: PostgresResource
    target_schema: str | None = Field(
        default=None, description="schema of the tables this writer writes (default: the one the component's YAML names)"
    )
    dry_run: bool = Field(
        default=False,
        description="debug mode: assets run in full and record their metadata, but nothing is written",
    )

    def writes(self, target: Target = CLEANED_TARGET, postgres: RawReads | None = None) -> TargetWrites:
        """Writes of `target` (as declared), this resource's settings applied; `postgres`: the reads
        that go with them (the target's source; `raw_companies`' by default)."""
        located = target.in_schema(self.target_schema) if self.target_schema is not None else target
        return TargetWrites(self, located, postgres or self.postgres.reads())

    @property
    def target(self) -> Target:
        """The tables a write of cleaned_companies needs, where the settings put them."""
        return self.writes().target

    def write(self, chunks: Iterable[CleanedChunk], zip_codes: Sequence[str]) -> WriteResult:
        return self.writes().write(chunks, zip_codes)


@dataclass(frozen=True)
class TargetWrites:
    """What an asset writes through a `PostgresWriter`: one target (where the settings put it), and
    the reads of its source (`postgres`)."""

    resource: PostgresWriter
    target: Target
    postgres: RawReads

    @property
    def dry_run(self) -> bool:
        return self.resource.dry_run

    @property
    def partitions(self) -> dg.StaticPartitionsDefinition:
        return self.postgres.partitions

    def write(self, chunks: Iterable[CleanedChunk], zip_codes: Sequence[str]) -> WriteResult:
        """Apply `chunks` (whole zip codes of `zip_codes`, in order) to the target in ONE transaction:
        committed once every chunk is applied, nothing kept otherwise."""
        if self.dry_run:
            raise RuntimeError(f"dry run: refusing to write {self.target.table.qualified_name}")
        return write_target(self.postgres.url(), self.target, chunks, zip_codes)

    def totals(self) -> dict[str, int]:
        """The target's totals now (`target_totals`)."""
        return target_totals(self.postgres.url(), self.target)


def write_target(url: str, target: Target, chunks: Iterable[CleanedChunk], zip_codes: Sequence[str]) -> WriteResult:
    """The write of `PostgresWriter.write`, to any target (the tests write tables of every supported
    type): ensure its three tables, then one transaction, its chunks applied from a writing thread."""
    ensure(url, target)
    replaced: list[str] = []
    with PartitionWriter(url, target) as writer:
        writer.lock_partitions(zip_codes)  # a concurrent writer of these zip codes finishes first
        seconds = in_background(chunks, lambda chunk: apply_chunk(writer, chunk, zip_codes, replaced),
                                lambda: writer.record_partition_counts(replaced))
    return WriteResult(writer.rows_written, writer.rows_quarantined, seconds)


def target_totals(url: str, target: Target) -> dict[str, int]:
    """`rows`, `rows_quarantined` and `partitions` of the whole table now, from its partition counts.
    Read by a run once its events are stored, not in its write's transaction: two runs committing side
    by side would each count without the other's rows, and the asset's row count would show whichever
    was recorded last."""
    with transaction(url) as cursor:
        return read_totals(cursor, target)


def ensure(url: str, target: Target) -> None:
    """The target's tables, created if missing, in their own short transaction: runs side by side may
    race to create them, and the one that loses tries again."""
    for attempt in range(3):
        try:
            with transaction(url) as cursor:
                ensure_target(cursor, target)
            return
        except (psycopg2.errors.UniqueViolation, psycopg2.errors.DuplicateTable, psycopg2.errors.DuplicateObject):
            if attempt == 2:
                raise
            time.sleep(0.1)


_END = object()


def in_background(chunks: Iterable[CleanedChunk], apply: Callable[[CleanedChunk], None],
                  finish: Callable[[], None] = lambda: None) -> float:
    """`apply` each of `chunks`, then `finish`, in a thread of their own while this thread produces the
    chunks (reads and cleans); at most one chunk waits between the two. Returns the applying thread's
    busy seconds. An error on either side stops both and is raised here."""
    handoff: queue.Queue = queue.Queue(maxsize=1)
    failed: list[BaseException] = []
    busy = [0.0]

    def consume() -> None:
        try:
            while (chunk := handoff.get()) is not _END:
                if chunk is None:  # the producer failed: stop
                    return
                started = time.perf_counter()
                apply(chunk)
                busy[0] += time.perf_counter() - started
            started = time.perf_counter()
            finish()
            busy[0] += time.perf_counter() - started
        except BaseException as error:  # noqa: BLE001 - raised in the producer's thread
            failed.append(error)

    def hand_over(item) -> bool:
        while thread.is_alive():
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    thread = threading.Thread(target=consume, name="zip_etl-writer", daemon=True)
    thread.start()
    produced = iter(chunks)
    ended = False
    try:
        for chunk in produced:
            if not hand_over(chunk):
                break
        else:
            ended = hand_over(_END)
    finally:
        if not ended:
            hand_over(None)
        thread.join()
        close = getattr(produced, "close", None)
        if close is not None:
            close()  # a stream stopped early stops reading
    if failed:
        raise failed[0]
    return busy[0]


def apply_chunk(writer: PartitionWriter, chunk: CleanedChunk, zip_codes: Sequence[str], replaced: list[str]) -> None:
    """One chunk, in order: the partitions it starts are emptied, then its rows are added. A zip code
    that streams in parts is held between a savepoint and its release, so if it fails part-way its
    previous rows come back and the other zip codes of the run stay written."""
    if chunk.aborts:
        writer.rollback_to_savepoint()
        if chunk.aborts in replaced:
            replaced.remove(chunk.aborts)
        return
    if chunk.begins:
        writer.savepoint()
    writer.delete_partitions(chunk.replace)
    replaced += chunk.replace
    if chunk.superseded is not None and len(chunk.superseded):
        writer.delete_keys(list(writer.table.primary_key), chunk.superseded)  # each key: one row an earlier chunk wrote
    if chunk.cleaned is not None:
        validate_frame(writer.table, zip_codes, chunk.cleaned)
        writer.append(chunk.cleaned)
    if chunk.rejected is not None:
        writer.append_rejected(chunk.rejected)
    if chunk.ends:
        writer.release_savepoint()


# pandera registers its pandas backends on a process's first validation, importing its hypothesis
# strategies (70 ms): done here, on import, a warm process or a backfill's parent pays it once instead
# of every run forked from it.
DataFrameSchema.get_backend(check_type=pd.DataFrame)


def frame_contract(table: Table) -> DataFrameSchema:
    """What a frame written to `table` must be, from its declaration: exactly its columns, and values
    in every NOT NULL one. (Types are not checked here: the writer casts each column to its declared
    type and names the column it cannot cast.)"""
    return DataFrameSchema(
        {c.name: PanderaColumn(nullable=c.nullable, required=True) for c in table.columns},
        strict=True,
        name=table.qualified_name,
    )


def validate_frame(table: Table, partition_keys: Sequence[str], df: pd.DataFrame) -> None:
    """Refuse, in one line, a frame that does not fit `table`: other columns, NULL in a NOT NULL
    column, or rows of partitions other than those being written."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"PostgresWriter writes pandas DataFrames, got {type(df).__name__}")
    try:
        frame_contract(table).validate(df, lazy=True)
    except SchemaErrors as errors:
        raise ValueError(f"DataFrame for {table.qualified_name} does not match its declaration: "
                         f"{_contract_problems(table, df, errors.failure_cases)}") from None
    if len(df):
        present = pc.unique(pa.array(df[table.partition_column].unique().astype(str)))
        outside = pc.filter(present, pc.invert(pc.is_in(present, value_set=pa.array(list(partition_keys))))).to_pylist()
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
