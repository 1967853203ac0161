"""Faults against real PostgreSQL servers: a writer killed mid-COPY, a server restarted mid-backfill,
and the errors a person sees when the database is unreachable or refuses them."""

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from psycopg2 import sql

from zip_etl import dagster_internals as internals
from zip_etl import settings, warm_runs
from zip_etl.definitions import cleaned_companies, raw_companies
from zip_etl.instance import get_instance
from zip_etl.partitions import ZIP_CODES
from zip_etl_tests.helpers import failure_description, failure_message, pipeline_resources, retries, run_facts, seed_raw
from zip_etl_tools.tcp_postgres import TcpPostgres, free_port

ROOT = Path(__file__).resolve().parents[1]
WRITE_ONE_PARTITION = """
import sys, dagster as dg
from zip_etl.definitions import cleaned_companies, raw_companies
from zip_etl_tests.helpers import pipeline_resources
dg.materialize([raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
               resources=pipeline_resources(sys.argv[1], chunk_rows=int(sys.argv[2])))
"""


def partition_state(query, schema, zip_code="10016"):
    """Row count and a digest of every row of the partition, cleaned and quarantined."""
    state = []
    for table, order in (("cleaned_companies", "record_id"), ("cleaned_companies_quarantine", "raw_values->>'raw_id'")):
        state.append(query(
            sql.SQL("SELECT count(*), md5(string_agg(t::text, '|' ORDER BY {})) FROM {} t WHERE zip_code = %s").format(
                sql.SQL(order), sql.Identifier(schema, table)),
            (zip_code,),
        )[0])
    return state


def materialize_10016(schema, chunk_rows):
    return dg.materialize([raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
                          resources=pipeline_resources(schema, chunk_rows=chunk_rows))


@pytest.mark.slow
def test_writer_killed_mid_stream_leaves_the_old_rows_and_a_rerun_is_identical(schema, etl_url, query):
    """A zip code larger than a chunk streams into its transaction chunk by chunk: SIGKILL the run
    after its first chunks are in, and the partition still holds exactly its old rows; run it again
    and the table is what one-shot cleaning gives."""
    seed_raw(etl_url, schema, rows=3000, zip_codes=["10016"], seed=1)
    assert materialize_10016(schema, 1_000_000).success
    old = partition_state(query, schema)
    new_raw = seed_raw(etl_url, schema, rows=120_000, zip_codes=["10016"], seed=2)
    chunk_rows = 15_000  # eight chunks

    writer = subprocess.Popen([sys.executable, "-c", WRITE_ONE_PARTITION, schema, str(chunk_rows)], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    copies, backend = set(), None
    deadline = time.time() + 300
    while len(copies) < 3:  # kill during the third COPY into the partition: two chunks are in
        assert writer.poll() is None and time.time() < deadline, f"the writer finished or stalled ({len(copies)} COPY seen)"
        for pid, started in query(
            "SELECT p.pid, a.query_start FROM pg_stat_progress_copy p JOIN pg_stat_activity a USING (pid) "
            "WHERE p.command = 'COPY FROM' AND p.relid = %s::regclass AND a.application_name = 'zip_etl'",
            (f'"{schema}"."cleaned_companies"',),
        ):
            copies.add(started)
            backend = pid
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(30) == -signal.SIGKILL
    while query("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)):
        assert time.time() < deadline, "the server kept the killed writer's session"
        time.sleep(0.1)

    assert partition_state(query, schema) == old  # exactly the old rows: the transaction never committed

    result = materialize_10016(schema, chunk_rows)
    assert result.success
    assert run_facts(result)["run_chunks"].value >= 8
    streamed = partition_state(query, schema)
    (cleaned_n, _), (quarantined_n, _) = streamed
    assert cleaned_n + quarantined_n == len(new_raw)
    assert materialize_10016(schema, 1_000_000).success  # one chunk: the same rows, byte for byte
    assert partition_state(query, schema) == streamed


@pytest.fixture
def tcp_server():
    server = TcpPostgres()
    yield server
    server.stop()


def cli(*args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "zip_etl.cli.main", *args], cwd=ROOT, env=env, timeout=timeout,
                          capture_output=True, text=True)


def server_env(url: str, dagster_url: str | None, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update({settings.DATABASE_URL: url, settings.HOME: str(home)})
    env[settings.DAGSTER_DATABASE_URL] = dagster_url or url
    return env


@pytest.mark.slow
def test_server_restarted_mid_backfill_every_partition_is_retried_and_written_once(tcp_server, tmp_path):
    tcp_server.create_role("etl", "etl-pw")
    for database in ("etl", "dagster"):
        tcp_server.create_database(database, owner="etl")
    etl_url, dagster_url = tcp_server.url("etl", "etl-pw", "etl"), tcp_server.url("etl", "etl-pw", "dagster")
    zips = ZIP_CODES[:40]
    raw = seed_raw(etl_url, "public", rows=4000, zip_codes=zips, seed=3)

    # Hold the raw table so the backfill's runs are mid-query when the server goes down.
    blocker = psycopg2.connect(etl_url)
    with blocker.cursor() as cur:
        cur.execute("LOCK TABLE public.raw_companies IN ACCESS EXCLUSIVE MODE")
    backfill = subprocess.Popen(
        [sys.executable, "-m", "zip_etl.cli.main", "demo", "--zip-codes", "40", "--partitions-per-run", "10",
         "--workers", "2"],
        cwd=ROOT, env=server_env(etl_url, dagster_url, tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 120
    while len(tcp_server.admin("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                               "AND application_name = 'zip_etl'")) < 2:
        assert backfill.poll() is None and time.time() < deadline, "the backfill's runs never reached the raw table"
        time.sleep(0.2)
    tcp_server.restart()  # cuts every session: the blocker's, and both runs' mid-query
    output, _ = backfill.communicate(timeout=300)

    assert backfill.returncode == 0, output
    assert "4 runs" in output and "FAILED" not in output
    events = tcp_server.admin("SELECT dagster_event_type, count(*) FROM event_logs GROUP BY 1", database="dagster")
    events = dict(events)
    assert events.get("STEP_UP_FOR_RETRY", 0) >= 2  # the cut runs were retried by the RetryPolicy
    assert events.get("STEP_SUCCESS", 0) >= 4
    counts = tcp_server.admin(
        "SELECT r.zip_code, r.n, coalesce(c.n, 0), coalesce(q.n, 0) FROM "
        "(SELECT zip_code, count(*) n FROM raw_companies GROUP BY 1) r "
        "LEFT JOIN (SELECT zip_code, count(*) n FROM cleaned_companies GROUP BY 1) c USING (zip_code) "
        "LEFT JOIN (SELECT zip_code, count(*) n FROM cleaned_companies_quarantine GROUP BY 1) q USING (zip_code)",
        database="etl",
    )
    assert len(counts) == raw["zip_code"].nunique() and all(raw == out + held for _, raw, out, held in counts)
    keys = tcp_server.admin("SELECT count(*), count(DISTINCT (zip_code, record_id)) FROM cleaned_companies", database="etl")
    assert keys[0][0] == keys[0][1]  # each row written once


def refuses_connections(url: str) -> bool:
    try:
        psycopg2.connect(url, connect_timeout=2).close()
    except psycopg2.OperationalError:
        return True
    return False


@pytest.mark.parametrize("worker", ["fresh", "warm"])
def test_a_storage_retry_inside_a_run_is_a_warning_in_its_event_log(worker, tcp_server, tmp_path, monkeypatch, caplog):
    """Dagster's storage restarts mid-run and is down for a second while the run logs: dagster-postgres
    retries the connection, the run succeeds, and its event log says so in one warning with the cause
    and the retry count (it used to be only on stderr). A warm run worker's pooled storage connection,
    closed by the restart, is replaced (it used to fail at once: "server closed the connection")."""
    tcp_server.create_role("etl", "etl-pw")
    tcp_server.create_database("dagster", owner="etl")
    url = tcp_server.url("etl", "etl-pw", "dagster")
    for setting in (settings.DATABASE_URL, settings.DAGSTER_DATABASE_URL):
        monkeypatch.setenv(setting, url)
    monkeypatch.setenv(settings.HOME, str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with get_instance():  # Dagster's tables (a warm run worker expects them)
        pass
    monkeypatch.setattr(warm_runs, "_in_run_worker", worker == "warm")

    @dg.op
    def outlives_a_restart(context: dg.OpExecutionContext):
        context.log.info("before the restart")
        down = threading.Thread(target=tcp_server.restart, kwargs={"down_seconds": 1.0})
        down.start()
        deadline = time.time() + 30
        while not refuses_connections(url):
            assert time.time() < deadline, "the server never went down"
            time.sleep(0.05)
        context.log.info("logged while the server was down")
        down.join()

    caplog.set_level(logging.WARNING)
    with get_instance() as instance:
        job = dg.GraphDefinition(name="restart_probe", node_defs=[outlives_a_restart]).to_job()
        result = job.execute_in_process(instance=instance)
        entries = instance.all_logs(result.run_id)

    assert result.success
    retried = [r for r in caplog.records if internals.storage_connection_retry_cause(r) is not None]
    assert retried, "dagster-postgres never retried: the server was not down while the run logged"
    messages = [e.user_message for e in entries]
    assert "logged while the server was down" in messages
    warnings = [e.user_message for e in entries if e.level == logging.WARNING and "retried the connection" in e.user_message]
    assert len(warnings) == 1, messages
    print(warnings[0])
    assert f"dagster-postgres retried the connection {len(retried)} time(s)" in warnings[0]
    assert re.search(r"Cause: \(psycopg2\.OperationalError\) .*(Connection refused|shutting down|starting up)", warnings[0])


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_connection_refused_is_one_line_naming_the_setting(tmp_path):
    url = f"postgresql://etl:hunter2@127.0.0.1:{free_port()}/etl"
    result = cli("seed", "--rows", "10", env=server_env(url, None, tmp_path), timeout=120)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "no PostgreSQL server answers there" in line and "Check ZIP_ETL_DATABASE_URL" in line
    assert "hunter2" not in line and "etl:***@127.0.0.1" in line


def test_wrong_credentials_are_one_line_and_not_retried(tcp_server, tmp_path, monkeypatch):
    tcp_server.create_role("etl", "right-pw")
    tcp_server.create_database("etl", owner="etl")
    url = tcp_server.url("etl", "wrong-pw", "etl")
    line = one_line(cli("seed", "--rows", "10", env=server_env(url, None, tmp_path), timeout=120).stderr)
    assert "the server rejected the credentials" in line and "Check ZIP_ETL_DATABASE_URL" in line
    assert "wrong-pw" not in line

    monkeypatch.setenv(settings.DATABASE_URL, url)  # the same through a Dagster run: a Failure, no retries
    result = dg.materialize([raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
                            resources=pipeline_resources("public"), raise_on_error=False)
    assert not result.success
    description = failure_description(result)
    assert description.startswith("Cannot connect to PostgreSQL at postgresql://etl:***@")
    assert "\n" not in description
    assert retries(result) == 0
    assert "wrong-pw" not in failure_message(result)


def test_missing_raw_table_is_one_line_naming_the_setting(schema):
    result = dg.materialize([raw_companies, cleaned_companies], selection=[cleaned_companies], partition_key="10016",
                            resources=pipeline_resources(schema), raise_on_error=False)
    description = failure_description(result)
    assert description == (
        f"The raw table {schema}.raw_companies does not exist. Load it (`zip-etl seed` for demo data) or point the "
        "component's `source` (its defs.yaml) at it.")
    assert retries(result) == 0


MATERIALIZE_ONE = ["-m", "zip_etl.definitions", "--select", "cleaned_companies", "--partition", "10016"]


def dagster_cli(*args, env, timeout=300):
    """The `dagster` command of this virtualenv, as the README runs it."""
    dagster = Path(sys.executable).parent / "dagster"
    return subprocess.run([str(dagster), *args], cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True)


def storage_error_line(stderr: str) -> str:
    """The one line naming the storage problem; nothing else but Dagster's own notice about its CLI."""
    lines = [line for line in stderr.strip().splitlines()
             if line.strip() and "SupersessionWarning" not in line and "return callback(" not in line]
    assert len(lines) == 1 and "Traceback" not in stderr and "too many retries" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("fault", ["wrong password", "refused port"])
def test_bad_dagster_storage_url_is_one_line_naming_the_setting(fault, etl_url, query, tmp_path):
    """`zip-etl demo` and the README's `dagster asset materialize` with a bad ZIP_ETL_DAGSTER_DATABASE_URL:
    one line (what failed, which setting, password masked) instead of ~14 s of retries and a traceback;
    the demo stops before seeding anything."""
    server = TcpPostgres() if fault == "wrong password" else None
    try:
        if server:
            server.create_role("dagster", "right-pw")
            server.create_database("dagster", owner="dagster")
            dagster_url = server.url("dagster", "wrong-pw", "dagster")
        else:
            dagster_url = f"postgresql://dagster:wrong-pw@127.0.0.1:{free_port()}/dagster"
        env = server_env(etl_url, dagster_url, tmp_path)
        raw_before = query("SELECT to_regclass('public.raw_companies') IS NOT NULL")[0][0] and query(
            "SELECT count(*), max(raw_id) FROM public.raw_companies")

        for command in (lambda: cli("demo", "--reseed", "--zip-codes", "5", env=env, timeout=120),
                        lambda: dagster_cli("asset", "materialize", *MATERIALIZE_ONE, env=env, timeout=120)):
            started = time.monotonic()
            result = command()
            seconds = time.monotonic() - started
            line = storage_error_line(result.stderr)
            print(f"{fault}: {seconds:.1f}s, exit {result.returncode}: {line}")
            assert result.returncode == 2
            assert "Cannot connect to Dagster's storage (PostgreSQL) at postgresql://dagster:***@127.0.0.1:" in line
            assert line.endswith("Check ZIP_ETL_DAGSTER_DATABASE_URL.")
            assert ("the server rejected the credentials" if server else "no PostgreSQL server answers there") in line
            assert "wrong-pw" not in result.stdout + result.stderr
            assert "Generating" not in result.stdout  # nothing seeded first
            assert seconds < 60
        if server:  # one attempt per command, not dagster-postgres's retry loop
            log = (server.data_dir / "log").read_text()
            assert log.count('password authentication failed for user "dagster"') == 2, log
        raw_after = query("SELECT to_regclass('public.raw_companies') IS NOT NULL")[0][0] and query(
            "SELECT count(*), max(raw_id) FROM public.raw_companies")
        assert raw_after == raw_before  # --reseed did not get to replace the raw table
    finally:
        if server:
            server.stop()


def test_seed_checks_the_connection_before_generating_rows(tmp_path):
    url = f"postgresql://etl:hunter2@127.0.0.1:{free_port()}/etl"
    started = time.monotonic()
    result = cli("seed", "--rows", "2000000", env=server_env(url, None, tmp_path), timeout=120)
    seconds = time.monotonic() - started
    assert result.returncode == 2
    assert "no PostgreSQL server answers there" in one_line(result.stderr)
    assert "Generating" not in result.stdout, result.stdout  # 2,000,000 rows were not generated first
    print(f"seed with a refused URL: {seconds:.1f}s")
