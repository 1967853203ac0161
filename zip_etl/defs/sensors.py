"""The refresh sensor: every minute, rebuild the zip codes whose raw rows changed (zip_etl/refresh.py);
`build_refresh_sensor` makes it for one `TableCleaning` (`refresh_changed_zip_codes` for cleaned_companies)."""

from __future__ import annotations

import dagster as dg

from zip_etl import settings
from zip_etl.refresh import digest, plan_refresh, refresh_run_requests, runs_in_progress
from zip_etl.resources.postgres import PostgresResource
from zip_etl.table_cleaning import TableCleaning


def build_refresh_sensor(
    spec: TableCleaning,
    observe_job: dg.UnresolvedAssetJobDefinition,
    refresh_job: dg.UnresolvedAssetJobDefinition,
    *,
    minimum_interval_seconds: int = 60,
) -> dg.SensorDefinition:
    raw_key, cleaned_key = spec.source_key, spec.asset_key

    @dg.sensor(
        name=spec.refresh_sensor,
        jobs=[observe_job, refresh_job],
        minimum_interval_seconds=minimum_interval_seconds,
        # On unless ZIP_ETL_AUTO_REFRESH=off (e.g. while a test drives backfills by hand).
        default_status=dg.DefaultSensorStatus.RUNNING if settings.auto_refresh() else dg.DefaultSensorStatus.STOPPED,
        description=(
            "Every minute: compares every zip code's raw data version with the one its cleaned partition "
            "was built from (two queries), records new raw versions (observation run) and rebuilds only the "
            "stale and missing zip codes, one run per contiguous range."
        ),
    )
    def refresh_sensor(context: dg.SensorEvaluationContext, postgres: PostgresResource):
        postgres = spec.reads(postgres)
        busy = runs_in_progress(context.instance, cleaned_key)
        if busy:
            return dg.SkipReason(
                f"{len(busy)} run(s) of {cleaned_key.to_user_string()} in progress (e.g. {busy[0]}); "
                "checking again when they finish, so no zip code gets two writers"
            )
        plan = plan_refresh(context.instance, postgres, raw_key=raw_key, cleaned_key=cleaned_key,
                            code_version=spec.code_version, max_per_run=spec.partitions_per_run)
        requests = refresh_run_requests(plan, refresh_job.name)
        if plan.observed_changes:
            requests.insert(
                0,
                dg.RunRequest(
                    run_key=f"observe@{digest(f'{k}={v}' for k, v in sorted(plan.observed_changes.items()))}",
                    job_name=observe_job.name,
                ),
            )
        context.log.info(plan.summary())
        if not requests:
            return dg.SkipReason(f"nothing to refresh: {plan.summary()}")
        return dg.SensorResult(run_requests=requests)

    return refresh_sensor
