"""What Dagster loads for the zip_etl code location (workspace.yaml, and `dg` through dg.toml's
`code_location_target_module`): everything in the `zip_etl/defs/` folder, through Dagster's
`load_from_defs_folder`, as a project made by `create-dagster` loads its own. Each table is a
component instance there (`cleaned_companies/defs.yaml`), the executor is `defs/executor.py`.

The objects of the cleaned_companies instance are also here by name, for Python callers that build
Definitions of their own (tests, benchmarks)."""

from pathlib import Path

import dagster as dg

import zip_etl.components  # noqa: F401 - imported before the loader, whose warning filters its module-level one would not outlive
import zip_etl.console_logger  # noqa: F401 - a Failure on the terminal: its one line, not its stack trace

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent)


def _named(key: str):
    """The asset (or observable source asset) `key` of `defs`, as built (not resolved into a repository)."""
    (found,) = [a for a in defs.assets if dg.AssetKey.from_user_string(key) in getattr(a, "keys", {a.key})]
    return found


cleaned_companies = _named("cleaned_companies")
raw_companies = _named("raw_companies")
QUALITY_CHECKS = [c for c in defs.asset_checks if {k.asset_key for k in c.check_keys} & {cleaned_companies.key, raw_companies.key}]
"""The data-quality checks of cleaned_companies and raw_companies (zip_etl/defs/checks.py)."""
CHECKS = {key.name: key for check in QUALITY_CHECKS for key in check.check_keys}
"""Their keys by name, to select some: `dg.AssetSelection.checks(CHECKS["key_is_unique"])`."""
(cleaned_companies_debug,) = [job for job in defs.jobs if job.name == "cleaned_companies_debug"]
