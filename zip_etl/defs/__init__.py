"""What Dagster loads: assets, checks, jobs, sensors and the resources they use (zip_etl/definitions.py
lists them).

Dagster flags `observable_source_asset` and `backfill_policy` as beta each time the definitions
load (every CLI command, run worker and code server): a notice for developers, not a problem a user
can act on, so it is not printed above every run's output.
"""

import warnings

import dagster as dg

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    from zip_etl.defs import assets  # noqa: F401
