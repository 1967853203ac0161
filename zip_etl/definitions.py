"""What Dagster loads for zip_etl (workspace.yaml): the assets, checks, jobs and sensors of the
`zip_etl.defs` package, with their resources and executor, listed here in one place."""

import dagster as dg

import zip_etl.console_logger  # noqa: F401 - a Failure on the terminal: its one line, not its stack trace
from zip_etl import settings
from zip_etl.defs.assets import cleaned_companies, raw_companies
from zip_etl.defs.checks import QUALITY_CHECKS
from zip_etl.defs.jobs import cleaned_companies_debug, observe_raw_companies, refresh_cleaned_companies
from zip_etl.defs.resources import resources
from zip_etl.defs.sensors import refresh_changed_zip_codes

# How a run executes its steps (ZIP_ETL_EXECUTOR): the README says why the default is what it is,
# docs/BENCHMARKS.md has the measurements.
# `multiprocess` is the design card's executor: each step (the asset, then its five checks side by
# side) in a process forked from a forkserver that has imported Dagster and zip_etl once per run.
EXECUTORS = {
    "in_process": dg.in_process_executor,
    "multiprocess": dg.multiprocess_executor.configured(
        {"start_method": {"forkserver": {"preload_modules": ["dagster", "zip_etl.definitions"]}}},
        name="multiprocess_forkserver",
    ),
}

defs = dg.Definitions(
    assets=[raw_companies, cleaned_companies],
    asset_checks=QUALITY_CHECKS,
    jobs=[cleaned_companies_debug, observe_raw_companies, refresh_cleaned_companies],
    sensors=[refresh_changed_zip_codes],
    resources=resources(),
    executor=EXECUTORS[settings.executor()],
)
