"""Every setting zip_etl reads from the environment, in one place.

Configuration comes from the environment only (never from committed files); each setting is read
when it is used, so a process sees the environment it was started with. A value that cannot be
right fails with one line naming the variable and what it expects.

| variable | meaning | default |
| --- | --- | --- |
| `ZIP_ETL_DATABASE_URL` | libpq URL of the ETL database (raw and cleaned tables) | the embedded server, database `zip_etl` |
| `ZIP_ETL_DAGSTER_DATABASE_URL` | Dagster's run and event storage | `ZIP_ETL_DATABASE_URL`, else the embedded server, database `dagster` |
| `ZIP_ETL_HOME` | local state: the embedded server's data, caches | `.zip_etl/` in the checkout |
| `ZIP_ETL_PARTITIONS_PER_RUN` | zip codes per run of a backfill (read where runs are planned) | 2000 |
| `ZIP_ETL_EXECUTOR` | how a run executes its steps: `in_process` or `multiprocess` | `in_process` |
| `ZIP_ETL_AUTO_REFRESH` | `off` starts the refresh sensor stopped | on |

The Celery deployment's own variables (`ZIP_ETL_CELERY_BROKER_URL`, `ZIP_ETL_MAX_CONCURRENT_RUNS`)
are read by Dagster from deploy/celery/*.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path

DATABASE_URL = "ZIP_ETL_DATABASE_URL"
DAGSTER_DATABASE_URL = "ZIP_ETL_DAGSTER_DATABASE_URL"
HOME = "ZIP_ETL_HOME"
PARTITIONS_PER_RUN = "ZIP_ETL_PARTITIONS_PER_RUN"
EXECUTOR = "ZIP_ETL_EXECUTOR"
AUTO_REFRESH = "ZIP_ETL_AUTO_REFRESH"

EXECUTORS = ("in_process", "multiprocess")


def _get(name: str) -> str | None:
    return os.environ.get(name) or None


def database_url() -> str | None:
    """The user's ETL database URL, or None for the embedded server."""
    return _get(DATABASE_URL)


def dagster_database_url() -> str | None:
    """The user's URL for Dagster's storage (falling back to the ETL URL), or None for the embedded server."""
    return _get(DAGSTER_DATABASE_URL) or _get(DATABASE_URL)


def dagster_database_setting() -> str:
    """The setting that chose Dagster's storage URL, for error messages."""
    if _get(DAGSTER_DATABASE_URL):
        return DAGSTER_DATABASE_URL
    if _get(DATABASE_URL):
        return f"{DAGSTER_DATABASE_URL} (unset, so Dagster's storage uses {DATABASE_URL})"
    return f"{DAGSTER_DATABASE_URL} (unset: the embedded server in {home() / 'pgdata'})"


def project_root() -> Path:
    """The checkout that holds dagster.yaml (editable install), else the working directory."""
    package_parent = Path(__file__).resolve().parents[1]
    if (package_parent / "dagster.yaml").exists():
        return package_parent
    return Path.cwd()


def home() -> Path:
    return Path(_get(HOME) or project_root() / ".zip_etl").resolve()


def partitions_per_run() -> int:
    value = _get(PARTITIONS_PER_RUN) or "2000"
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{PARTITIONS_PER_RUN}={value!r}: expected a whole number of zip codes, at least 1")
    return int(value)


def executor() -> str:
    name = _get(EXECUTOR) or "in_process"
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR}={name!r} is not an executor zip_etl offers; use one of {list(EXECUTORS)}")
    return name


def auto_refresh() -> bool:
    return (_get(AUTO_REFRESH) or "on").strip().lower() not in {"off", "0", "false", "no"}
