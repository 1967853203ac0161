"""Everything Dagster loads for zip_etl: assets, checks and resources, in one place."""

import dagster as dg

from zip_etl.assets import cleaned_companies, raw_companies
from zip_etl.checks.quality import QUALITY_CHECKS
from zip_etl.jobs import cleaned_companies_debug, observe_raw_companies, refresh_cleaned_companies
from zip_etl.refresh import build_refresh_sensor
from zip_etl.resources import PostgresCopyIOManager, PostgresResource

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
    # One process per run, not one per step: a run is one asset step plus five small check steps,
    # and a step process costs seconds of start-up (imports, loading these definitions) on top of
    # the run worker's own; with a process per step a one-zip-code run took 68 s from the click to
    # success, in-process about 10 s (docs/BENCHMARKS.md). Parallelism comes from
    # concurrent runs (the run queue in dagster.yaml), as in `zip-etl demo`.
    executor=dg.in_process_executor,
)
