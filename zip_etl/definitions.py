"""Everything Dagster loads for zip_etl: assets, checks and resources, in one place."""

import os

import dagster as dg

from zip_etl.assets import cleaned_companies, raw_companies
from zip_etl.checks.quality import QUALITY_CHECKS
from zip_etl.jobs import cleaned_companies_debug, observe_raw_companies, refresh_cleaned_companies
from zip_etl.refresh import build_refresh_sensor
from zip_etl.resources import PostgresCopyIOManager, PostgresResource

EXECUTOR_ENV = "ZIP_ETL_EXECUTOR"
# How a run executes its steps. multiprocess (default): a process per step, for `dagster dev` on one
# machine. in_process: the whole run in the process that launched it, for Celery workers, where each
# run already has its own worker process (deploy/celery; docs/DEPLOYMENT.md).
EXECUTORS = {"multiprocess": dg.multiprocess_executor, "in_process": dg.in_process_executor}


def executor_from_env() -> dg.ExecutorDefinition:
    name = os.environ.get(EXECUTOR_ENV, "multiprocess")
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={name!r} is not an executor zip_etl offers; use one of {sorted(EXECUTORS)}")
    return EXECUTORS[name]


postgres = PostgresResource()

defs = dg.Definitions(
    assets=[raw_companies, cleaned_companies],
    asset_checks=QUALITY_CHECKS,
    jobs=[cleaned_companies_debug, observe_raw_companies, refresh_cleaned_companies],
    sensors=[build_refresh_sensor(observe_raw_companies, refresh_cleaned_companies)],
    resources={
        "postgres": postgres,
        "postgres_io_manager": PostgresCopyIOManager(postgres=postgres),
    },
    executor=executor_from_env(),
)
