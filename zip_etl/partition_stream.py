"""A run's zip codes read and cleaned in chunks of bounded size, for the writer to apply in order.

Memory follows `chunk_rows`, not the size of a zip code. From one snapshot of the raw table the run's
zip codes are counted and cut, in partition order, into groups of whole zip codes that hold at most
`chunk_rows` rows; a zip code with more rows than that is a group of its own and streams through in
parts. Each group is read, cleaned (a zip code whose cleaning raises fails alone) and handed on as a
`CleanedChunk`.

The duplicate rule looks across rows (same zip code and normalised record id: the newest update
wins), so a zip code that streams in parts would see only part of its rows at once. It stays exact:
each part is cleaned as usual, and the winners written so far are kept in a compact index of that
zip code's normalised record ids. A later row that beats an earlier winner has the earlier one
deleted from the target (in the same transaction) before it is written; a later row that loses is
not written. Every duplicate loser of the zip code is quarantined at its end, with the raw id that
was finally kept, its original values read back by raw id from the same snapshot. The result is what
one-shot cleaning of all the zip code's rows gives (the differential test proves it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from zip_etl.transform import REJECTION_REASONS, CleaningResult, clean_companies, frame_bytes, partition_stats
from zip_etl.transform.cleaning import duplicate_detail
from zip_etl.transform.isolation import clean_isolating_failures

# Columns of a cleaned row that decide between duplicates.
_ZIP, _KEY, _UPDATED, _ID = "zip_code", "record_id", "source_updated_at", "raw_id"
_STAT_COLUMNS = ["rows_in", "rows_out", *[f"rejected_{r}" for r in REJECTION_REASONS], "rows_rejected"]


@dataclass
class CleanedChunk:
    """One step of a run's writes, to apply in order inside one transaction."""

    replace: list[str] | None = field(default_factory=list)
    """Zip codes whose previous rows are deleted now (before `cleaned` and `rejected` are added); None:
    every row of the table."""
    cleaned: pd.DataFrame | None = None
    rejected: pd.DataFrame | None = None
    superseded: pd.DataFrame | None = None
    """Keys (zip code, record id) of rows written by an earlier chunk of this run that a later
    duplicate replaces: deleted before `cleaned` is added."""
    begins: str | None = None
    """A zip code larger than one chunk starts here: changes from here to `ends` are its alone and are
    undone together if it fails part-way (the writer keeps a savepoint)."""
    ends: str | None = None
    aborts: str | None = None
    """That zip code failed part-way: undo its changes since `begins` (its previous rows come back)."""


def _newer(updated_a, id_a, updated_b, id_b) -> np.ndarray:
    """Does row a win over row b: newer update, ties to the lower raw id (as the transform decides)."""
    return (updated_a > updated_b) | ((updated_a == updated_b) & (id_a < id_b))


def _micros(values: pd.Series) -> np.ndarray:
    return pd.to_datetime(values, utc=True).to_numpy(dtype="datetime64[us]").astype("int64")


class _HashCollision(Exception):
    """Two different record ids gave the same 64-bit hash: the zip code is streamed again with another."""


class _WinnerIndex:
    """A zip code's duplicate winners written so far, 24 bytes each: hash of the normalised record id
    (sorted), update time in microseconds, raw id.

    Equal record ids always have equal hashes, so no duplicate is missed; two different record ids
    with equal hashes (about one chance in 10**6 for 5,000,000 ids) would look like duplicates, so the
    zip code's end checks every pair it decided on against the record ids themselves, and streams the
    zip code again with another hash key if one was wrong.
    """

    def __init__(self, hash_key: str):
        self.hash_key = hash_key
        self.hashes = np.empty(0, dtype="uint64")
        self.updated = np.empty(0, dtype="int64")
        self.raw_ids = np.empty(0, dtype="int64")

    def hash(self, keys: np.ndarray) -> np.ndarray:
        return pd.util.hash_array(keys, hash_key=self.hash_key, categorize=False)

    def find(self, hashes: np.ndarray) -> np.ndarray:
        """Position of each hash in the index, -1 where absent."""
        position = np.searchsorted(self.hashes, hashes)
        found = position < len(self.hashes)
        found[found] = self.hashes[position[found]] == hashes[found]
        return np.where(found, position, -1)

    def insert(self, hashes: np.ndarray, updated: np.ndarray, raw_ids: np.ndarray) -> None:
        order = np.argsort(hashes, kind="stable")
        hashes, updated, raw_ids = hashes[order], updated[order], raw_ids[order]
        if len(hashes) > 1 and (hashes[1:] == hashes[:-1]).any():
            raise _HashCollision  # distinct record ids of one part (the transform deduplicated them)
        at = np.searchsorted(self.hashes, hashes)
        self.hashes = np.insert(self.hashes, at, hashes)
        self.updated = np.insert(self.updated, at, updated)
        self.raw_ids = np.insert(self.raw_ids, at, raw_ids)


class PartitionStream:
    """Iterate to read and clean a run's zip codes; the counts and versions come from the same snapshot.

    `snapshot` is a `zip_etl.db.arrow_io.TableSnapshot` (not yet entered). After iteration: `stats` (per
    zip code that was written), `failures` (zip code -> message), `raw_versions`, timings and sizes.
    """

    def __init__(
        self,
        snapshot,
        zip_codes: Sequence[str],
        chunk_rows: int,
        *,
        clean: Callable[[pd.DataFrame], CleaningResult] = clean_companies,
        id_column: str = "raw_id",
        updated_column: str = "updated_at",
    ):
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        self.snapshot = snapshot
        self.zip_codes = list(zip_codes)
        self.chunk_rows = chunk_rows
        self.clean = clean
        self._id_column, self._updated_column = id_column, updated_column
        self.failures: dict[str, str] = {}
        self.raw_versions: dict[str, str] = {}
        self.unparseable: dict[str, int] = {}
        self.chunks = 0
        self.read_seconds = self.transform_seconds = 0.0
        self.raw_bytes = self.cleaned_bytes = 0
        self._stats: list[pd.DataFrame] = []
        self._adjust: dict[str, int] = {}  # rows moved from cleaned to duplicate, per zip code

    @property
    def duplicates_across_chunks(self) -> int:
        """Duplicates decided between rows of different chunks of one zip code."""
        return sum(self._adjust.values())

    @property
    def stats(self) -> pd.DataFrame:
        """Rows in, out and rejected by reason per zip code that was cleaned, in run order."""
        good = [z for z in self.zip_codes if z not in self.failures]
        if self._stats:
            stats = pd.concat(self._stats).groupby(level=0).sum()
        else:
            stats = pd.DataFrame(columns=_STAT_COLUMNS, dtype="int64")
        stats = stats.reindex(good, fill_value=0).astype("int64")
        for zip_code, moved in self._adjust.items():
            if zip_code in stats.index:
                stats.loc[zip_code, "rows_out"] -= moved
                stats.loc[zip_code, "rejected_duplicate"] += moved
        return stats

    def groups(self, counts: dict[str, int]) -> list[list[str]]:
        """The run's zip codes in order, cut into groups of at most `chunk_rows` rows; a zip code with
        more rows is a group of its own."""
        groups: list[list[str]] = [[]]
        rows = 0
        for key in self.zip_codes:
            n = counts.get(key, 0)
            if groups[-1] and (rows + n > self.chunk_rows or n > self.chunk_rows):
                groups.append([])
                rows = 0
            groups[-1].append(key)
            rows += n
        return [g for g in groups if g]

    def __iter__(self) -> Iterator[CleanedChunk]:
        with self.snapshot as snap:
            started = time.perf_counter()
            counts = snap.counts(self.zip_codes)
            versions = snap.data_versions(self.zip_codes, self._id_column, self._updated_column)
            from zip_etl.tables import EMPTY_RAW_VERSION

            self.raw_versions = {z: versions.get(z, EMPTY_RAW_VERSION) for z in self.zip_codes}
            self.read_seconds += time.perf_counter() - started
            for group in self.groups(counts):
                if counts.get(group[0], 0) > self.chunk_rows:
                    yield from self._large_zip_code(snap, group[0])
                else:
                    yield self._group(snap, group)

    def _read(self, frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        while True:
            started = time.perf_counter()
            frame = next(frames, None)
            self.read_seconds += time.perf_counter() - started
            if frame is None:
                return
            self.raw_bytes += frame_bytes(frame)
            yield frame

    def _count(self, raw: pd.DataFrame, result: CleaningResult) -> None:
        self.chunks += 1
        self._stats.append(partition_stats(raw, result))
        self.cleaned_bytes += frame_bytes(result.cleaned)
        for column, n in result.unparseable.items():
            self.unparseable[column] = self.unparseable.get(column, 0) + n

    def _group(self, snap, group: list[str]) -> CleanedChunk:
        frames = list(self._read(snap.rows(group, self.chunk_rows)))
        raw = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0] if frames else snap.empty_frame()
        started = time.perf_counter()
        result, failures = clean_isolating_failures(raw, group, self.clean)
        self.transform_seconds += time.perf_counter() - started
        self.failures.update(failures)
        good_raw = raw[~raw["zip_code"].isin(list(failures))] if failures else raw
        self._count(good_raw, result)
        return CleanedChunk(
            replace=[z for z in group if z not in failures], cleaned=result.cleaned, rejected=result.rejected
        )

    def _large_zip_code(self, snap, zip_code: str) -> Iterator[CleanedChunk]:
        for attempt in range(3):
            stats_start, unparseable = len(self._stats), dict(self.unparseable)
            begun = False
            try:
                for chunk in self._large_zip_code_once(snap, zip_code, hash_key=f"zip_etl_dedup_{attempt:02d}"):
                    begun = begun or chunk.begins is not None
                    yield chunk
                return
            except _HashCollision:
                del self._stats[stats_start:]
                self.unparseable = unparseable
                if begun:
                    yield CleanedChunk(aborts=zip_code)
        raise RuntimeError(f"zip code {zip_code}: record id hashes collided with three hash keys")

    def _large_zip_code_once(self, snap, zip_code: str, hash_key: str) -> Iterator[CleanedChunk]:
        index = _WinnerIndex(hash_key)
        losers: list[np.ndarray] = []  # raw ids of duplicate losers, quarantined at the end
        losers_of: list[np.ndarray] = []  # the hash of each one's record id
        stats_start, moved, first = len(self._stats), 0, True
        self._adjust[zip_code] = 0
        for raw in self._read(snap.rows([zip_code], self.chunk_rows)):
            started = time.perf_counter()
            try:
                result = self.clean(raw)
            except Exception as error:  # noqa: BLE001 - this zip code fails alone
                self.transform_seconds += time.perf_counter() - started
                self.failures[zip_code] = f"{type(error).__name__}: {error}"
                del self._stats[stats_start:]
                self._adjust.pop(zip_code, None)
                if not first:
                    yield CleanedChunk(aborts=zip_code)
                return
            cleaned, rejected = result.cleaned, result.rejected
            ids = cleaned[_ID].to_numpy(dtype="int64")
            hashes = index.hash(cleaned[_KEY].to_numpy(dtype=object))
            updated = _micros(cleaned[_UPDATED])

            # Duplicates decided inside this part wait until their record id's winner is final.
            is_dup = (rejected["reason"] == "duplicate").to_numpy()
            kept_ids = pd.Series(result.duplicate_kept_raw_id, dtype="Int64").to_numpy(dtype="int64", na_value=-1)[is_dup]
            losers.append(rejected[_ID].to_numpy(dtype="int64")[is_dup])
            losers_of.append(hashes[pd.Index(ids).get_indexer(kept_ids)])
            rejected = rejected[~is_dup]

            # This part's winners against the earlier parts' winners.
            position = index.find(hashes)
            seen = position >= 0
            at = position[seen]
            wins = _newer(updated[seen], ids[seen], index.updated[at], index.raw_ids[at])
            old_loses, new_loses = np.zeros(len(ids), dtype=bool), np.zeros(len(ids), dtype=bool)
            old_loses[np.flatnonzero(seen)[wins]] = True
            new_loses[np.flatnonzero(seen)[~wins]] = True
            superseded = pd.DataFrame({_ZIP: zip_code, _KEY: cleaned[_KEY].to_numpy(dtype=object)[old_loses]})
            losers += [index.raw_ids[position[old_loses]], ids[new_loses]]
            losers_of += [hashes[old_loses], hashes[new_loses]]
            index.updated[position[old_loses]] = updated[old_loses]
            index.raw_ids[position[old_loses]] = ids[old_loses]
            index.insert(hashes[~seen], updated[~seen], ids[~seen])
            moved += int(seen.sum())
            self._adjust[zip_code] = moved
            cleaned = cleaned[~new_loses]
            self.transform_seconds += time.perf_counter() - started
            self._count(raw, result)
            yield CleanedChunk(
                replace=[zip_code] if first else [],
                begins=zip_code if first else None,
                cleaned=cleaned.reset_index(drop=True),
                rejected=rejected.reset_index(drop=True),
                superseded=superseded,
            )
            first = False
        if first:  # no rows after all (deleted since they were counted? the snapshot says no)
            yield CleanedChunk(replace=[zip_code])
            return
        loser_ids = np.concatenate(losers)
        winner_ids = index.raw_ids[index.find(np.concatenate(losers_of))]
        yield from self._quarantine_losers(snap, zip_code, loser_ids, winner_ids)

    def _quarantine_losers(self, snap, zip_code, loser_ids: np.ndarray, winner_ids: np.ndarray) -> Iterator[CleanedChunk]:
        """Duplicate losers of a zip code that streamed in parts, with the raw id finally kept; first
        checks every (loser, winner) pair against the normalised record ids themselves."""
        from zip_etl.transform.cleaning import normalize_record_ids

        kept = pd.Series(winner_ids, index=loser_ids)
        step = max(1, self.chunk_rows // 2)
        for start in range(0, len(loser_ids), step):
            part = loser_ids[start : start + step]
            rows = snap.rows_by_id(self._id_column, np.concatenate([part, np.unique(kept[part].to_numpy())]).tolist())
            key = pd.Series(normalize_record_ids(rows["record_id"]).to_numpy(dtype=object),
                            index=rows[self._id_column].to_numpy(dtype="int64"))
            key = key[~key.index.duplicated()]
            if (key.reindex(part).to_numpy(dtype=object) != key.reindex(kept[part].to_numpy()).to_numpy(dtype=object)).any():
                raise _HashCollision
            rows = rows[rows[self._id_column].isin(part)]
            winners = rows[self._id_column].astype("int64").map(kept).astype("int64")
            yield CleanedChunk(rejected=rows.assign(
                reason="duplicate",
                detail=duplicate_detail_column(winners),
            ).reset_index(drop=True))
        yield CleanedChunk(ends=zip_code)


def duplicate_detail_column(kept_raw_ids: pd.Series) -> pd.Series:
    """`duplicate_detail` for many rows at once."""
    return kept_raw_ids.map(duplicate_detail)
