"""The orchestration floor: the same partitions, batching, runs, executor and storage as
`cleaned_companies`, for an asset that reads and writes nothing. What it costs is Dagster's own
bookkeeping (a run's process, its events, one materialization per partition)."""

import dagster as dg

from zip_etl import settings
from zip_etl.definitions import cleaned_companies, raw_companies
from zip_etl.definitions import defs as zip_etl_defs
from zip_etl.partitions import zip_code_partitions


class NothingIOManager(dg.ConfigurableIOManager):
    def handle_output(self, context, obj) -> None:
        return None

    def load_input(self, context):
        return None


@dg.asset(
    partitions_def=zip_code_partitions,
    io_manager_key="nothing_io_manager",
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=settings.partitions_per_run()),
)
def orchestration_floor(context: dg.AssetExecutionContext) -> None:
    """Does nothing for its zip codes."""
    return None


defs = dg.Definitions(
    assets=[raw_companies, cleaned_companies, orchestration_floor],
    resources={**zip_etl_defs.resources, "nothing_io_manager": NothingIOManager()},
    executor=zip_etl_defs.executor,  # the same executor as zip_etl's runs
)
