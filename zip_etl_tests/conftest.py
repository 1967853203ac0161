"""Test fixtures: a real PostgreSQL server (embedded by default) and an isolated schema per test.

Set ZIP_ETL_TEST_DATABASE_URL to run against your own server instead of the embedded one.
"""

import os
import tempfile
import uuid
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from zip_etl import settings
from zip_etl.db.connection import ensure_database

TEST_URL_ENV = "ZIP_ETL_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def pg_server_url():
    """libpq URL of a real server's maintenance database for this test session."""
    if os.environ.get(TEST_URL_ENV):
        yield os.environ[TEST_URL_ENV]
        return
    from zip_etl.db.embedded import start_embedded_server, stop_embedded_server

    # Short path: the server's Unix socket lives in its data directory.
    root = Path(tempfile.mkdtemp(prefix="zetl-"))
    data_dir = root / "pg"
    url = start_embedded_server(data_dir)
    yield url
    stop_embedded_server(data_dir)


@pytest.fixture(scope="session")
def zip_etl_environment(pg_server_url, tmp_path_factory):
    """Point zip_etl (resources, CLI, Dagster storage) at the test server, never at local state."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # test processes sharing your server: a database each
    etl_url = ensure_database(pg_server_url, f"zip_etl_test{worker}")
    dagster_url = ensure_database(pg_server_url, f"dagster_test{worker}")
    saved = {k: os.environ.get(k) for k in (settings.DATABASE_URL, settings.DAGSTER_DATABASE_URL, settings.HOME)}
    os.environ[settings.DATABASE_URL] = etl_url
    os.environ[settings.DAGSTER_DATABASE_URL] = dagster_url
    os.environ[settings.HOME] = str(tmp_path_factory.mktemp("zip_etl_home"))
    yield {"etl_url": etl_url, "dagster_url": dagster_url}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def etl_url(zip_etl_environment):
    return zip_etl_environment["etl_url"]


@pytest.fixture
def schema(etl_url):
    """A fresh schema for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(etl_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
    conn.close()


@pytest.fixture
def query(etl_url):
    """Run SQL on the test database and return all rows."""
    conn = psycopg2.connect(etl_url)
    conn.autocommit = True

    def run(statement, params=None):
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []

    yield run
    conn.close()


@pytest.fixture
def fresh_dagster_storage(pg_server_url, zip_etl_environment, monkeypatch):
    """Dagster's storage in a database of its own for one test: partitions' history starts empty."""
    from zip_etl.instance import get_instance

    name = f"dagster_{uuid.uuid4().hex[:12]}"
    url = ensure_database(pg_server_url, name)
    monkeypatch.setenv(settings.DAGSTER_DATABASE_URL, url)
    with get_instance():  # create Dagster's tables before any pool worker races to
        pass
    yield url
    conn = psycopg2.connect(pg_server_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    conn.close()


ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"

# pytest runs in two processes (pyproject.toml: `-n 2 --dist loadgroup`). The tests of one group run
# in the same process, one after another: those driving the shared `dagster dev` (one server and
# log, not one per process), and the Celery deployment's (each starts a cluster loading both cores).
XDIST_GROUPS = {"dagster_dev": "dagster_dev"}
XDIST_MODULE_GROUPS = {"test_distributed": "celery"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        group = XDIST_MODULE_GROUPS.get(item.module.__name__.rpartition(".")[2])
        group = group or next((g for f, g in XDIST_GROUPS.items() if f in item.fixturenames), None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))
    if hasattr(config, "workerinput"):
        # Slow tests first (a stable sort: each module's order kept), so that the two processes end
        # on short tests together instead of one waiting out a long one alone.
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def dagster_dev(zip_etl_environment):
    """`dagster dev` (webserver + daemon) from the repository root on a free port, on the test
    databases; shared by the suites that drive it (GraphQL, browser). Its log is in test-artifacts/.
    The refresh sensor is off: it would start building every missing zip code while the tests
    launch runs and backfills by hand."""
    from zip_etl_tools.dagster_dev import running_dagster_dev

    env = {**os.environ, settings.AUTO_REFRESH: "off"}
    with running_dagster_dev(ARTIFACTS / "dagster-dev.log", env=env) as server:
        yield server
