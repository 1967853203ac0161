"""`zip-etl check-raw-table`: compare a raw table with the contract zip_etl reads it by (docs/RAW_TABLE.md)."""

from __future__ import annotations

import sys

import click

from zip_etl.db.connection import etl_database_url, redact_url, transaction
from zip_etl.raw_contract import check_raw_table
from zip_etl.tables import RAW_COMPANIES, validate_identifier


@click.command("check-raw-table")
@click.option("--schema", default="public", show_default=True, help="schema of the raw table")
@click.option("--table", "name", default="raw_companies", show_default=True, help="the raw table")
def check_raw_command(schema, name):
    """Check your own raw table against what zip_etl reads (docs/RAW_TABLE.md); read only."""
    raise SystemExit(check_raw(schema, name))


def check_raw(schema: str, name: str, out=sys.stdout) -> int:
    """Print one line per finding; exit status 1 when zip_etl cannot read the table as it is."""
    try:
        table = RAW_COMPANIES.with_name(validate_identifier(schema, "--schema"), validate_identifier(name, "--table"))
    except ValueError as error:
        print(f"zip-etl check-raw-table: {error}", file=sys.stderr)
        return 2
    url = etl_database_url()
    print(f"Checking {table.qualified_name} at {redact_url(url)} against the raw-table contract (docs/RAW_TABLE.md); "
          "read only, nothing is changed:", file=out, flush=True)
    with transaction(url) as cursor:
        cursor.execute("SET TRANSACTION READ ONLY")
        findings = check_raw_table(cursor, table)
    width = max(len(f.subject) for f in findings)
    for finding in findings:
        print(f"  {finding.level:<8} {finding.subject:<{width}}  {finding.message}", file=out)
    problems = sum(f.level == "PROBLEM" for f in findings)
    warnings = sum(f.level == "WARN" for f in findings)
    verdict = "zip_etl can read it" if not problems else "fix the PROBLEM lines before zip_etl reads it"
    print(f"{problems} problem(s), {warnings} warning(s): {verdict}. The statements above are for you to run; "
          "this command changed nothing.", file=out, flush=True)
    return 1 if problems else 0
