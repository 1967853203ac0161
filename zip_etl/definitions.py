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
    executor=dg.multiprocess_executor,
)
