"""The partitions of every zip-code asset: all active US zip codes, as 5-character strings, sorted.

The order is the lexical order of the codes, which never changes for a given `zipcodes` release,
so backfill ranges (contiguous runs of this order) are stable. Codes are strings from end to end:
`00501` never becomes `501`.
"""

from __future__ import annotations

import dagster as dg
import zipcodes


def active_zip_codes() -> list[str]:
    return sorted({record["zip_code"] for record in zipcodes.list_all() if record["active"]})


ZIP_CODES: list[str] = active_zip_codes()

zip_code_partitions = dg.StaticPartitionsDefinition(ZIP_CODES)
