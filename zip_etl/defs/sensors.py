"""The refresh sensor: every minute, rebuild the zip codes whose raw rows changed (zip_etl/refresh.py)."""

from __future__ import annotations

import dagster as dg

from zip_etl import settings
from zip_etl.defs.jobs import observe_raw_companies, refresh_cleaned_companies
from zip_etl.refresh import CLEANED_KEY, RAW_KEY, digest, plan_refresh, refresh_run_requests, runs_in_progress
from zip_etl.resources.postgres import PostgresResource


def build_refresh_sensor(
    observe_job: dg.UnresolvedAssetJobDefinition,
    refresh_job: dg.UnresolvedAssetJobDefinition,
    *,
    name: str = "refresh_changed_zip_codes",
    raw_key: dg.AssetKey = RAW_KEY,
    cleaned_key: dg.AssetKey = CLEANED_KEY,
    minimum_interval_seconds: int = 60,
) -> dg.SensorDefinition:
    @dg.sensor(
        name=name,
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
        busy = runs_in_progress(context.instance, cleaned_key)
        if busy:
            return dg.SkipReason(
                f"{len(busy)} run(s) of {cleaned_key.to_user_string()} in progress (e.g. {busy[0]}); "
                "checking again when they finish, so no zip code gets two writers"
            )
        plan = plan_refresh(context.instance, postgres, raw_key=raw_key, cleaned_key=cleaned_key)
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


refresh_changed_zip_codes = build_refresh_sensor(observe_raw_companies, refresh_cleaned_companies)
