"""Small helpers shared by the suites that run the pipeline on a per-test schema."""

import pandas as pd

from zip_etl.db.connection import transaction
from zip_etl.demo_data import generate_raw_companies, write_raw_companies
from zip_etl.resources import PostgresResource, PostgresWriter
from zip_etl.tables import RAW_COMPANIES


def seed_raw(etl_url: str, schema: str, raw: pd.DataFrame | None = None, *, rows: int = 2000,
             zip_codes=None, seed: int = 1) -> pd.DataFrame:
    """Write raw rows (generated unless given) to `schema`.raw_companies."""
    raw = generate_raw_companies(rows, zip_codes, seed=seed) if raw is None else raw
    write_raw_companies(etl_url, raw, RAW_COMPANIES.with_name(schema, "raw_companies"))
    return raw


def pipeline_resources(schema: str, **postgres_settings) -> dict:
    """The pipeline's resources, reading and writing `schema` on the test database."""
    postgres = PostgresResource(raw_schema=schema, **postgres_settings)
    return {"postgres": postgres, "postgres_writer": PostgresWriter(postgres=postgres, target_schema=schema)}


def failure_message(result) -> str:
    """Everything a failed step said: its Failure description, error and cause, as one string."""
    parts = []
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        if data.user_failure_data and data.user_failure_data.description:
            parts.append(data.user_failure_data.description)
        error = data.error
        while error is not None:
            parts.append(error.message)
            error = error.cause
    return "\n".join(parts)


def drop_written_partitions(etl_url: str, zip_codes) -> None:
    """Remove `zip_codes` from the default cleaned table and its quarantine, if they exist: for the
    suites that drive `dagster dev`, whose runs write the default `public` tables other suites read."""
    from psycopg2 import sql

    from zip_etl.db.ddl import table_exists
    from zip_etl.tables import CLEANED_TARGET

    with transaction(etl_url) as cursor:
        for table in (CLEANED_TARGET.table, CLEANED_TARGET.quarantine):
            if table_exists(cursor, table.schema, table.name):
                cursor.execute(
                    sql.SQL("DELETE FROM {} WHERE {} = ANY(%s)").format(
                        table.identifier, sql.Identifier(table.partition_column)
                    ),
                    (list(zip_codes),),
                )


def failure_description(result) -> str:
    """The Failure description of the run's (first) failed step: what the user reads."""
    return next(e for e in result.all_events if e.is_step_failure).step_failure_data.user_failure_data.description


def retries(result) -> int:
    """How often a step of the run was retried by its RetryPolicy."""
    return sum(1 for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY")


def run_facts(result) -> dict:
    """The metadata of the run's one unpartitioned observation of cleaned_companies: the run's facts
    and the table's totals."""
    (observation,) = [
        e.asset_observation_data.asset_observation for e in result.get_asset_observation_events()
        if e.asset_observation_data.asset_observation.partition is None
    ]
    return observation.metadata

