"""Jobs for the ways users run cleaned_companies besides a plain materialization.

Debug mode is selected by the run tag `zip_etl/mode: debug` (so it is visible on every such run):
the same asset code reads and cleans the chosen zip codes and records per-zip-code metadata as
observations, and nothing is written or created. `cleaned_companies_debug` carries that tag; launch it
from the UI (Jobs -> cleaned_companies_debug -> Materialize, or a backfill), add the tag to any
launch in the launchpad, or run `zip-etl demo --debug`. `PostgresWriter(dry_run=True)` does
the same for a whole deployment.
"""

import dagster as dg

from zip_etl.defs.assets import DEBUG_MODE, MODE_TAG, cleaned_companies, raw_companies

cleaned_companies_debug = dg.define_asset_job(
    "cleaned_companies_debug",
    selection=dg.AssetSelection.assets(cleaned_companies).without_checks(),
    tags={MODE_TAG: DEBUG_MODE},
    description="Debug mode: read and clean, record metadata, write nothing.",
)

# The refresh cycle's jobs (zip_etl/refresh.py): its sensor launches them.
observe_raw_companies = dg.define_asset_job(
    "observe_raw_companies",
    selection=dg.AssetSelection.assets(raw_companies.key),
    description="Record each zip code's raw data version (only the changed ones are written).",
)
refresh_cleaned_companies = dg.define_asset_job(
    "refresh_cleaned_companies",
    selection=dg.AssetSelection.assets(cleaned_companies),
    description="Rebuild a range of stale or missing zip codes (launched by refresh_changed_zip_codes).",
)
