"""The zip-etl CLI and the PostgreSQL-backed Dagster instance it shares with `dagster dev`."""

import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from zip_etl.instance import ZipEtlEventLogStorage, ZipEtlRunStorage, get_instance
from zip_etl.partitions import ZIP_CODES


def zip_etl(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "zip_etl.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


def test_instance_stores_runs_in_postgres(zip_etl_environment):
    with get_instance() as instance:
        assert isinstance(instance.run_storage, ZipEtlRunStorage)
        assert isinstance(instance.event_log_storage, ZipEtlEventLogStorage)
        assert "postgresql+psycopg2://" in instance.run_storage.postgres_url


@pytest.mark.slow
def test_seed_then_demo_materializes_every_requested_zip_code(zip_etl_environment, query):
    # As on a fresh database: other tests of the session (the warm-run ones) build zip codes in public.
    query("DROP TABLE IF EXISTS public.cleaned_companies, public.cleaned_companies_quarantine, "
          "public.cleaned_companies_partitions")
    seeded = zip_etl("seed", "--rows", "4000")
    assert seeded.returncode == 0, seeded.stderr
    assert query("SELECT count(*) FROM public.raw_companies")[0][0] == 4000
    assert query("SELECT count(*) FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'raw_companies' AND indexdef LIKE '%zip_code%'")[0][0] == 1

    demo = zip_etl("demo", "--zip-codes", "300", "--partitions-per-run", "100", "--workers", "2")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "[3/3 runs, 300/300 zip codes" in demo.stdout
    assert "zip codes done:   300 of 300 (0 failed)" in demo.stdout

    # Every one of the 300 zip codes: each raw row cleaned or quarantined, none beyond them touched,
    # and each one materialized in Dagster.
    first = ZIP_CODES[:300]
    raw = dict(query("SELECT zip_code, count(*) FROM public.raw_companies WHERE zip_code = ANY(%s) GROUP BY 1", (first,)))
    out = dict(query("SELECT zip_code, count(*) FROM public.cleaned_companies GROUP BY 1"))
    held = dict(query("SELECT zip_code, count(*) FROM public.cleaned_companies_quarantine GROUP BY 1"))
    assert set(out) | set(held) <= set(first) and raw
    assert {z: out.get(z, 0) + held.get(z, 0) for z in first} == {z: raw.get(z, 0) for z in first}
    with get_instance() as instance:
        assert instance.get_materialized_partitions(dg.AssetKey("cleaned_companies")) >= set(first)


@pytest.mark.slow
def test_seed_and_demo_mean_the_same_zip_codes(zip_etl_environment, query):
    """`seed --zip-codes N` then `demo --zip-codes N` builds every seeded row (issue: they meant two sets)."""
    assert zip_etl("seed", "--rows", "2000", "--zip-codes", "40").returncode == 0
    assert query("SELECT count(DISTINCT zip_code), max(zip_code) FROM public.raw_companies")[0][1] <= ZIP_CODES[39]
    demo = zip_etl("demo", "--zip-codes", "40", "--workers", "2")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    built = query("SELECT (SELECT count(*) FROM public.cleaned_companies WHERE zip_code = ANY(%s)) + "
                  "(SELECT count(*) FROM public.cleaned_companies_quarantine WHERE zip_code = ANY(%s))",
                  (ZIP_CODES[:40], ZIP_CODES[:40]))[0][0]
    assert built == 2000


@pytest.mark.slow
def test_debug_demo_writes_nothing(zip_etl_environment, query):
    seeded = zip_etl("seed", "--rows", "3000")
    assert seeded.returncode == 0, seeded.stderr
    if query("SELECT to_regclass('public.cleaned_companies') IS NOT NULL")[0][0]:
        query("DROP TABLE public.cleaned_companies")
    demo = zip_etl("demo", "--debug", "--zip-codes", "200", "--partitions-per-run", "100", "--workers", "2")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Debug mode" in demo.stdout and "zip codes done:   200 of 200 (0 failed)" in demo.stdout
    raw_rows = query("SELECT count(*) FROM public.raw_companies WHERE zip_code <= %s", (ZIP_CODES[199],))[0][0]
    assert f"rows in:          {raw_rows:,}" in demo.stdout
    assert query("SELECT to_regclass('public.cleaned_companies') IS NULL")[0][0]  # nothing created
    rows_out = int(re.search(r"rows out: +([\d,]+)", demo.stdout).group(1).replace(",", ""))
    assert "public.cleaned_companies (does not exist yet: every cleaned row would appear)" in demo.stdout
    assert f"rows would appear:            {rows_out:,}\n" in demo.stdout


def table_fingerprint(query, table: str):
    return query(f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {table} t")[0]


@pytest.mark.slow
def test_debug_demo_summarizes_what_a_write_would_change(zip_etl_environment, query):
    """Built, then the stored rows edited as if older rules had built them: `zip-etl demo --debug`
    prints what a write would change, and leaves both tables as they were."""
    assert zip_etl("seed", "--rows", "3000", "--zip-codes", "200").returncode == 0
    built = zip_etl("demo", "--zip-codes", "200", "--partitions-per-run", "100", "--workers", "2")
    assert built.returncode == 0, built.stdout + built.stderr
    first = ZIP_CODES[:200]
    (city_zip, city_record, city), (gone_zip, gone_record) = [
        row[:3] if i == 0 else row[:2] for i, row in enumerate(query(
            "SELECT zip_code, record_id, city FROM public.cleaned_companies WHERE zip_code = ANY(%s) "
            "AND city IS NOT NULL ORDER BY zip_code, record_id LIMIT 2", (first,)))]
    query("UPDATE public.cleaned_companies SET city = 'Old City' WHERE zip_code = %s AND record_id = %s",
          (city_zip, city_record))
    query("DELETE FROM public.cleaned_companies WHERE zip_code = %s AND record_id = %s", (gone_zip, gone_record))
    rejected_zip, rejected_raw_id, reason = query(
        "SELECT zip_code, raw_values->>'raw_id', reason FROM public.cleaned_companies_quarantine "
        "WHERE zip_code = ANY(%s) ORDER BY zip_code, (raw_values->>'raw_id')::bigint LIMIT 1", (first,))[0]
    old_reason = "duplicate" if reason != "duplicate" else "zip_mismatch"
    query("UPDATE public.cleaned_companies_quarantine SET reason = %s WHERE zip_code = %s AND raw_values->>'raw_id' = %s",
          (old_reason, rejected_zip, rejected_raw_id))
    tables = ("public.cleaned_companies", "public.cleaned_companies_quarantine")
    before = [table_fingerprint(query, t) for t in tables]

    demo = zip_etl("demo", "--debug", "--zip-codes", "200", "--partitions-per-run", "100", "--workers", "2")

    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert [table_fingerprint(query, t) for t in tables] == before
    out = demo.stdout
    assert "compared with public.cleaned_companies and public.cleaned_companies_quarantine" in out
    assert f"zip codes changed:            {len({city_zip, gone_zip, rejected_zip})} of 200\n" in out
    assert "rows would appear:            1\n" in out
    assert "rows would disappear:         0\n" in out
    assert "rows would change:            1 (city 1)\n" in out
    assert "newly rejected:               0\n" in out
    assert "no longer rejected:           0\n" in out
    assert "rejected for another reason:  1\n" in out
    examples = out.split("first examples", 1)[1].splitlines()[1:]
    assert sorted(e.strip() for e in examples if e.strip()) == sorted([
        f"{gone_zip}/{gone_record}: would appear",
        f"{city_zip}/{city_record}: city 'Old City' -> {city!r}",
        f"{rejected_zip}/raw_id {rejected_raw_id}: reason {old_reason!r} -> {reason!r}",
    ])


def test_bad_database_url_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("ZIP_ETL_DATABASE_URL", "postgresql://etl:s3cret@127.0.0.1:1/zip_etl")
    result = subprocess.run(
        [sys.executable, "-m", "zip_etl.cli.main", "seed", "--rows", "10"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "Cannot connect to PostgreSQL at postgresql://etl:***@127.0.0.1:1/zip_etl" in result.stderr
    assert "ZIP_ETL_DATABASE_URL" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


ROOT = Path(__file__).resolve().parents[1]


def quarantine_examples(path: Path) -> list[str]:
    """The SQL statements of a document's ```sql blocks that read the quarantine, as a user copies them."""
    blocks = re.findall(r"```sql\n(.*?)```", path.read_text(), re.S)
    statements = []
    for block in blocks:
        text = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("--"))
        statements += [s.strip() for s in text.split(";") if "cleaned_companies_quarantine" in s and
                       s.strip().upper().startswith("SELECT")]
    return statements


@pytest.mark.slow
def test_the_documented_quarantine_queries_return_rows_on_the_demo_data(zip_etl_environment, query):
    """README's and RELIABILITY's example queries, on `zip-etl demo`'s data (the default 1,000,000 rows,
    the first 300 zip codes materialized), each return rows: no example that shows nothing."""
    for table in ("cleaned_companies", "cleaned_companies_quarantine"):
        if query(f"SELECT to_regclass('public.{table}') IS NOT NULL")[0][0]:
            query(f"TRUNCATE public.{table}")
    demo = zip_etl("demo", "--reseed", "--zip-codes", "300")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    examples = quarantine_examples(ROOT / "docs" / "USING.md") + quarantine_examples(ROOT / "docs" / "RELIABILITY.md")
    assert len(examples) >= 3, examples
    for statement in examples:
        rows = query(statement)
        print(f"{statement}: {len(rows)} row(s)")
        assert rows, f"no rows on the demo data: {statement}"


@pytest.mark.slow
def test_sizing_measures_a_run_process_and_recommends_runs(zip_etl_environment, query):
    """`zip-etl sizing` reads and cleans real chunks in fresh processes: each sample's peak is above its
    baseline (its own high-water mark, not its parent's), and the recommendation follows from them."""
    assert zip_etl("seed", "--rows", "60000", "--zip-codes", "300").returncode == 0
    sized = zip_etl("sizing", "--samples", "2", "--chunk-rows", "5000", "--memory-gb", "2")
    assert sized.returncode == 0, sized.stdout + sized.stderr
    samples = re.findall(r"^(range|largest zip code)\s+([\d,]+)\s+([\d,]+)\s+(\d+)\s+(\d+)\s+(\d+)$", sized.stdout, re.M)
    assert len(samples) == 3, sized.stdout
    for label, _zip_codes, rows, chunks, baseline, peak in samples:
        # a range sample runs several chunks through the threads, as a run holds them at once
        assert int(rows.replace(",", "")) > 0 and int(chunks) >= (3 if label == "range" else 1), sized.stdout
        assert 50 < int(baseline) < int(peak) < 2000, sized.stdout
    fits = int(re.search(r"^(\d+) fit in 2 GB", sized.stdout, re.M).group(1))
    assert abs(fits - 2 * 1024 / max(int(s[5]) for s in samples)) <= 1, sized.stdout
    assert re.search(r"^Recommended concurrent runs: \d+", sized.stdout, re.M)

