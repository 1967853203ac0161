"""What a debug run's write would change: its cleaned zip codes compared with what the tables hold.

A debug run reads and cleans in full and writes nothing; this module tells what its write would have
done, per zip code, against the target table and its quarantine:

- cleaned rows, keyed by the table's primary key (zip code, record id): rows that would appear,
  disappear, or change (counted per column);
- rejected rows, keyed by the raw table's row id (`raw_values->>'raw_id'` in the quarantine; the
  target's `rejected_key`): rows that would be newly rejected, no longer rejected, or rejected for
  another reason.

How: the run's chunks are applied, as the writer applies them, to temporary tables on a connection of
the comparison's own (one REPEATABLE READ snapshot of the target tables). A zip code is compared once
it is complete: at once for a chunk of whole zip codes, at its end for a zip code that streams in
parts (a later duplicate's row has then replaced the earlier one's, and the duplicate losers are in),
so the staged rows are exactly what the write would leave, typed as the write would store them. A
full join in PostgreSQL returns only the rows that differ, as Arrow batches; the counts per zip code
and per column, and the first examples, come from those batches with Arrow compute. Memory follows
the chunk size. The temporary tables go with the comparison's transaction, which is rolled back: no
table is created or written.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from zip_etl.db.arrow_io import SqlText, connect_arrow, load_zip_codes, reading, to_arrow
from zip_etl.db.connection import DatabaseError, transaction
from zip_etl.db.ddl import column_differences, create_table_statement, table_exists
from zip_etl.db.partition_writer import read_totals
from zip_etl.partition_stream import CleanedChunk
from zip_etl.tables import MIGRATE_HINT, Column, Table, Target

# What a comparison counts per zip code, in the order reports list them.
ROW_COUNTS = ("rows_appear", "rows_disappear", "rows_change")
REJECTION_COUNTS = ("newly_rejected", "no_longer_rejected", "rejected_for_another_reason")
COUNTS = ROW_COUNTS + REJECTION_COUNTS
# Examples kept per kind of difference (each column's changes are a kind of their own).
EXAMPLES_PER_KIND = 5

_STAGED = "zip_etl_what_if_cleaned"
_STAGED_REJECTED = "zip_etl_what_if_rejected"
_ZIPS = "zip_etl_what_if_zip_codes"
_NEW, _OLD = "new_", "old_"


@dataclass
class WhatIfReport:
    """What the run's write would change, per zip code compared and in total."""

    target: str
    """The tables compared with, or why there was nothing to compare with."""
    value_columns: list[str]
    counts: pd.DataFrame
    """One row per zip code compared: `COUNTS`, then rows changed per value column."""
    examples: dict[str, list[str]] = field(default_factory=dict)
    """Kind of difference -> its first examples (`zip/record: column 'old' -> 'new'`, ...)."""
    seconds: float = 0.0
    totals_now: dict[str, int] = field(default_factory=lambda: {"rows": 0, "rows_quarantined": 0, "partitions": 0})
    """The table's totals as they are (from its partition counts), which a write would have changed."""

    def totals(self) -> dict[str, int]:
        return {name: int(self.counts[name].sum()) for name in COUNTS}

    def column_changes(self) -> dict[str, int]:
        """Rows whose value would change, per column (every value column, zeros included)."""
        return {c: int(self.counts[c].sum()) for c in self.value_columns}

    def zip_codes_with_differences(self) -> int:
        return int((self.counts[list(COUNTS)].sum(axis=1) > 0).sum())

    def first_examples(self) -> list[str]:
        """Every kind's first examples: rows appearing, disappearing, each column's changes, then the
        rejections."""
        kinds = ["rows_appear", "rows_disappear", *self.value_columns, *REJECTION_COUNTS]
        return [e for kind in kinds for e in self.examples.get(kind, [])]

    def zip_metadata(self, zip_code: str) -> dict:
        """A zip code's counts, for its debug observation (rows changed per column when any changed)."""
        if zip_code not in self.counts.index:
            return {}
        row = self.counts.loc[zip_code]
        metadata = {f"what_if_{name}": int(row[name]) for name in COUNTS}
        changed = {c: int(row[c]) for c in self.value_columns if row[c]}
        if changed:
            metadata["what_if_changed_columns"] = changed
        return metadata

    def summary(self) -> str:
        """One line: what would change in total."""
        return summarize(self.totals(), self.column_changes(), len(self.counts), self.zip_codes_with_differences())


def describe_column_changes(column_changes: dict[str, int]) -> str:
    """Columns with rows that would change, most first: `city 12, phone 3`."""
    return ", ".join(f"{c} {n:,}" for c, n in sorted(column_changes.items(), key=lambda item: -item[1]) if n)


def summarize(totals: dict[str, int], column_changes: dict[str, int], compared: int, with_differences: int) -> str:
    columns = describe_column_changes(column_changes)
    return (
        f"{with_differences:,} of {compared:,} zip code(s) would change: "
        f"{totals['rows_appear']:,} row(s) would appear, {totals['rows_disappear']:,} disappear, "
        f"{totals['rows_change']:,} change{f' ({columns})' if columns else ''}; "
        f"{totals['newly_rejected']:,} newly rejected, {totals['no_longer_rejected']:,} no longer rejected, "
        f"{totals['rejected_for_another_reason']:,} rejected for another reason"
    )


class WhatIf:
    """Compare a run's chunks with the target's table and quarantine as they are; feed every chunk the
    stream yields to `add`, in order, then read `report()`.

    Enter it to open its snapshot (and leave it to close it). A table that does not exist yet holds
    nothing: every row would appear (or be newly rejected), and `report().target` says so."""

    def __init__(self, url: str, target: Target):
        table = target.table
        if not table.primary_key:
            raise ValueError(f"{table.qualified_name}: a what-if comparison needs a key")
        self.url = url
        self.target = target
        self.table = table
        self.quarantine = target.quarantine
        self.key = list(table.primary_key)
        self.value_columns = [c for c in table.column_names if c not in self.key]
        # An example names a row by its partition, then the rest of its key: `10016/C010`.
        self._example_key = [table.partition_column, *(k for k in self.key if k != table.partition_column)]
        self._conn = None
        self._open_zip: str | None = None
        self._counts: list[pd.DataFrame] = []
        self._examples: dict[str, list[str]] = {}
        self._seconds = 0.0

    # --- the snapshot ---

    def __enter__(self) -> WhatIf:
        with transaction(self.url) as cursor:
            self.table_exists = table_exists(cursor, self.table.schema, self.table.name)
            self.quarantine_exists = table_exists(cursor, self.quarantine.schema, self.quarantine.name)
            self._totals_now = {"rows": 0, "rows_quarantined": 0, "partitions": 0}
            if table_exists(cursor, self.target.counts.schema, self.target.counts.name):
                self._totals_now = read_totals(cursor, self.target)
            for target, exists in ((self.table, self.table_exists), (self.quarantine, self.quarantine_exists)):
                differences = column_differences(cursor, target) if exists else []
                if differences:
                    raise DatabaseError(
                        f"{target.qualified_name} does not match its declaration ({'; '.join(differences)}), "
                        f"so a write would fail and there is nothing to compare with; {MIGRATE_HINT}"
                    )
        self._statements = self._render_statements()
        self._conn = connect_arrow(self.url)
        cursor = self._conn.cursor()
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for statement in self._statements["create"]:
            cursor.execute(statement)
        return self

    def __exit__(self, *exc) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.rollback()  # the staging tables go with it; nothing else was touched
            finally:
                conn.close()

    def _render_statements(self) -> dict:
        """Every statement, rendered once (identifiers quoted by libpq; values are never in the text)."""
        table, quarantine, part = self.table, self.quarantine, sql.Identifier(self.table.partition_column)
        staged = Table("pg_temp", _STAGED, table.columns, table.primary_key, table.partition_column)
        self._staged = staged
        self._staged_rejected = Table("pg_temp", _STAGED_REJECTED, (
            Column(table.partition_column, "text", nullable=False),
            Column("raw_id", "text", nullable=False),
            Column("reason", "text", nullable=False),
        ))
        zips = Table("pg_temp", _ZIPS, (Column("zip_code", "text", nullable=False),), ("zip_code",))
        ident = sql.Identifier

        def columns(alias: str, names: Sequence[str]) -> sql.Composable:
            return sql.SQL(", ").join(ident(alias, c) for c in names)

        names = table.column_names
        in_zips = sql.SQL("JOIN {} k ON {} = k.zip_code").format(ident(_ZIPS), ident("t", table.partition_column))
        old = (sql.SQL("SELECT {} FROM {} t {}").format(columns("t", names), table.identifier, in_zips)
               if self.table_exists else sql.SQL("SELECT * FROM {} WHERE false").format(ident(_STAGED)))
        new = sql.SQL("SELECT {} FROM {} t {}").format(columns("t", names), ident(_STAGED), in_zips)
        on = sql.SQL(" AND ").join(sql.SQL("n.{0} = o.{0}").format(ident(c)) for c in self.key)
        values = self.value_columns
        compare_cleaned = sql.SQL(
            "SELECT {keys}, n.{first} IS NOT NULL AS in_new, o.{first} IS NOT NULL AS in_old, {new}, {old} "
            "FROM ({new_rows}) n FULL JOIN ({old_rows}) o ON {on} "
            "WHERE n.{first} IS NULL OR o.{first} IS NULL OR ({n_values}) IS DISTINCT FROM ({o_values})"
        ).format(
            keys=sql.SQL(", ").join(sql.SQL("coalesce(n.{0}, o.{0}) AS {0}").format(ident(c)) for c in self.key),
            first=ident(self.key[0]),
            new=sql.SQL(", ").join(sql.SQL("n.{} AS {}").format(ident(c), ident(_NEW + c)) for c in values),
            old=sql.SQL(", ").join(sql.SQL("o.{} AS {}").format(ident(c), ident(_OLD + c)) for c in values),
            new_rows=new, old_rows=old, on=on, n_values=columns("n", values), o_values=columns("o", values),
        )
        # The quarantine keeps every original value as JSON; the raw id is the rejected row's key.
        old_rejected = (
            sql.SQL("SELECT t.{part} AS {part}, t.raw_values->>{key} AS raw_id, t.reason FROM {q} t {in_zips}").format(
                part=part, key=sql.Literal(self.target.rejected_key), q=quarantine.identifier, in_zips=in_zips)
            if self.quarantine_exists else sql.SQL("SELECT * FROM {} WHERE false").format(ident(_STAGED_REJECTED))
        )
        compare_rejected = sql.SQL(
            "SELECT coalesce(n.{part}, o.{part}) AS {part}, coalesce(n.raw_id, o.raw_id) AS raw_id, "
            "n.reason AS new_reason, o.reason AS old_reason "
            "FROM (SELECT t.* FROM {staged} t {in_zips}) n FULL JOIN ({old}) o "
            "ON n.{part} = o.{part} AND n.raw_id = o.raw_id WHERE n.reason IS DISTINCT FROM o.reason"
        ).format(part=part, staged=ident(_STAGED_REJECTED), in_zips=in_zips, old=old_rejected)
        delete_keys = sql.SQL("DELETE FROM {} WHERE ({}) IN (SELECT * FROM unnest({}))").format(
            ident(_STAGED), sql.SQL(", ").join(map(ident, self.key)),
            sql.SQL(", ").join(sql.SQL(f"${i + 1}::text[]") for i in range(len(self.key))))
        text = SqlText(self.url)
        try:
            return {
                "create": [text(create_table_statement(t, temporary=True)) for t in (staged, self._staged_rejected, zips)],
                "compare_cleaned": text(compare_cleaned),
                "compare_rejected": text(compare_rejected),
                "delete_keys": text(delete_keys),
                "delete_zip": [text(sql.SQL("DELETE FROM {} WHERE {} = $1").format(ident(t), part))
                               for t in (_STAGED, _STAGED_REJECTED)],
                "truncate": text(sql.SQL("TRUNCATE {}, {}, {}").format(ident(_STAGED), ident(_STAGED_REJECTED), ident(_ZIPS))),
            }
        finally:
            text.close()

    # --- the chunks ---

    def add(self, chunk: CleanedChunk) -> None:
        """Stage a chunk as the writer would apply it; compare the zip codes it completes."""
        started = time.perf_counter()
        try:
            self._add(chunk)
        finally:
            self._seconds += time.perf_counter() - started

    def _add(self, chunk: CleanedChunk) -> None:
        cursor = self._cursor()
        if chunk.aborts:  # that zip code failed part-way: it is not compared (the run reports it failed)
            for statement in self._statements["delete_zip"]:
                cursor.execute(statement, parameters=(chunk.aborts,))
            self._open_zip = None
            return
        if chunk.begins:
            self._open_zip = chunk.begins
        if chunk.superseded is not None and len(chunk.superseded):
            cursor.execute(self._statements["delete_keys"],
                           parameters=[chunk.superseded[c].astype(str).tolist() for c in self.key])
        if chunk.cleaned is not None and len(chunk.cleaned):
            cursor.adbc_ingest(_STAGED, to_arrow(chunk.cleaned, self._staged), mode="append", temporary=True)
        if chunk.rejected is not None and len(chunk.rejected):
            cursor.adbc_ingest(_STAGED_REJECTED, self._rejected_keys(chunk.rejected), mode="append", temporary=True)
        if chunk.ends:
            self._compare([chunk.ends])
            self._open_zip = None
        elif self._open_zip is None and chunk.replace:
            self._compare(chunk.replace)

    def _rejected_keys(self, rejected: pd.DataFrame) -> pa.Table:
        part = self.table.partition_column
        return pa.table({
            part: pa.array(rejected[part].astype(str).tolist(), pa.string()),
            "raw_id": pc.cast(pa.array(rejected[self.target.rejected_key].astype("int64").to_numpy()), pa.string()),
            "reason": pa.array(rejected["reason"].astype(str).tolist(), pa.string()),
        })

    def _cursor(self):
        assert self._conn is not None, "use WhatIf as a context manager"
        return self._conn.cursor()

    # --- the comparison ---

    def _compare(self, zip_codes: list[str]) -> None:
        cursor = self._cursor()
        load_zip_codes(cursor, _ZIPS, zip_codes)
        for name in (_STAGED, _STAGED_REJECTED):  # temporary too, so never analyzed by autovacuum
            cursor.execute(f"ANALYZE {name}")
        counts = pd.DataFrame(0, index=pd.Index(zip_codes, name="zip_code"), columns=[*COUNTS, *self.value_columns],
                              dtype="int64")
        for batch in self._differences("compare_cleaned"):
            counts = counts.add(self._cleaned_differences(batch), fill_value=0)
        for batch in self._differences("compare_rejected"):
            counts = counts.add(self._rejection_differences(batch), fill_value=0)
        self._counts.append(counts.astype("int64"))
        cursor.execute(self._statements["truncate"])

    def _differences(self, statement: str):
        """The differing rows, as Arrow record batches streamed from the server."""
        with reading(self.table, self.url):
            cursor = self._cursor()
            cursor.execute(self._statements[statement])
            reader = cursor.fetch_record_batch()
            try:
                for batch in reader:
                    if batch.num_rows:
                        yield batch
            finally:
                reader.close()

    def _cleaned_differences(self, batch: pa.RecordBatch) -> pd.DataFrame:
        part = self.table.partition_column
        in_new, in_old = batch["in_new"], batch["in_old"]
        both = pc.and_(in_new, in_old)
        flags = {
            "rows_appear": pc.and_not(in_new, in_old),
            "rows_disappear": pc.and_not(in_old, in_new),
        }
        changed_columns = {}
        for column in self.value_columns:
            new, old = batch[_NEW + column], batch[_OLD + column]
            same = pc.if_else(pc.is_null(pc.equal(new, old)), pc.and_(pc.is_null(new), pc.is_null(old)),
                              pc.equal(new, old))
            changed_columns[column] = pc.and_(both, pc.invert(same))
        any_changed = np.zeros(batch.num_rows, dtype=bool)
        for changed in changed_columns.values():
            any_changed |= changed.to_numpy(zero_copy_only=False)
        flags["rows_change"] = pa.array(any_changed)

        def record(row: dict) -> str:
            return "/".join(str(row[k]) for k in self._example_key)

        self._note_examples(batch, "rows_appear", flags["rows_appear"], lambda row: f"{record(row)}: would appear")
        self._note_examples(batch, "rows_disappear", flags["rows_disappear"], lambda row: f"{record(row)}: would disappear")
        for column, changed in changed_columns.items():
            self._note_examples(
                batch, column, changed,
                lambda row, c=column: f"{record(row)}: {c} {_shown(row[_OLD + c])} -> {_shown(row[_NEW + c])}")
        return _per_zip(batch[part], {**flags, **changed_columns})

    def _rejection_differences(self, batch: pa.RecordBatch) -> pd.DataFrame:
        part = self.table.partition_column
        new, old = batch["new_reason"], batch["old_reason"]
        flags = {
            "newly_rejected": pc.and_not(pc.is_valid(new), pc.is_valid(old)),
            "no_longer_rejected": pc.and_not(pc.is_valid(old), pc.is_valid(new)),
            "rejected_for_another_reason": pc.and_(pc.and_(pc.is_valid(new), pc.is_valid(old)),
                                                   pc.fill_null(pc.not_equal(new, old), False)),
        }
        def where(row: dict) -> str:
            return f"{row[part]}/{self.target.rejected_key} {row['raw_id']}"

        self._note_examples(batch, "newly_rejected", flags["newly_rejected"],
                            lambda row: f"{where(row)}: would be rejected ({row['new_reason']})")
        self._note_examples(batch, "no_longer_rejected", flags["no_longer_rejected"],
                            lambda row: f"{where(row)}: would no longer be rejected (was {row['old_reason']})")
        self._note_examples(batch, "rejected_for_another_reason", flags["rejected_for_another_reason"],
                            lambda row: f"{where(row)}: reason {row['old_reason']!r} -> {row['new_reason']!r}")
        return _per_zip(batch[part], flags)

    def _note_examples(self, batch: pa.RecordBatch, kind: str, mask: pa.Array, describe) -> None:
        """Keep the first examples of `kind` (in key order within a batch), until there are enough."""
        kept = self._examples.setdefault(kind, [])
        room = EXAMPLES_PER_KIND - len(kept)
        if room <= 0:
            return
        rows = pc.indices_nonzero(pc.fill_null(mask, False))
        if not len(rows):
            return
        chosen = batch.take(rows)
        key = [self.table.partition_column, "raw_id"] if kind in REJECTION_COUNTS else self._example_key
        chosen = chosen.take(pc.sort_indices(chosen, sort_keys=[(k, "ascending") for k in key])[:room])
        kept.extend(describe(row) for row in chosen.to_pylist())

    def report(self) -> WhatIfReport:
        counts = (pd.concat(self._counts) if self._counts
                  else pd.DataFrame(columns=[*COUNTS, *self.value_columns], dtype="int64"))
        target = " and ".join(
            t.qualified_name + ("" if exists else f" (does not exist yet: {consequence})")
            for t, exists, consequence in (
                (self.table, self.table_exists, "every cleaned row would appear"),
                (self.quarantine, self.quarantine_exists, "every rejected row would be newly rejected"),
            )
        )
        return WhatIfReport(target=target, value_columns=list(self.value_columns), counts=counts,
                            examples={k: v for k, v in self._examples.items() if v}, seconds=self._seconds,
                            totals_now=self._totals_now)


def _per_zip(zip_codes: pa.Array, flags: dict[str, pa.Array]) -> pd.DataFrame:
    """Each flag's count per zip code."""
    frame = pd.DataFrame({name: flag.to_numpy(zero_copy_only=False).astype("int64") for name, flag in flags.items()})
    frame.insert(0, "zip_code", pd.arrays.ArrowExtensionArray(pc.cast(zip_codes, pa.string())))
    counts = frame.groupby("zip_code", sort=False, observed=True).sum()
    counts.index = pd.Index(counts.index.astype(object), name="zip_code")
    return counts


def _shown(value) -> str:
    """A value as an example shows it: text quoted, NULL as NULL, times in ISO form."""
    if value is None:
        return "NULL"
    if isinstance(value, (dt.datetime, dt.date)):
        return repr(value.isoformat())
    if isinstance(value, str):
        return repr(value)
    return str(value)
