"""How a run of this code location executes its steps (ZIP_ETL_EXECUTOR): the README says why the
default is what it is, docs/BENCHMARKS.md has the measurements. An executor is a code location's, not
a table's, so it is here rather than in a component; test mode's location merges the same one
(zip_etl/testmode_definitions.py)."""

import dagster as dg

from zip_etl import settings

# `multiprocess` is the design card's executor: each step (the asset, then its five checks side by
# side) in a process forked from a forkserver that has imported Dagster and zip_etl once per run.
EXECUTORS = {
    "in_process": dg.in_process_executor,
    "multiprocess": dg.multiprocess_executor.configured(
        {"start_method": {"forkserver": {"preload_modules": ["dagster", "zip_etl.definitions"]}}},
        name="multiprocess_forkserver",
    ),
}

defs = dg.Definitions(executor=EXECUTORS[settings.executor()])
