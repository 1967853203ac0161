"""Data-quality checks on a cleaned table (`cleaned_companies`), evaluated over the zip codes of the run
that materialized them (one query per run, whatever its number of zip codes), or over the whole table
when a check is launched on its own (the Checks tab's "Execute all" launches them without partitions). `build_checks` makes them for one `TableCleaning` (a component
instance's YAML); the functions named after the checks are their bodies, run on that table's reads
and writes.

Blocking (a failure stops downstream assets in the same run): a table that does not match its
declared schema, duplicate keys, missing required values or rows filed under a zip code that is not
an active zip code would corrupt whatever reads the table. Non-blocking: the row reconciliation and
the raw rows under no partition, which flag rows no run wrote for a person to look at but do not make
the written rows wrong. Every result says in its metadata what it covered (`checked`: the run's zip
codes as a range, or the whole table), and a failing one names the zip codes concerned, so the UI
shows both per check: after a backfill, a check's latest result is its last run's range.
"""

import bisect
import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from psycopg2 import sql

from zip_etl.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, PARTITION_NAME_TAG
from zip_etl.db.connection import transaction
from zip_etl.db.ddl import column_differences, table_exists
from zip_etl.partitions import zip_code_partitions
from zip_etl.resources.postgres import failures_explained
from zip_etl.resources.writer import PostgresWriter, TargetWrites
from zip_etl.table_cleaning import TableCleaning
from zip_etl.tables import MIGRATE_HINT, Table
from zip_etl.testmode import compare_with_truth, read_table


def run_zip_codes(context: dg.AssetCheckExecutionContext,
                  partitions: dg.StaticPartitionsDefinition = zip_code_partitions) -> list[str] | None:
    """The zip codes of the run the check belongs to; None means the whole table."""
    tags = context.run.tags
    if PARTITION_NAME_TAG in tags:
        return [tags[PARTITION_NAME_TAG]]
    if ASSET_PARTITION_RANGE_START_TAG in tags:
        return partitions.get_partition_keys_in_range(
            dg.PartitionKeyRange(tags[ASSET_PARTITION_RANGE_START_TAG], tags[ASSET_PARTITION_RANGE_END_TAG])
        )
    return None


def _where(table: Table, keys: Sequence[str] | None) -> tuple[sql.Composable, tuple]:
    if keys is None:
        return sql.SQL("TRUE"), ()
    return sql.SQL("{} = ANY(%s)").format(sql.Identifier(table.partition_column)), (list(keys),)


def coverage(keys: Sequence[str] | None) -> dict[str, str | int]:
    """What a check covered, for its result's metadata: the run's zip codes as their range's first
    and last key and their count (a run's zip codes are contiguous), or the whole table."""
    if keys is None:
        return {"checked": "the whole table"}
    return {
        "checked": f"zip code {keys[0]}" if len(keys) == 1 else f"zip codes {keys[0]}..{keys[-1]}",
        "checked_first_zip_code": keys[0],
        "checked_last_zip_code": keys[-1],
        "checked_zip_codes": len(keys),
    }


def _missing_table(table: Table) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=False,
        description=f"{table.qualified_name} does not exist: materialize {table.name} first",
    )


@dataclass
class _Scope:
    """What a check looks at: the table (`exists`: it has been created), the run's zip codes (None:
    all) as a WHERE clause, a cursor."""

    table: Table
    exists: bool
    keys: list[str] | None
    where: sql.Composable
    params: tuple
    cursor: Any


@contextlib.contextmanager
def check_scope(context: dg.AssetCheckExecutionContext | None, writer: TargetWrites) -> Iterator[_Scope]:
    """The check's scope in one read transaction."""
    table = writer.target.table
    keys = run_zip_codes(context, writer.partitions) if context is not None else None
    where, params = _where(table, keys)
    with transaction(writer.postgres.url()) as cursor:
        yield _Scope(table, table_exists(cursor, table.schema, table.name), keys, where, params, cursor)


def evaluate(context: dg.AssetCheckExecutionContext | None, writer: TargetWrites, body,
             *, needs_table: bool = True) -> dg.AssetCheckResult:
    """`body(scope, writer)` over the check's scope, in one read transaction (`context` None: the
    whole table), with what it covered in its metadata; a table that does not exist yet fails the
    check, saying so (unless the body reads only the raw table)."""
    with failures_explained(), check_scope(context, writer) as scope:
        if needs_table and not scope.exists:
            result = _missing_table(scope.table)
        else:
            result = body(scope, writer)
    return dg.AssetCheckResult(passed=result.passed, severity=result.severity, description=result.description,
                               metadata={**coverage(scope.keys), **result.metadata})


def _schema_differences(scope: _Scope, _) -> dg.AssetCheckResult:
    differences = column_differences(scope.cursor, scope.table)
    return dg.AssetCheckResult(
        passed=not differences,
        description=f"{differences[0]}; {MIGRATE_HINT}" if differences else None,
        metadata={"differences": dg.MetadataValue.json(differences[:20]), "columns": len(scope.table.columns)},
    )


def _unique_index_on_key(scope: _Scope) -> str | None:
    """A valid unique index of the table on exactly its key's columns, all NOT NULL: PostgreSQL then
    refuses a second row with the same key, so there is nothing to look for."""
    scope.cursor.execute(
        "SELECT i.indexrelid::regclass::text FROM pg_index i WHERE i.indrelid = %s::regclass AND i.indisunique "
        "AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL AND ARRAY(SELECT a.attname::text FROM pg_attribute a "
        "WHERE a.attrelid = i.indrelid AND a.attnotnull AND a.attnum = ANY((i.indkey::int2[])[0:i.indnkeyatts - 1]) "
        "ORDER BY 1) = %s::text[] LIMIT 1",
        (scope.table.qualified_name, sorted(scope.table.primary_key)),
    )
    found = scope.cursor.fetchone()
    return found[0] if found else None


def _duplicate_keys(scope: _Scope, _) -> dg.AssetCheckResult:
    index = _unique_index_on_key(scope)
    if index is not None:
        return dg.AssetCheckResult(passed=True, metadata={"enforced_by_unique_index": index})
    key_columns = sql.SQL(", ").join(map(sql.Identifier, scope.table.primary_key))
    scope.cursor.execute(
        sql.SQL("SELECT {cols}, count(*) FROM {t} WHERE {w} GROUP BY {cols} HAVING count(*) > 1 LIMIT 20").format(
            cols=key_columns, t=scope.table.identifier, w=scope.where
        ),
        scope.params,
    )
    duplicates = scope.cursor.fetchall()
    return dg.AssetCheckResult(
        passed=not duplicates,
        metadata={"duplicate_keys": dg.MetadataValue.json([list(map(str, d)) for d in duplicates])},
    )


def _missing_required_values(scope: _Scope, _) -> dg.AssetCheckResult:
    required = [c for c in scope.table.columns if not c.nullable]
    # Only text can be empty: a number or a time is never '' (and turning each into text to see costs
    # more than the rest of the scan).
    counts = sql.SQL(", ").join(
        sql.SQL("count(*) FILTER (WHERE {0} IS NULL OR {0} = '')" if c.sql_type == "text"
                else "count(*) FILTER (WHERE {0} IS NULL)").format(sql.Identifier(c.name))
        for c in required
    )
    required = [c.name for c in required]
    scope.cursor.execute(sql.SQL("SELECT {} FROM {} WHERE {}").format(counts, scope.table.identifier, scope.where),
                         scope.params)
    bad = {column: n for column, n in zip(required, scope.cursor.fetchone()) if n}
    return dg.AssetCheckResult(passed=not bad, metadata={"rows_missing_a_required_value": dg.MetadataValue.json(bad)})


def _unknown_zip_codes(scope: _Scope, writer: TargetWrites) -> dg.AssetCheckResult:
    if scope.keys is not None and all(map(writer.partitions.has_partition_key, scope.keys)):
        # A run's rows are those of its zip codes, every one of them a partition: none can be a stray.
        return dg.AssetCheckResult(passed=True, metadata={"unknown_zip_codes": dg.MetadataValue.json([])})
    scope.cursor.execute(
        sql.SQL("SELECT DISTINCT {c} FROM {t} WHERE {w} AND NOT ({c} = ANY(%s))").format(
            c=sql.Identifier(scope.table.partition_column), t=scope.table.identifier, w=scope.where
        ),
        (*scope.params, list(writer.partitions.get_partition_keys())),
    )
    strays = sorted(r[0] for r in scope.cursor.fetchall())
    return dg.AssetCheckResult(passed=not strays, metadata={"unknown_zip_codes": dg.MetadataValue.json(strays[:50])})


def _counts_by_partition(cursor, table: Table, where: sql.Composable, params: tuple) -> dict[str, int]:
    if not table_exists(cursor, table.schema, table.name):
        return {}
    cursor.execute(
        sql.SQL("SELECT {c}, count(*) FROM {t} WHERE {w} GROUP BY 1").format(
            c=sql.Identifier(table.partition_column), t=table.identifier, w=where
        ),
        params,
    )
    return dict(cursor.fetchall())


def _unreconciled_rows(scope: _Scope, writer: TargetWrites) -> dg.AssetCheckResult:
    counts = {
        name: _counts_by_partition(scope.cursor, table, scope.where, scope.params)
        for name, table in (
            ("raw", writer.postgres.raw),
            ("cleaned", scope.table),
            ("quarantined", writer.target.quarantine),
        )
    }
    keys = scope.keys if scope.keys is not None else sorted(set(counts["cleaned"]) | set(counts["quarantined"]))
    problems = []
    for zip_code in keys:
        raw, out, held = (counts[name].get(zip_code, 0) for name in ("raw", "cleaned", "quarantined"))
        if raw != out + held:
            problems.append(f"{zip_code}: {raw} raw rows != {out} cleaned + {held} quarantined")
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.WARN,  # lost rows are for a person to look at; written rows stay right
        description="; ".join(problems[:5]) if problems else None,
        metadata={
            "zip_codes_reconciled": len(keys),
            "rows_raw": sum(counts["raw"].get(k, 0) for k in keys),
            "rows_cleaned": sum(counts["cleaned"].get(k, 0) for k in keys),
            "rows_quarantined": sum(counts["quarantined"].get(k, 0) for k in keys),
            "problem_count": len(problems),
            "problems": dg.MetadataValue.json(problems[:20]),
        },
    )


def _raw_share(column: sql.Identifier, keys: Sequence[str] | None, partitions: Sequence[str]
               ) -> tuple[sql.Composable, tuple, str]:
    """The raw zip_code values a run's contiguous zip codes answer for, as a WHERE clause, its
    parameters and in words: from its first zip code up to the zip code after its last (a ZIP+4 or a
    typo between two partitions falls to the run before it), the first partition's run also
    everything before it and NULL, the last's everything after. Every value is in exactly one run's
    share, whatever the server's collation (zip codes, five digits, sort alike in all). `partitions`:
    all the partition keys, in order (the component sorts a YAML's list of them)."""
    if keys is None:
        return sql.SQL("TRUE"), (), "all"
    after = bisect.bisect_right(partitions, keys[-1])
    bounds, params, words = [], [], []
    if keys[0] != partitions[0]:
        bounds.append(sql.SQL("{} >= %s").format(column))
        params.append(keys[0])
        words.append(f"from {keys[0]}")
    if after < len(partitions):
        bounds.append(sql.SQL("{} < %s").format(column))
        params.append(partitions[after])
        words.append(f"below {partitions[after]}")
    share = sql.SQL(" AND ").join(bounds) if bounds else sql.SQL("TRUE")
    if keys[0] == partitions[0]:
        share = sql.SQL("({} IS NULL OR {})").format(column, share)
        words.append("and NULL")
    return share, tuple(params), " ".join(words) or "all"


def _raw_rows_without_partition(scope: _Scope, writer: TargetWrites) -> dg.AssetCheckResult:
    table = writer.postgres.raw
    if not table_exists(scope.cursor, table.schema, table.name):
        return dg.AssetCheckResult(passed=False, description=f"{table.qualified_name} does not exist")
    column = sql.Identifier(table.partition_column)
    partitions = list(writer.partitions.get_partition_keys())
    share, params, in_words = _raw_share(column, scope.keys, partitions)
    # Inside a run's share the only partitions are the run's own zip codes.
    in_share = scope.keys if scope.keys is not None else partitions
    scope.cursor.execute(
        sql.SQL("SELECT {c}, count(*) FROM {t} WHERE {share} AND ({c} IS NULL OR {c} <> ALL(%s)) "
                "GROUP BY 1 ORDER BY 2 DESC").format(c=column, t=table.identifier, share=share),
        (*params, list(in_share)),
    )
    strays = scope.cursor.fetchall()
    rows = sum(n for _, n in strays)
    return dg.AssetCheckResult(
        passed=not strays,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{rows} raw row(s) under {len(strays)} value(s) that are not active zip codes" if strays else None,
        metadata={
            "raw_values_checked": in_words,
            "rows_without_partition": rows,
            "values": dg.MetadataValue.json([[value, n] for value, n in strays[:50]]),
        },
    )


def schema_matches_declaration(postgres_writer: TargetWrites) -> dg.AssetCheckResult:
    return evaluate(None, postgres_writer, _schema_differences)  # the table as a whole


def key_is_unique(context: dg.AssetCheckExecutionContext, postgres_writer: TargetWrites) -> dg.AssetCheckResult:
    return evaluate(context, postgres_writer, _duplicate_keys)


def required_values_present(context: dg.AssetCheckExecutionContext, postgres_writer: TargetWrites) -> dg.AssetCheckResult:
    return evaluate(context, postgres_writer, _missing_required_values)


def zip_codes_are_partitions(context: dg.AssetCheckExecutionContext, postgres_writer: TargetWrites) -> dg.AssetCheckResult:
    return evaluate(context, postgres_writer, _unknown_zip_codes)


def rows_reconcile(context: dg.AssetCheckExecutionContext, postgres_writer: TargetWrites) -> dg.AssetCheckResult:
    return evaluate(context, postgres_writer, _unreconciled_rows)


def raw_rows_have_partitions(context: dg.AssetCheckExecutionContext, postgres_writer: TargetWrites
                             ) -> dg.AssetCheckResult:
    """A check of the cleaned table, run with every run of it, so a backfill or a refresh checks
    the raw rows it leaves out as it goes, beside rows_reconcile (which counts the rows of its zip
    codes): together they say that no raw row was lost. A run looks only at its share of the raw
    partition values (`_raw_share`): an index range, not the whole raw table, which a backfill's 21
    runs would otherwise each scan; the shares of a backfill's runs cover every value once."""
    return evaluate(context, postgres_writer, _raw_rows_without_partition, needs_table=False)


def matches_truth(context: dg.AssetCheckExecutionContext, postgres_writer: TargetWrites, truth_table: Table
                  ) -> dg.AssetCheckResult:
    with check_scope(context, postgres_writer) as scope:
        if not scope.exists:
            return dg.AssetCheckResult(passed=False, description="the test table does not exist yet",
                                       metadata=coverage(scope.keys))
        url = postgres_writer.postgres.url()
        truth = read_table(url, truth_table, None)
        partition = scope.table.partition_column
        keys = sorted(set(truth[partition]) & set(scope.keys if scope.keys is not None else truth[partition]))
        actual = read_table(url, scope.table, keys)
    truth = truth[truth[partition].isin(keys)]
    problems = compare_with_truth(actual.astype(object), truth.astype(object), list(scope.table.primary_key))
    return dg.AssetCheckResult(
        passed=not problems,
        description="; ".join(problems[:5]) if problems else None,
        metadata={
            **coverage(scope.keys),
            "zip_codes_compared": dg.MetadataValue.json(keys),
            "rows_expected": len(truth),
            "rows_actual": len(actual),
            "mismatches": len(problems),
            "first_mismatches": dg.MetadataValue.json(problems[:20]),
        },
    )


@dataclass
class _Check:
    """One check of build_checks: its body (named as the check), what it checks, whether it blocks."""

    body: Callable[..., dg.AssetCheckResult]
    description: str
    blocking: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.body.__name__
        self.takes_context = "context" in inspect.signature(self.body).parameters

    def run(self, context: dg.AssetCheckExecutionContext, writes: TargetWrites) -> dg.AssetCheckResult:
        return self.body(context, writes, **self.extra) if self.takes_context else self.body(writes, **self.extra)


def build_checks(spec: TableCleaning, cleaned: dg.AssetsDefinition) -> list[dg.AssetChecksDefinition]:
    """The checks of one cleaned table, each body run on its reads and writes (raw_rows_have_partitions
    too: a check of the cleaned table, so that it runs with every run of it).

    They are one Dagster step, which evaluates the checks a run selected one after the other: a step
    per check cost each run six steps' events and start-up (a one-zip-code run 0.48 s against 0.32 s,
    a 2,000-zip-code run about 0.4 s more; docs/BENCHMARKS.md). Each is still a check of its own in the UI,
    launched alone or all together; a failed blocking check fails the step once every selected check
    has reported, so the others' results are never lost to it."""
    key = ", ".join(spec.target.table.primary_key)
    checks = [
        _Check(schema_matches_declaration, "columns and types are the declared ones", blocking=True),
        _Check(key_is_unique, f"one row per ({key})", blocking=True),
        _Check(required_values_present, "required columns have values", blocking=True),
        _Check(zip_codes_are_partitions, "every row's zip code is an active zip code of the run", blocking=True),
        _Check(rows_reconcile, (
            "no row lost: per zip code, rows in the raw table = rows in the cleaned table + rows in its "
            "quarantine (the run's zip codes; launched alone, every zip code written so far)"
        )),
        _Check(raw_rows_have_partitions, (
            f"every raw row belongs to a partition: raw rows whose {spec.source.table.partition_column} is not a "
            "partition (for zip codes: ZIP+4, malformed, retired) are read by no run, so they are listed here rather "
            "than lost unseen (a run: the raw values from its first partition up to the next run's; launched alone, "
            "the whole raw table)"
        )),
    ]
    if spec.truth is not None:
        checks.append(_Check(matches_truth, "test partitions equal the hand-written truth table",
                             extra={"truth_table": spec.truth}))

    @dg.multi_asset_check(
        specs=[dg.AssetCheckSpec(c.name, asset=cleaned.key, description=c.description, blocking=c.blocking)
               for c in checks],
        can_subset=True, name=f"{cleaned.key.to_python_identifier()}_checks",
    )
    def evaluate_selected(context: dg.AssetCheckExecutionContext,
                          postgres_writer: dg.ResourceParam[PostgresWriter]) -> Iterator[dg.AssetCheckResult]:
        writes = spec.bind(postgres_writer.postgres, postgres_writer)[1]
        selected = {check_key.name for check_key in context.selected_asset_check_keys}
        for check in checks:
            if check.name in selected:
                result = check.run(context, writes)
                yield dg.AssetCheckResult(asset_key=cleaned.key, check_name=check.name, passed=result.passed,
                                          severity=result.severity, description=result.description,
                                          metadata=result.metadata)

    return [evaluate_selected]
