"""The partitions of every zip-code asset: all active US zip codes, as 5-character strings, sorted.

The order is the lexical order of the codes, which never changes for a given `zipcodes` release,
so backfill ranges (contiguous runs of this order) are stable. Codes are strings from end to end:
`00501` never becomes `501`.
"""

from __future__ import annotations

import contextlib
import os

import dagster as dg
import zipcodes


def _zip_codes_from_package() -> list[str]:
    return sorted({record["zip_code"] for record in zipcodes.list_all() if record["active"]})


def zip_codes_cache_path():
    from zip_etl import settings

    return settings.home() / "cache" / f"active_zip_codes-zipcodes-{zipcodes.__version__}.txt"


def active_zip_codes() -> list[str]:
    """Every active zip code, sorted, from the `zipcodes` package, cached on disk per release.

    Every process that loads the definitions needs them (the code server, each run worker), and
    `zipcodes` builds all 42,789 of its records as dicts to answer: about 0.7 s per process here
    (docs/BENCHMARKS.md), against milliseconds for reading the cached list. The cache file (first
    line: the count) is written atomically; a missing, unreadable or inconsistent one is rebuilt.
    """
    path = zip_codes_cache_path()
    with contextlib.suppress(OSError, ValueError):
        count, *keys = path.read_text(encoding="ascii").split()
        if int(count) == len(keys) > 0:
            return keys
    keys = _zip_codes_from_package()
    with contextlib.suppress(OSError):  # a read-only state folder just means no cache
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text("\n".join([str(len(keys)), *keys]) + "\n", encoding="ascii")
        os.replace(partial, path)
    return keys


class ZipCodePartitionsDefinition(dg.StaticPartitionsDefinition):
    """A StaticPartitionsDefinition whose key lookups are O(1).

    Dagster's base class answers `has_partition_key` and key ranges by scanning the key list and
    hashes itself by its repr (all 41,749 keys), and a batched run looks keys up once per partition:
    runs late in the partition order were slower than early ones (docs/BENCHMARKS.md). Same keys,
    same order, same serialized form, and the webserver's plain StaticPartitionsDefinition built from
    the snapshot answers the same (the contract test compares them); only the lookups are faster.
    """

    def __init__(self, partition_keys: list[str]):
        super().__init__(partition_keys)
        self._positions = {key: i for i, key in enumerate(partition_keys)}
        self._hash: int | None = None

    def has_partition_key(self, partition_key: str) -> bool:
        return partition_key in self._positions

    def get_partition_keys_in_range(self, partition_key_range: dg.PartitionKeyRange) -> list[str]:
        start = self._positions.get(partition_key_range.start)
        end = self._positions.get(partition_key_range.end)
        if start is None or end is None:
            raise dg.DagsterInvalidInvocationError(self._not_partitions_message(partition_key_range))
        return list(self.get_partition_keys()[start : end + 1])

    def _not_partitions_message(self, partition_key_range: dg.PartitionKeyRange) -> str:
        """One sentence naming each key that is not a partition once (a one-partition run is the
        range from a key to itself), and what partition keys look like."""
        unknown = list(dict.fromkeys(
            k for k in (partition_key_range.start, partition_key_range.end) if k not in self._positions
        ))
        keys = self.get_partition_keys()
        what = (
            f"{len(keys):,} active US zip codes, as 5-digit strings from {keys[0]} to {keys[-1]}"
            if keys else "no partitions"
        )
        which = " and ".join(repr(k) for k in unknown)
        if partition_key_range.start == partition_key_range.end:
            return f"{which} is not a partition key: the partitions are the {what}."
        return (
            f"The partition range {partition_key_range.start!r} to {partition_key_range.end!r} is not valid: "
            f"{which} {'is not a partition key' if len(unknown) == 1 else 'are not partition keys'}; the partitions "
            f"are the {what}."
        )

    def __hash__(self):
        if self._hash is None:
            self._hash = super().__hash__()
        return self._hash


def first_zip_codes(count: int | None) -> list[str]:
    """The first `count` zip codes in partition order (all of them when None): what `--zip-codes N`
    means for every command that takes it, so `seed --zip-codes N` and `demo --zip-codes N` agree."""
    if count is not None and count < 1:
        raise ValueError(f"--zip-codes must be at least 1, got {count}")
    return ZIP_CODES if count is None else ZIP_CODES[:count]


def partition_ranges(
    keys: list[str], max_partitions: int, rows_per_key: dict[str, int] | None = None, max_rows: int | None = None
) -> list[list[str]]:
    """Split `keys` (in partition order) into contiguous runs of at most `max_partitions` zip codes
    and, when row counts are given, at most `max_rows` rows (a zip code larger than that runs alone)."""
    ranges: list[list[str]] = [[]]
    rows = 0
    for key in keys:
        n = rows_per_key.get(key, 0) if rows_per_key else 0
        full = len(ranges[-1]) >= max_partitions or (max_rows is not None and rows + n > max_rows)
        if ranges[-1] and full:
            ranges.append([])
            rows = 0
        ranges[-1].append(key)
        rows += n
    return [r for r in ranges if r]


ZIP_CODES: list[str] = active_zip_codes()

zip_code_partitions = ZipCodePartitionsDefinition(ZIP_CODES)
