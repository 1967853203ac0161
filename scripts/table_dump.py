"""Dump the demo's tables in a fixed order, to compare two builds row for row.

    ZIP_ETL_HOME=/tmp/before python scripts/table_dump.py /tmp/before-dump
    ZIP_ETL_HOME=/tmp/after  python scripts/table_dump.py /tmp/after-dump
    diff -r /tmp/before-dump /tmp/after-dump && echo identical

Writes one text COPY file per table (raw, cleaned, quarantine, partition counts) ordered by a key
that makes the order total, and prints each file's rows and md5. The partition counts' `written_at`
(when the row was written) is left out: it differs between any two builds.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from psycopg2 import sql

from zip_etl.db.connection import connect, etl_database_url
from zip_etl.tables import CLEANED_COMPANIES, CLEANED_TARGET, RAW_COMPANIES

QUARANTINE = CLEANED_TARGET.quarantine
COUNTS = CLEANED_TARGET.counts

# table -> (columns dumped, ORDER BY)
DUMPS = {
    RAW_COMPANIES: (RAW_COMPANIES.column_names, "raw_id"),
    CLEANED_COMPANIES: (CLEANED_COMPANIES.column_names, "zip_code, record_id"),
    QUARANTINE: (QUARANTINE.column_names, "zip_code, (raw_values->>'raw_id')::bigint, reason, detail, raw_values::text"),
    COUNTS: ([c for c in COUNTS.column_names if c != "written_at"], "zip_code"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    conn = connect(etl_database_url())
    try:
        with conn, conn.cursor() as cursor:
            for table, (columns, order) in DUMPS.items():
                query = sql.SQL("COPY (SELECT {} FROM {} ORDER BY {}) TO STDOUT").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)), table.identifier, sql.SQL(order))
                path = args.directory / f"{table.name}.tsv"
                with path.open("wb") as out:
                    cursor.copy_expert(query, out)
                data = path.read_bytes()
                rows = data.count(b"\n")
                print(f"{table.qualified_name}: {rows:,} rows, md5 {hashlib.md5(data).hexdigest()}")
    finally:
        conn.close()


if __name__ == "__main__":
    main()
