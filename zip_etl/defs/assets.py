"""The assets of a table cleaned per partition: the raw table from upstream (an observable source),
and its cleaned copy partitioned by zip code. `build_assets` makes both for one `TableCleaning` (a
component instance's YAML: zip_etl/components/); `raw_companies` and `cleaned_companies` are their
bodies, run on that table's reads and writes."""

import os
import resource
import socket
import warnings
from collections.abc import Iterator

import dagster as dg

from zip_etl.code_version import CLEANING_CODE_VERSION
from zip_etl.dagster_internals import DATA_VERSION_TAG, batched_events, output_without_asset_events
from zip_etl.partition_stream import PartitionStream
from zip_etl.provenance import changed_raw_versions, partition_provenance, raw_dependency, recorded_data_versions
from zip_etl.resources.postgres import PostgresResource, RawReads, failures_explained
from zip_etl.resources.writer import PostgresWriter, TargetWrites, WriteResult
from zip_etl.table_cleaning import TableCleaning
from zip_etl.tables import Table, Target
from zip_etl.what_if import WhatIf, WhatIfReport

# Run tag selecting debug mode (run everything, write nothing); see zip_etl/defs/jobs.py.
MODE_TAG = "zip_etl/mode"
DEBUG_MODE = "debug"
# Dagster's metadata keys for a table's name and its rows (shown on the asset's overview).
TABLE_NAME, ROW_COUNT = "dagster/table_name", "dagster/row_count"


def dagster_table_schema(table: Table) -> dg.TableSchema:
    """The table's columns as Dagster shows them."""
    return dg.TableSchema(columns=[
        dg.TableColumn(c.name, c.sql_type, constraints=dg.TableColumnConstraints(nullable=c.nullable))
        for c in table.columns
    ])


RAW_COMPANIES_DESCRIPTION = """\
Company records as they arrive from upstream: text columns, dirty. Loaded outside Dagster (`zip-etl seed`
writes demo data). Each row's `zip_code` is its partition. Observing it computes every zip code's data
version (row count + md5 of raw_id/updated_at) in one query and records the zip codes whose version
changed since the last observation."""


@dg.template_var
def raw_companies_description() -> str:
    """`{{ raw_companies_description }}` in a defs.yaml (zip_etl/defs/cleaned_companies/defs.yaml)."""
    return RAW_COMPANIES_DESCRIPTION


def raw_companies(context: dg.OpExecutionContext, postgres: RawReads) -> dg.DataVersionsByPartition:
    """Only changed versions are recorded: Dagster keeps the latest observation per partition, so
    re-recording 41,749 unchanged versions on every observation would add nothing but events. They
    are recorded here as one batch (returned, Dagster would store them one INSERT at a time: minutes
    for the first observation of 41,749 zip codes), so the DataVersionsByPartition returned is empty."""
    changed = changed_raw_versions(context.instance, context.asset_key, postgres)
    # Building the events records them (Dagster logs a DagsterEvent as it is created).
    batched_events(
        context,
        [
            dg.AssetObservation(asset_key=context.asset_key, partition=z, tags={DATA_VERSION_TAG: v})
            for z, v in changed.items()
        ],
    )
    context.log.info(f"{len(changed):,} zip code(s) with a new raw data version")
    return dg.DataVersionsByPartition({})


CLEANED_COMPANIES_DESCRIPTION = """\
Company records from `raw_companies`, one partition per active US zip code (41,749), cleaned by
plain pandas in `zip_etl/transform/cleaning.py` and written with one `COPY` per run.

**Cleaning rules** (in order; each rule's details are in the module's docstring):

0. Rows with text that is not valid UTF-8 are **rejected** (`invalid_encoding`).
1. Text normalised: Unicode NFC, control characters removed, whitespace collapsed and trimmed,
   empty -> NULL; city title-cased; state as a USPS code; industry mapped to a canonical label;
   record ids upper-cased.
2. Rows without a record id or a company name, or with a record id over 200 characters, are
   **rejected** (`missing_record_id`, `missing_company_name`, `record_id_too_long`).
3. The address's postal code (`12345`, `12345-6789`, `501` ...) must match the partition's zip code,
   else the row is **rejected** (`zip_mismatch` / `invalid_postal_code`); the +4 part becomes `zip4`.
4. Phones to E.164 (`+1NXXNXXXXXX`), unparseable ones to NULL.
5. Employees, revenue (`$1.2M`, `45K`), founded year parsed and range-checked, else NULL.
6. Duplicates (same zip code and record id): the latest update is kept, the others **rejected**
   (`duplicate`).
7. Dtypes downcast (smallest integer types, categoricals) before writing.

**Per partition** (Partitions tab; numeric, so Overview -> Metadata -> Plots -> Events charts
them): `rows_in`, `rows_out` (rows written), `rows_rejected` and one `rejected_<reason>` count per
reason. **Per run**, once, as an observation of the asset (its Events list): the table's totals
(`dagster/row_count`, the overview's Row count; `rows_quarantined_total`, `partitions_written_total`),
the run's rows in/out/rejected and chunks, `read_seconds`, `transform_seconds`, `write_seconds`,
memory before/after cleaning, `peak_process_memory_mb` and the `worker` that ran it.

**Related tables**
- Rejected rows, with their reason and original values, written in the same transaction as the
  partition (rows in = rows out + rows rejected): `<target_schema>.cleaned_companies_quarantine`
  (`public` by default, `zip_etl_test` in test mode).
- Source of truth for the test partitions: `zip_etl_test.cleaned_companies_truth`, compared by the
  `matches_truth` check of `test/cleaned_companies` (code location `zip_etl_test`).

Checks run after every materialization over the run's zip codes, or over the whole table from the
Checks tab ("Execute all")."""


def _peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@dg.template_var
def cleaned_companies_description() -> str:
    """`{{ cleaned_companies_description }}` in a defs.yaml (zip_etl/defs/cleaned_companies/defs.yaml)."""
    return CLEANED_COMPANIES_DESCRIPTION


def build_assets(spec: TableCleaning) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """The raw table's observable source asset and the cleaned table's partitioned asset. Dagster flags
    `observable_source_asset` and `backfill_policy` as beta each time they are built (every CLI
    command, run worker and code server): a notice for developers, not a problem a user can act on,
    so it is not printed above every run's output."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)

        @dg.observable_source_asset(
            key=spec.source_key,
            partitions_def=spec.partitions,
            description=spec.source_description,
            group_name=spec.group_name,
            metadata={
                TABLE_NAME: spec.source.table.qualified_name,
                "dagster/column_schema": dagster_table_schema(spec.source.table),
            },
        )
        def raw(context: dg.OpExecutionContext, postgres: PostgresResource) -> dg.DataVersionsByPartition:
            return raw_companies(context, spec.reads(postgres))

        @dg.asset(
            key=spec.asset_key,
            partitions_def=spec.partitions,
            deps=[raw],
            output_required=False,  # a debug (dry-run) run records observations and materializes nothing
            group_name=spec.group_name,
            kinds={"pandas", "postgres"},
            code_version=spec.code_version,
            # A backfill's zip codes in runs of contiguous ranges: one run reads its range from one snapshot and
            # writes it in one transaction, so Dagster's per-run cost is paid once per range, not per zip code.
            backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=spec.partitions_per_run),
            # A lost connection or a restarting server is worth another try: 2 s, 4 s, 8 s later. Errors that
            # cannot fix themselves (bad credentials, missing table, bad data) raise Failure(allow_retries=False).
            retry_policy=dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
            description=spec.description,
            metadata={
                "dagster/column_schema": dagster_table_schema(spec.target.table),
                "partition_expr": spec.target.table.partition_column,
                "primary_key": list(spec.target.table.primary_key),
            },
        )
        def cleaned(context: dg.AssetExecutionContext, postgres: PostgresResource,
                    postgres_writer: dg.ResourceParam[PostgresWriter]):
            yield from cleaned_companies(context, *spec.bind(postgres, postgres_writer), spec)

    return raw, cleaned


def cleaned_companies(
    context: dg.AssetExecutionContext,
    postgres: RawReads,
    postgres_writer: TargetWrites,
    spec: TableCleaning,
):
    """Clean the run's zip codes (see CLEANED_COMPANIES_DESCRIPTION, shown in the UI), streamed in
    chunks of `postgres.chunk_rows` rows, so memory does not grow with the size of a zip code.
    Rejected rows go to `cleaned_companies_quarantine` with the reason and their original values,
    in the same transaction, so per zip code rows in = rows out + rows quarantined.

    The rows flow one way: the stream reads and cleans them (zip_etl/partition_stream.py), the writer
    writes them in one transaction (zip_etl/resources/writer.py), and `run_events` records the run,
    once, at the end, with the table's totals. In debug mode the stream's chunks go to a what-if
    comparison instead (zip_etl/what_if.py): nothing is written or created.

    A run covers a range of zip codes. If cleaning raises for some of them, the others are still
    written and marked materialized; the run then fails naming the zip codes that failed."""
    zip_codes = list(context.partition_keys)
    target = postgres_writer.target
    dry_run = postgres_writer.dry_run or context.run.tags.get(MODE_TAG) == DEBUG_MODE
    written = report = None
    with failures_explained():
        stream = spec.stream(postgres, zip_codes)
        try:
            if dry_run:
                with WhatIf(postgres.url(), target) as what_if:
                    for chunk in stream:
                        what_if.add(chunk)
                report = what_if.report()
            else:
                written = postgres_writer.write(stream, zip_codes)
        except (ValueError, TypeError) as error:  # rows the table cannot take: retrying cannot help
            raise dg.Failure(description=f"{'A write to' if dry_run else 'Nothing written to'} "
                             f"{target.table.qualified_name}{' would fail' if dry_run else ''}: {error}",
                             allow_retries=False) from None
    yield from run_events(context, stream, postgres_writer, written, report)


def run_events(context: dg.AssetExecutionContext, stream: PartitionStream, writer: PostgresWriter,
               written: WriteResult | None, report: WhatIfReport | None) -> Iterator:
    """Everything a run of cleaned_companies records, once, at its end.

    - A write: one batch of materializations, each written partition's with its own facts and its
      provenance (zip_etl/provenance.py: an Output would give every partition of the run the same
      data-version tags, so the step's output carries no events of its own and exists only for the
      checks after it; when some zip codes failed there is none, and the checks do not run); then the
      run's facts with the table's totals, read once the materializations are stored (a run
      committing meanwhile is counted: the latest observation, whose row count the asset shows, is
      never older than the table).
    - Debug mode: one batch of observations, each zip code's facts and what its write would change,
      restating its recorded data version (nothing was written, and the refresh must not mistake a
      debugged partition for an unknown one); then the run's facts.
    - Zip codes that failed to clean: the run fails naming them, after the rest is recorded."""
    metadata = partition_metadata(stream)
    target = writer.target
    if report is not None:
        run = run_observation(context, stream, target, written, report, report.totals_now)
        recorded = recorded_data_versions(context.instance, context.asset_key, list(metadata))
        context.log.info(f"What-if (compared with {report.target}): {report.summary()}")
        yield from batched_events(context, [
            dg.AssetObservation(asset_key=context.asset_key, partition=z,
                                metadata={**values, **report.zip_metadata(z), "dry_run": True},
                                tags={DATA_VERSION_TAG: recorded[z]} if z in recorded else None)
            for z, values in metadata.items()
        ] + [run])
    else:
        _log_run(context, stream, written)
        code_version = context.assets_def.code_versions_by_key[context.asset_key] or CLEANING_CODE_VERSION
        provenance = partition_provenance(context.instance, raw_dependency(context.assets_def, context.asset_key),
                                          stream.raw_versions, code_version, list(metadata))
        yield from batched_events(context, [
            dg.AssetMaterialization(asset_key=context.asset_key, partition=z, metadata=values, tags=provenance[z])
            for z, values in metadata.items()
        ])
        if not stream.failures:
            yield output_without_asset_events()
        yield from batched_events(context, [run_observation(context, stream, target, written, report, writer.totals())])
    if stream.failures:
        raise _failure(stream, "cleaned (debug mode: nothing written)" if report is not None else "written")


def partition_metadata(stream: PartitionStream) -> dict[str, dict]:
    """Each cleaned zip code's own facts (nothing of its run: that is recorded once per run)."""
    stats = stream.stats  # computed on each access: once here, not once per zip code
    reasons = [column for column in stats.columns if column.startswith("rejected_")]
    return {
        zip_code: {
            "rows_in": row.rows_in,
            "rows_out": row.rows_out,
            "rows_rejected": row.rows_rejected,
            **{column: getattr(row, column) for column in reasons},
        }
        for zip_code, row in zip(stats.index, stats.itertuples())
    }


def run_observation(context, stream: PartitionStream, target: Target, written: WriteResult | None,
                    report: WhatIfReport | None, totals: dict[str, int]) -> dg.AssetObservation:
    """One event per run: the table's totals (the asset's overview shows its row count) and the run's
    own facts; in a debug run, the totals of the tables as they are and what its write would have
    changed."""
    stats = stream.stats
    return dg.AssetObservation(
        asset_key=context.asset_key,
        metadata={
            ROW_COUNT: totals["rows"],
            "rows_quarantined_total": totals["rows_quarantined"],
            "partitions_written_total": totals["partitions"],
            TABLE_NAME: target.table.qualified_name,
            "quarantine_table": target.quarantine.qualified_name,
            "run_partitions": len(stream.zip_codes),
            "run_failed_partitions": len(stream.failures),
            "run_rows_in": int(stats["rows_in"].sum()),
            "run_rows_out": int(stats["rows_out"].sum()),
            "run_rows_rejected": int(stats["rows_rejected"].sum()),
            "run_chunks": stream.chunks,
            "read_seconds": round(stream.read_seconds, 4),
            "transform_seconds": round(stream.transform_seconds, 4),
            "write_seconds": round(written.seconds, 4) if written is not None else 0.0,
            "memory_raw_bytes": stream.raw_bytes,
            "memory_cleaned_bytes": stream.cleaned_bytes,
            "memory_saved_pct": round(100 * (1 - stream.cleaned_bytes / stream.raw_bytes), 1) if stream.raw_bytes else 0.0,
            "peak_process_memory_mb": _peak_rss_mb(),
            # Which machine and process ran this range (several, in a distributed deployment).
            "worker": f"{socket.gethostname()} pid {os.getpid()}",
            **({"dry_run": True} if written is None else {}),
            **(what_if_metadata(report) if report is not None else {}),
        },
        description=f"What-if: {report.summary()}" if report is not None else None,
    )


def what_if_metadata(report: WhatIfReport) -> dict:
    """A debug run's totals of what its write would change: counts, rows changed per column (each
    column its own number, so the UI plots it), the first examples."""
    return {
        "what_if_compared_with": report.target,
        "what_if_zip_codes_compared": len(report.counts),
        "what_if_zip_codes_with_differences": report.zip_codes_with_differences(),
        **{f"what_if_{name}": n for name, n in report.totals().items()},
        **{f"what_if_changed_{column}": n for column, n in report.column_changes().items()},
        "what_if_examples": dg.MetadataValue.json(report.first_examples()),
        "what_if_seconds": round(report.seconds, 4),
    }


def _log_run(context, stream: PartitionStream, written: WriteResult) -> None:
    stats = stream.stats
    context.log.info(
        f"{len(stream.zip_codes)} zip code(s) in {stream.chunks} chunk(s): {int(stats['rows_in'].sum())} rows in, "
        f"{written.rows_written} out, {written.rows_quarantined} quarantined, {len(stream.failures)} failed; memory "
        f"{stream.raw_bytes:,} -> {stream.cleaned_bytes:,} bytes; values unparseable (set to NULL): {stream.unparseable}"
    )


def _failure(stream: PartitionStream, done: str) -> dg.Failure:
    failures, zip_codes = stream.failures, stream.zip_codes
    listed = "; ".join(f"{z}: {message}" for z, message in list(failures.items())[:20])
    return dg.Failure(
        description=(
            f"{len(failures)} of {len(zip_codes)} zip code(s) failed to clean and were not written "
            f"(their previous rows are unchanged); the other {len(zip_codes) - len(failures)} were {done}. "
            f"Re-run the failed ones (they show as missing). {listed}"
        ),
        metadata={"failed_zip_codes": dg.MetadataValue.json(sorted(failures)), "failed_count": len(failures)},
        allow_retries=False,
    )
