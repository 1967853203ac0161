"""Test mode's code location (`zip_etl_test` in workspace.yaml): the cleaned_companies component again,
as the instance in zip_etl/testmode_defs/ (the sample table, schema zip_etl_test, the truth check),
loaded by Dagster's component tree the way `load_from_defs_folder` loads zip_etl/defs/. That folder
holds only the instance, so the code location's executor (zip_etl/defs/executor.py) is merged here by
hand. In the UI open `test/cleaned_companies`, materialize partitions 10016 and 00501, and watch the
checks.

`load_from_defs_folder` keeps Dagster's beta and preview notices about its own loading machinery (code
references, module loading) out of every run's output; the component tree here does the same."""

import warnings
from pathlib import Path

import dagster as dg

import zip_etl.components  # noqa: F401 - imported before the loader, whose warning filters its module-level one would not outlive
import zip_etl.console_logger  # noqa: F401 - a Failure on the terminal: its one line, not its stack trace
from zip_etl import testmode_defs
from zip_etl.defs import executor

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    warnings.simplefilter("ignore", dg.PreviewWarning)
    defs = dg.Definitions.merge(
        dg.ComponentTree.from_module(testmode_defs, project_root=Path(__file__).resolve().parents[1]).build_defs(),
        executor.defs,
    )
