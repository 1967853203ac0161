"""The ways of moving raw rows to a cleaned table that `zip-etl bench` times against each other."""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import pandas as pd
from psycopg2 import sql

from zip_etl.db.connection import connect, etl_database_url, transaction
from zip_etl.tables import Table
from zip_etl.db.ddl import ensure_table
from zip_etl.tables import CLEANED_COMPANIES, RAW_COMPANIES


@dataclass
class Measurement:
    method: str
    seconds: float
    rows: int
    note: str = ""

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def read_raw_table(schema: str) -> pd.DataFrame:
    from zip_etl.resources import PostgresResource

    return PostgresResource(raw_schema=schema).read_raw(None)


def raw_table(schema: str) -> Table:
    return RAW_COMPANIES.with_name(schema, "raw_companies")


def cleaned_table(schema: str, name: str = "cleaned_companies") -> Table:
    return CLEANED_COMPANIES.with_name(schema, name)


def data_floor(schema: str) -> Measurement:
    """COPY the raw table out and straight back in (into a copy of it): no pandas, no transform."""
    source = raw_table(schema)
    target = source.with_name(schema, "floor_copy")
    with transaction(etl_database_url()) as cursor:
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target.identifier))
        cursor.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(target.identifier, source.identifier))
    started = time.perf_counter()
    with transaction(etl_database_url()) as cursor:
        buffer = io.BytesIO()
        cursor.copy_expert(
            sql.SQL("COPY {} TO STDOUT WITH (FORMAT csv)").format(source.identifier).as_string(cursor), buffer
        )
        buffer.seek(0)
        cursor.copy_expert(
            sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv)").format(target.identifier).as_string(cursor), buffer
        )
        cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(target.identifier))
        rows = cursor.fetchone()[0]
    return Measurement("data floor: COPY raw TO STDOUT -> COPY FROM STDIN", time.perf_counter() - started, rows)


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
                cursor.execute(
                    sql.SQL("DELETE FROM {} WHERE zip_code = %s").format(table.identifier), (zip_code,)
                )
                buffer = io.StringIO()
                cleaned.to_csv(buffer, sep="\t", header=False, index=False, na_rep="\\N")
                buffer.seek(0)
                cursor.copy_from(buffer, "seed_style_cleaned", sep="\t", null="\\N",
                                 columns=list(cleaned.columns))
    finally:
        conn.close()
    return len(raw)


def seed_approach(schema: str, zip_codes: list[str], total_zip_codes: int, workers: int) -> Measurement:
    """Per zip code read_sql + clean + to_csv + copy_from in a process pool, on `zip_codes`.

    On a sample the time is projected linearly to all `total_zip_codes` (the work is per zip code).
    """
    url = etl_database_url()
    with transaction(url) as cursor:
        table = cleaned_table(schema, "seed_style_cleaned")
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table.identifier))
        ensure_table(cursor, table)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = sum(pool.map(_seed_style_zip, [(url, schema, z) for z in zip_codes], chunksize=8))
    seconds = time.perf_counter() - started
    if len(zip_codes) < total_zip_codes:
        factor = total_zip_codes / len(zip_codes)
        return Measurement(
            "seed's approach: per zip read_sql + clean + to_csv + copy_from, process pool",
            seconds * factor,
            int(rows * factor),
            note=f"projected from {len(zip_codes):,} of {total_zip_codes:,} zip codes ({seconds:.1f}s measured)",
        )
    return Measurement("seed's approach: per zip read_sql + clean + to_csv + copy_from, process pool", seconds, rows)


def to_sql_sample(schema: str, rows: int, total_rows: int) -> Measurement:
    """pandas.to_sql (row inserts) of `rows` cleaned rows, projected to `total_rows`."""
    from sqlalchemy import create_engine

    from zip_etl.db.connection import sqlalchemy_url
    from zip_etl.transform import clean_companies

    raw = read_raw_table(schema).head(rows)
    cleaned = clean_companies(raw).cleaned
    engine = create_engine(sqlalchemy_url(etl_database_url()))
    try:
        started = time.perf_counter()
        cleaned.to_sql("to_sql_sample", engine, schema=schema, if_exists="replace", index=False, chunksize=10_000)
        seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    factor = total_rows / max(len(cleaned), 1)
    return Measurement(
        "pandas.to_sql (write only)",
        seconds * factor,
        total_rows,
        note=f"projected from {len(cleaned):,} rows ({seconds:.1f}s measured)",
    )


def default_workers() -> int:
    return os.cpu_count() or 1


def read_paths(schema: str) -> list[Measurement]:
    """The whole raw table into pandas: `pandas.read_sql` against zip_etl's COPY reader."""
    from sqlalchemy import create_engine

    from zip_etl.db.connection import sqlalchemy_url
    table = raw_table(schema)
    engine = create_engine(sqlalchemy_url(etl_database_url()))
    try:
        started = time.perf_counter()
        with engine.connect() as conn:
            frame = pd.read_sql(
                sql.SQL("SELECT * FROM {}").format(table.identifier).as_string(conn.connection.dbapi_connection),
                conn,
            )
        read_sql_seconds = time.perf_counter() - started
    finally:
        engine.dispose()
    started = time.perf_counter()
    copied = read_raw_table(schema)
    copy_seconds = time.perf_counter() - started
    assert len(copied) == len(frame)
    return [
        Measurement("pandas.read_sql of the raw table", read_sql_seconds, len(frame)),
        Measurement("zip_etl binary COPY (ADBC) -> Arrow-backed pandas", copy_seconds, len(copied)),
    ]


def downcast_saving(schema: str) -> tuple[int, int, int]:
    """(raw bytes as read, cleaned bytes before downcast, cleaned bytes after) for the whole table."""
    from zip_etl.transform import cleaning, frame_bytes

    raw = read_raw_table(schema)
    original = cleaning.downcast
    undowncast: list[int] = []
    try:
        cleaning.downcast = lambda df, **kw: undowncast.append(frame_bytes(df)) or original(df, **kw)
        result = cleaning.clean_companies(raw)
    finally:
        cleaning.downcast = original
    return frame_bytes(raw), undowncast[0], frame_bytes(result.cleaned)
