"""Least-privilege roles, and credentials that never leave the environment."""

import dagster as dg
import psycopg2
import pytest
from psycopg2 import sql

from zip_etl import settings
from zip_etl.db.connection import transaction
from zip_etl.db.roles import dagster_role_statements, etl_role_grants
from zip_etl.definitions import QUALITY_CHECKS, cleaned_companies, raw_companies
from zip_etl.demo_data import generate_raw_companies, write_raw_companies
from zip_etl.instance import get_instance
from zip_etl.resources import PostgresResource, PostgresWriter
from zip_etl.tables import RAW_COMPANIES
from zip_etl_tests.helpers import failure_description, retries
from zip_etl_tools.tcp_postgres import TcpPostgres

ETL_PASSWORD = "etl-Pw-7f3a9c"
DAGSTER_PASSWORD = "dagster-Pw-51be02"
ZIPS = ["10013", "10014", "10016"]


@pytest.fixture(scope="module")
def locked_down():
    """A server set up as docs/RELIABILITY.md says: upstream owns raw, zip_etl_etl reads it and
    writes schema cleaned, zip_etl_dagster owns the dagster database."""
    server = TcpPostgres()
    server.create_role("zip_etl_etl", ETL_PASSWORD)
    server.create_role("zip_etl_dagster", DAGSTER_PASSWORD)
    server.create_database("companies")
    for statement in dagster_role_statements("zip_etl_dagster", "dagster"):
        server.admin(statement)
    raw = RAW_COMPANIES.with_name("upstream", "raw_companies")
    write_raw_companies(server.admin_url("companies"), generate_raw_companies(900, ZIPS, seed=8), raw)
    with transaction(server.admin_url("companies")) as cursor:
        cursor.execute("CREATE SCHEMA cleaned")
        for statement in etl_role_grants("zip_etl_etl", raw, "cleaned"):
            cursor.execute(statement)
    yield server
    server.stop()


def run_pipeline(server, monkeypatch, tmp_path, etl_password=ETL_PASSWORD):
    monkeypatch.setenv(settings.DATABASE_URL, server.url("zip_etl_etl", etl_password, "companies"))
    monkeypatch.setenv(settings.DAGSTER_DATABASE_URL, server.url("zip_etl_dagster", DAGSTER_PASSWORD, "dagster"))
    monkeypatch.setenv(settings.HOME, str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    postgres = PostgresResource(raw_schema="upstream")
    with get_instance() as instance:
        return dg.materialize(
            [raw_companies, cleaned_companies, *QUALITY_CHECKS],
            selection=dg.AssetSelection.assets(cleaned_companies) | dg.AssetSelection.checks(*QUALITY_CHECKS),
            partition_key="10016",
            resources={"postgres": postgres,
                       "postgres_writer": PostgresWriter(postgres=postgres, target_schema="cleaned")},
            instance=instance,
            raise_on_error=False,
        )


def test_pipeline_runs_under_least_privilege_roles(locked_down, monkeypatch, tmp_path):
    result = run_pipeline(locked_down, monkeypatch, tmp_path)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    rows = locked_down.admin("SELECT count(*) FROM cleaned.cleaned_companies", database="companies")[0][0]
    assert rows > 0

    etl = psycopg2.connect(locked_down.url("zip_etl_etl", ETL_PASSWORD, "companies"))
    etl.autocommit = True
    with etl.cursor() as cur:
        for forbidden in ("DELETE FROM upstream.raw_companies", "CREATE SCHEMA elsewhere",
                          "CREATE TABLE upstream.mine (x int)"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(forbidden)
    etl.close()
    with pytest.raises(psycopg2.OperationalError, match="permission denied for database"):
        psycopg2.connect(locked_down.url("zip_etl_etl", ETL_PASSWORD, "dagster"))


def test_credentials_never_reach_logs_run_config_or_metadata(locked_down, monkeypatch, tmp_path, capfd, caplog):
    ok = run_pipeline(locked_down, monkeypatch, tmp_path)
    failed = run_pipeline(locked_down, monkeypatch, tmp_path, etl_password="wrong-" + ETL_PASSWORD)
    assert ok.success and not failed.success

    # Everything Dagster stored, in every text column of its database: events, runs (config, tags), metadata.
    columns = locked_down.admin(
        "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND data_type IN ('text', 'character varying', 'json', 'jsonb')", database="dagster")
    assert ("event_logs", "event") in columns and ("runs", "run_body") in columns
    stored = 0
    for table, column in columns:
        found = locked_down.admin(
            sql.SQL("SELECT count(*), count(*) FILTER (WHERE {c}::text LIKE %s OR {c}::text LIKE %s) FROM {t}").format(
                c=sql.Identifier(column), t=sql.Identifier(table)),
            (f"%{ETL_PASSWORD}%", f"%{DAGSTER_PASSWORD}%"), database="dagster")[0]
        stored += found[0]
        assert found[1] == 0, f"a password is stored in dagster.{table}.{column}"
    assert stored > 0

    for result in (ok, failed):
        assert ETL_PASSWORD not in str(result.dagster_run.run_config) + str(result.dagster_run.tags)
    captured = capfd.readouterr()
    for text in (captured.out, captured.err, caplog.text):
        assert ETL_PASSWORD not in text and DAGSTER_PASSWORD not in text
    failure = failure_description(failed)
    assert "rejected the credentials" in failure and "zip_etl_etl:***@127.0.0.1" in failure


def test_a_role_without_rights_gets_one_line_naming_the_grant(locked_down, monkeypatch, tmp_path):
    locked_down.create_role("zip_etl_nobody", "nobody-pw")
    locked_down.admin("GRANT USAGE ON SCHEMA upstream TO zip_etl_nobody", database="companies")
    monkeypatch.setenv(settings.DATABASE_URL, locked_down.url("zip_etl_nobody", "nobody-pw", "companies"))
    postgres = PostgresResource(raw_schema="upstream")
    result = dg.materialize(
        [raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
        resources={"postgres": postgres, "postgres_writer": PostgresWriter(postgres=postgres)},
        raise_on_error=False,
    )
    description = failure_description(result)
    assert description.startswith("The role zip_etl_nobody cannot read the raw table upstream.raw_companies: "
                                  "it lacks SELECT on upstream.raw_companies.")
    assert retries(result) == 0

    # A refused write is one line too, and not retried.
    locked_down.admin("GRANT SELECT ON upstream.raw_companies TO zip_etl_nobody", database="companies")
    result = dg.materialize(
        [raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
        resources={"postgres": postgres,
                   "postgres_writer": PostgresWriter(postgres=postgres, target_schema="cleaned")},
        raise_on_error=False,
    )
    description = failure_description(result)
    assert description.startswith("PostgreSQL refused a statement: InsufficientPrivilege: permission denied for schema cleaned")
    assert retries(result) == 0
