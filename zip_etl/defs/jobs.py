"""Jobs for the ways users run a cleaned table besides a plain materialization (`build_jobs` makes them
for one `TableCleaning`; `cleaned_companies_debug`, `observe_raw_companies` and
`refresh_cleaned_companies` for cleaned_companies).

Debug mode is selected by the run tag `zip_etl/mode: debug` (so it is visible on every such run):
the same asset code reads and cleans the chosen zip codes and records per-zip-code metadata as
observations, and nothing is written or created. `cleaned_companies_debug` carries that tag; launch it
from the UI (Jobs -> cleaned_companies_debug -> Materialize, or a backfill), add the tag to any
launch in the launchpad, or run `zip-etl demo --debug`. `PostgresWriter(dry_run=True)` does
the same for a whole deployment.
"""

from __future__ import annotations

import dagster as dg

from zip_etl.defs.assets import DEBUG_MODE, MODE_TAG
from zip_etl.table_cleaning import TableCleaning


def debug_job(spec: TableCleaning) -> dg.UnresolvedAssetJobDefinition:
    return dg.define_asset_job(
        f"{spec.name}_debug",
        selection=dg.AssetSelection.assets(spec.asset_key).without_checks(),
        tags={MODE_TAG: DEBUG_MODE},
        description="Debug mode: read and clean, record metadata, write nothing.",
    )


def refresh_jobs(spec: TableCleaning) -> tuple[dg.UnresolvedAssetJobDefinition, dg.UnresolvedAssetJobDefinition]:
    """The refresh cycle's jobs (zip_etl/refresh.py): its sensor launches them."""
    observe = dg.define_asset_job(
        f"observe_{spec.source_name}",
        selection=dg.AssetSelection.assets(spec.source_key),
        description="Record each zip code's raw data version (only the changed ones are written).",
    )
    refresh = dg.define_asset_job(
        f"refresh_{spec.name}",
        selection=dg.AssetSelection.assets(spec.asset_key),
        description=f"Rebuild a range of stale or missing zip codes (launched by {spec.refresh_sensor}).",
    )
    return observe, refresh
