"""The engine is chosen by configuration: the Celery deployment's instance, the executor, run sizes."""

import subprocess
import sys

import pytest

from zip_etl_tools.local_cluster import dagster_home


def _python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_celery_instance_hands_runs_to_celery_and_recovers_dead_workers(zip_etl_environment, tmp_path, monkeypatch):
    from dagster import DagsterInstance

    from zip_etl.deploy.celery_launcher import CeleryWorkerRunLauncher

    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home(tmp_path / "home")))
    monkeypatch.setenv("ZIP_ETL_CELERY_BROKER_URL", "redis://:pw-7f3a@127.0.0.1:1/0")
    monkeypatch.setenv("ZIP_ETL_MAX_CONCURRENT_RUNS", "6")
    with DagsterInstance.get() as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, CeleryWorkerRunLauncher)
        assert launcher.broker == launcher.backend == "redis://:pw-7f3a@127.0.0.1:1/0"
        assert launcher.celery.conf.task_acks_late and launcher.celery.conf.worker_prefetch_multiplier == 1
        assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 6
        assert instance.run_monitoring_enabled and instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        assert "pw-7f3a" not in (tmp_path / "home" / "dagster.yaml").read_text()


@pytest.mark.slow
def test_executor_and_run_size_come_from_the_environment(zip_etl_environment):
    import os

    code = (
        "from zip_etl.definitions import cleaned_companies, defs; "
        "print(defs.resolve_implicit_global_asset_job_def().executor_def.name, "
        "cleaned_companies.backfill_policy.max_partitions_per_run)"
    )
    env = {**os.environ, "ZIP_ETL_EXECUTOR": "in_process", "ZIP_ETL_PARTITIONS_PER_RUN": "50"}
    ran = _python(code, env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["in_process", "50"]

    bad_executor = _python(code, {**env, "ZIP_ETL_EXECUTOR": "celery"})
    assert bad_executor.returncode != 0
    assert "ZIP_ETL_EXECUTOR='celery' is not an executor zip_etl offers; use one of ['in_process', 'multiprocess']" in bad_executor.stderr
    bad_size = _python(code, {**env, "ZIP_ETL_PARTITIONS_PER_RUN": "lots"})
    assert bad_size.returncode != 0
    assert "ZIP_ETL_PARTITIONS_PER_RUN='lots': expected a whole number of zip codes, at least 1" in bad_size.stderr
