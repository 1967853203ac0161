"""Everything Dagster loads for zip_etl: assets, checks and resources, in one place."""

import os

import dagster as dg

from zip_etl.assets import cleaned_companies, raw_companies
from zip_etl.checks.quality import QUALITY_CHECKS
import zip_etl.console_logger  # noqa: F401 - a Failure on the terminal: its one line, not its stack trace
from zip_etl.jobs import cleaned_companies_debug, observe_raw_companies, refresh_cleaned_companies
from zip_etl.refresh import build_refresh_sensor
from zip_etl.resources import PostgresCopyIOManager, PostgresResource

EXECUTOR_ENV = "ZIP_ETL_EXECUTOR"
# How a run executes its steps. in_process (default): the whole run in its run worker, one process
# per run, not one per step: a run is one asset step plus five small check steps, and a step process
# costs seconds of start-up (imports, loading these definitions) on top of the run worker's own; with
# a process per step a one-zip-code run took 68 s from the click to success, in-process about 10 s
# (docs/BENCHMARKS.md). Parallelism comes from concurrent runs (the run queue in dagster.yaml, or
# Celery workers: deploy/celery, docs/DEPLOYMENT.md), as in `zip-etl demo`. multiprocess: a process
# per step, for definitions with independent steps worth running side by side.
EXECUTORS = {"in_process": dg.in_process_executor, "multiprocess": dg.multiprocess_executor}


def executor_from_env() -> dg.ExecutorDefinition:
    name = os.environ.get(EXECUTOR_ENV, "in_process")
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
