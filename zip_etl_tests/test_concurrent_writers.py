"""Two runs that write the same zip codes at once both succeed, and the table ends as one clean build:
the later writer waits for the earlier, then replaces its rows. Runs over other zip codes do not wait."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql

from zip_etl.partitions import ZIP_CODES
from zip_etl.resources import PostgresResource, PostgresWriter
from zip_etl_tests.helpers import seed_raw

ROOT = Path(__file__).resolve().parents[1]


def table_state(query, schema, zip_codes):
    """Each zip code's rows, cleaned and quarantined, as digests: equal states are equal tables."""
    return [
        query(sql.SQL("SELECT zip_code, count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t "
                      "WHERE zip_code = ANY(%s) GROUP BY 1 ORDER BY 1").format(sql.Identifier(schema, name)),
              (list(zip_codes),))
        for name in ("cleaned_companies", "cleaned_companies_quarantine")
    ]


def waiting_on_a_lock(query) -> list:
    return query("SELECT pid FROM pg_stat_activity WHERE application_name = 'zip_etl' AND wait_event_type = 'Lock'")


def test_a_writer_waits_only_for_the_zip_codes_another_holds(schema, etl_url, query):
    """Hold 10016's lock as a running writer would; a write of 10016 waits until it is released, while a
    write of 60614 (other leading digits) goes through at once."""
    seed_raw(etl_url, schema, rows=400, zip_codes=["10016", "60614"], seed=3)
    postgres = PostgresResource(raw_schema=schema)
    writer = PostgresWriter(postgres=postgres, target_schema=schema)

    from zip_etl.partition_stream import PartitionStream

    def write(zip_code, done):
        writer.write(PartitionStream(postgres.raw_snapshot(), [zip_code], 10_000), [zip_code])
        done.set()

    writer.write(PartitionStream(postgres.raw_snapshot(), ["10016"], 10_000), ["10016"])  # tables exist
    holder = psycopg2.connect(etl_url)
    holder_cursor = holder.cursor()
    holder_cursor.execute("SELECT pg_advisory_xact_lock_shared(hashtext(%s), -1), pg_advisory_xact_lock(hashtext(%s), 100)",
                          (f"{schema}.cleaned_companies", f"{schema}.cleaned_companies"))
    blocked, free = threading.Event(), threading.Event()
    threading.Thread(target=write, args=("10016", blocked), daemon=True).start()
    deadline = time.time() + 60
    while not waiting_on_a_lock(query):
        assert time.time() < deadline and not blocked.is_set(), "the writer of 10016 did not wait for its lock"
        time.sleep(0.05)
    threading.Thread(target=write, args=("60614", free), daemon=True).start()
    assert free.wait(60), "a writer of other zip codes waited"
    assert not blocked.is_set()
    holder.rollback()  # the holding "writer" ends: the waiting one goes on
    assert blocked.wait(60)
    holder.close()


def materialize(*args: str, env=None) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "zip_etl.definitions",
         "--select", "cleaned_companies", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={k: v for k, v in (env or os.environ).items() if k != "DAGSTER_HOME"},
    )


@pytest.mark.slow
def test_two_runs_of_one_zip_code_at_once_both_succeed(zip_etl_environment, query):
    seed_raw(zip_etl_environment["etl_url"], "public", rows=3000, zip_codes=["45501"], seed=4)
    runs = [materialize("--partition", "45501"), materialize("--partition", "45501")]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(outputs)
    together = table_state(query, "public", ["45501"])
    alone = materialize("--partition", "45501")
    assert alone.wait(600) == 0
    assert table_state(query, "public", ["45501"]) == together  # the same table as one clean build


RANGE_RUN = """
import sys
from zip_etl.cli.local_runs import materialize_range
from zip_etl.partitions import ZIP_CODES
result = materialize_range(ZIP_CODES[int(sys.argv[1]):int(sys.argv[2])])
print(result)
sys.exit(0 if result.success else 1)
"""


def range_run(start: int, end: int) -> subprocess.Popen:
    """One batched run of ZIP_CODES[start:end], as `zip-etl demo` and the daemon's backfills run them."""
    return subprocess.Popen([sys.executable, "-c", RANGE_RUN, str(start), str(end)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"})


@pytest.mark.slow
def test_two_overlapping_2000_zip_code_runs_both_succeed_and_hold_few_locks(zip_etl_environment, query):
    keys = ZIP_CODES[:3000]
    seed_raw(zip_etl_environment["etl_url"], "public", rows=12_000, zip_codes=keys, seed=5)
    runs = [range_run(0, 2000), range_run(1000, 3000)]
    most_locks = 0
    while any(run.poll() is None for run in runs):
        held = query("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                     "WHERE l.locktype = 'advisory' AND a.application_name = 'zip_etl' GROUP BY l.pid "
                     "ORDER BY 1 DESC LIMIT 1")
        most_locks = max(most_locks, held[0][0] if held else 0)
        time.sleep(0.1)
    outputs = [run.stdout.read() for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(outputs)
    assert 0 < most_locks <= 64, most_locks  # a 2,000-zip-code range: tens of advisory locks, not 2,000
    together = table_state(query, "public", keys)
    alone = [range_run(0, 2000), range_run(2000, 3000)]
    assert [run.wait(900) for run in alone] == [0, 0]
    assert table_state(query, "public", keys) == together
