import warnings

import dagster as dg

# Dagster flags `observable_source_asset` and `backfill_policy` as beta each time the definitions
# load (every CLI command, run worker and code server): a notice for developers, not a problem a
# user can act on, so it is not printed above every run's output.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    from zip_etl.assets.companies import cleaned_companies, raw_companies

__all__ = ["cleaned_companies", "raw_companies"]
