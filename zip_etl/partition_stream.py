"""A run's zip codes read and cleaned in chunks of bounded size, for the writer to apply in order.

Memory follows `chunk_rows`, not the size of a zip code. The run's rows come from one snapshot of the
raw table in one binary COPY ordered by zip code (`TableSnapshot.batches_by_zip_code`), read by a
thread of their own while this one cleans (the driver decodes without the GIL). As they come they are
cut, in order, into groups of whole zip codes holding at most `chunk_rows` rows; a zip code with more
rows than that is a group of its own and streams through in parts. Each zip code's row count and raw
data version come from the same rows (zip_etl/raw_versions.py), not from other passes over the table.
Each group is cleaned (a zip code whose cleaning raises fails alone) and handed on as a `CleanedChunk`.

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

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from zip_etl.raw_versions import StreamedVersion, zip_code_versions
from zip_etl.tables import EMPTY_RAW_VERSION
from zip_etl.transform import REJECTION_REASONS, CleaningResult, clean_companies, frame_bytes, partition_stats
from zip_etl.transform.cleaning import duplicate_detail
from zip_etl.transform.isolation import clean_isolating_failures

# Columns of a cleaned row that decide between duplicates (clean_companies' duplicate rule).
_ZIP, _KEY, _UPDATED, _ID = "zip_code", "record_id", "source_updated_at", "raw_id"


@dataclass
class CleanedChunk:
    """One step of a run's writes, to apply in order inside one transaction."""

    replace: list[str] = field(default_factory=list)
    """Zip codes whose previous rows are deleted now (before `cleaned` and `rejected` are added)."""
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
    if isinstance(values.dtype, pd.ArrowDtype):  # the cleaned frame's timestamps, without a detour through pandas
        return pc.cast(pc.cast(pa.array(values), pa.timestamp("us", tz="UTC")), pa.int64()).to_numpy(zero_copy_only=False)
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


@dataclass
class _Group:
    """Whole zip codes read, to clean together: their rows, and each one's raw data version."""

    zip_codes: list[str]
    raw: pd.DataFrame | None
    versions: dict[str, str | None]


@dataclass
class _Part:
    """Rows of a zip code larger than a chunk; the last part carries its version."""

    zip_code: str
    raw: pd.DataFrame | None
    first: bool
    last: bool
    version: StreamedVersion | None = None


@dataclass
class _Failed:
    error: BaseException


_END = object()


class PartitionStream:
    """Iterate to read and clean a run's zip codes; the counts and versions come from the rows read.

    `snapshot` is a `zip_etl.db.snapshot.TableSnapshot` (not yet entered). After iteration: `stats` (per
    zip code that was written), `failures` (zip code -> message), `raw_versions`, timings and sizes.
    `read_seconds` is the reading thread's busy time, which overlaps `transform_seconds`.

    `clean` is the transform (a frame of raw rows in, a `CleaningResult` out); `stats` has a
    `rejected_<reason>` column per one of `rejection_reasons` (None: per reason rows were rejected for).
    `settle_duplicates`: `clean` is clean_companies (or wraps it), whose duplicate rule the stream
    settles across the parts of a zip code larger than a chunk (see the module's docstring); any other
    transform cleans such a zip code's parts one at a time, each on its own.
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
        rejection_reasons: Sequence[str] | None = REJECTION_REASONS,
        settle_duplicates: bool = True,
    ):
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        self.snapshot = snapshot
        self.zip_codes = list(dict.fromkeys(zip_codes))
        self.chunk_rows = chunk_rows
        self.clean = clean
        self._id_column, self._updated_column = id_column, updated_column
        self._reasons = list(rejection_reasons) if rejection_reasons is not None else None
        self._settle_duplicates = settle_duplicates
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
        stats = pd.concat(self._stats).groupby(level=0).sum() if self._stats else pd.DataFrame(dtype="int64")
        reasons = self._reasons if self._reasons is not None else sorted(
            c.removeprefix("rejected_") for c in stats.columns if c.startswith("rejected_"))
        columns = ["rows_in", "rows_out", *[f"rejected_{r}" for r in reasons], "rows_rejected"]
        stats = stats.reindex(index=good, columns=columns, fill_value=0).fillna(0).astype("int64")
        for zip_code, moved in self._adjust.items():
            if zip_code in stats.index:
                stats.loc[zip_code, "rows_out"] -= moved
                stats.loc[zip_code, "rejected_duplicate"] += moved
        return stats

    def __iter__(self) -> Iterator[CleanedChunk]:
        versions: dict[str, str | None] = {}
        with self.snapshot as snap:
            items = self._read_ahead(snap)
            try:
                for item in items:
                    if isinstance(item, _Group):
                        versions.update(item.versions)
                        yield self._group(snap, item)
                    else:
                        yield from self._large_zip_code(snap, item, items, versions)
            finally:
                items.close()
        self.raw_versions = {z: versions.get(z, EMPTY_RAW_VERSION) for z in self.zip_codes}

    def raw_frames(self) -> Iterator[pd.DataFrame]:
        """The run's raw rows as this stream reads them (its reading thread, the same groups and parts,
        each zip code's version recorded in `raw_versions`), without cleaning them: what reading alone
        costs (`zip-etl bench` measures it against a plain read)."""
        versions: dict[str, str | None] = {}
        with self.snapshot as snap:
            for item in self._read_ahead(snap):
                if isinstance(item, _Group):
                    versions.update(item.versions)
                elif item.last:
                    versions[item.zip_code] = item.version.version()
                if item.raw is not None:
                    yield item.raw
        self.raw_versions = {z: versions.get(z, EMPTY_RAW_VERSION) for z in self.zip_codes}

    # --- reading, in a thread of its own ---

    def _read_ahead(self, snap) -> Iterator[_Group | _Part]:
        """The groups and parts `_regroup` cuts, made by a reading thread at most one ahead of the
        caller (so memory stays a few chunks); its errors are raised here."""
        handoff: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    handoff.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                for item in self._regroup(snap):
                    if not put(item):
                        return
                put(_END)
            except BaseException as error:  # noqa: BLE001 - raised in the caller's thread
                put(_Failed(error))

        reader = threading.Thread(target=read, name="zip_etl-reader", daemon=True)
        reader.start()
        try:
            while True:
                item = handoff.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            stop.set()
            while reader.is_alive():  # a read waiting on the server stops when its statement is cancelled
                snap.cancel()
                reader.join(0.5)

    def _regroup(self, snap) -> Iterator[_Group | _Part]:
        """Cut the run's rows, in zip-code order, into what `__iter__` cleans: groups of whole zip codes
        of at most `chunk_rows` rows, taken greedily in order, and a zip code with more rows than that
        in parts of `chunk_rows` rows. A zip code without rows is in the last group.

        The rows not yet handed on wait in `pending`, whole record batches (a group is cut from them
        where it ends, not zip code by zip code, so its frame has a few chunks, not one per zip code);
        each zip code costs a few integer operations here."""
        limit = self.chunk_rows
        pending: list[pa.RecordBatch] = []  # rows not handed on: the group's, then the open zip code's, then later ones
        group: list[str] = []
        group_rows = 0
        open_zip: str | None = None
        open_rows = 0
        large: StreamedVersion | None = None  # the open zip code streams in parts
        first_part = True
        seen: set[str] = set()
        started = time.perf_counter()

        def hand_on(rows: int) -> list[pa.RecordBatch]:
            nonlocal pending
            taken, pending = _take(pending, rows), _drop(pending, rows)
            return taken

        def emit_group() -> _Group:
            nonlocal group, group_rows
            batches = hand_on(group_rows)
            item = _Group(group, self._frame(snap, batches) if batches else None, self._versions(batches))
            group, group_rows = [], 0
            return item

        def emit_part(rows: int, last: bool) -> _Part:
            nonlocal first_part, open_rows
            batches = hand_on(rows)
            item = _Part(open_zip, self._frame(snap, batches) if batches else None, first_part, last,
                         large if last else None)
            first_part = False
            open_rows -= rows
            return item

        for batch in snap.batches_by_zip_code(self.zip_codes):
            pending.append(batch)
            for zip_code, begin, rows in _runs(batch, snap.table.partition_column):
                if zip_code != open_zip:
                    if open_zip is not None:  # the open zip code is complete
                        if large is not None:
                            self.read_seconds += time.perf_counter() - started
                            yield emit_part(open_rows, last=True)
                            started = time.perf_counter()
                            large, first_part = None, True
                        else:
                            if group and group_rows + open_rows > limit:
                                self.read_seconds += time.perf_counter() - started
                                yield emit_group()
                                started = time.perf_counter()
                            group.append(open_zip)
                            group_rows += open_rows
                    if zip_code in seen:
                        raise RuntimeError(f"the rows of zip code {zip_code} did not come together: the raw table's "
                                           "zip-code order is not the run's (a nondeterministic collation?)")
                    seen.add(zip_code)
                    open_zip, open_rows = zip_code, 0
                open_rows += rows
                if large is None and open_rows > limit:  # larger than a chunk: it streams in parts from here
                    if group:
                        self.read_seconds += time.perf_counter() - started
                        yield emit_group()
                        started = time.perf_counter()
                    large = StreamedVersion()
                    for earlier in _take(pending, open_rows):  # its rows so far, at the front now
                        large.add(earlier.column(self._id_column), earlier.column(self._updated_column))
                elif large is not None:
                    piece = batch.slice(begin, rows)
                    large.add(piece.column(self._id_column), piece.column(self._updated_column))
                while large is not None and open_rows >= limit:
                    self.read_seconds += time.perf_counter() - started
                    yield emit_part(limit, last=False)
                    started = time.perf_counter()
        if large is not None:
            yield emit_part(open_rows, last=True)
        elif open_zip is not None:
            if group and group_rows + open_rows > limit:
                yield emit_group()
            group.append(open_zip)
            group_rows += open_rows
        if group:
            yield emit_group()
        missing = [z for z in self.zip_codes if z not in seen]
        self.read_seconds += time.perf_counter() - started
        if missing:
            yield _Group(missing, None, {})

    def _frame(self, snap, batches: list[pa.RecordBatch]) -> pd.DataFrame:
        frame = snap.frame(batches)
        self.raw_bytes += frame_bytes(frame)
        return frame

    def _versions(self, batches: list[pa.RecordBatch]) -> dict[str, str | None]:
        if not batches:
            return {}
        column = (lambda name: pa.chunked_array([b.column(name) for b in batches]))  # noqa: E731
        return zip_code_versions(column(self.snapshot.table.partition_column).combine_chunks(),
                                 column(self._id_column), column(self._updated_column))

    # --- cleaning, in the caller's thread ---

    def _count(self, raw: pd.DataFrame, result: CleaningResult) -> None:
        self.chunks += 1
        self._stats.append(partition_stats(raw, result, self.snapshot.table.partition_column, self._reasons))
        self.cleaned_bytes += frame_bytes(result.cleaned)
        for column, n in result.unparseable.items():
            self.unparseable[column] = self.unparseable.get(column, 0) + n

    def _group(self, snap, item: _Group) -> CleanedChunk:
        raw = item.raw if item.raw is not None else snap.empty_frame()
        group = item.zip_codes
        started = time.perf_counter()
        partition_column = self.snapshot.table.partition_column
        result, failures = clean_isolating_failures(raw, group, self.clean, partition_column)
        self.transform_seconds += time.perf_counter() - started
        self.failures.update(failures)
        good_raw = raw[~raw[partition_column].isin(list(failures))] if failures else raw
        self._count(good_raw, result)
        return CleanedChunk(
            replace=[z for z in group if z not in failures], cleaned=result.cleaned, rejected=result.rejected
        )

    def _large_zip_code(self, snap, first: _Part, items: Iterator, versions: dict) -> Iterator[CleanedChunk]:
        """A zip code larger than a chunk, from its first part on. Its parts come from the run's
        stream; if its record ids' hashes collide, it is read again (through `snap.side`) and
        streamed with another hash key."""
        zip_code = first.zip_code

        def streamed_parts() -> Iterator[pd.DataFrame]:
            part = first
            while True:
                if part.raw is not None:
                    yield part.raw
                if part.last:
                    versions[zip_code] = part.version.version()
                    return
                part = next(items)
                assert isinstance(part, _Part) and part.zip_code == zip_code, "a zip code's parts came apart"

        parts = streamed_parts()
        if not self._settle_duplicates:
            yield from self._large_zip_code_in_parts(zip_code, parts)
            for _ in parts:  # a zip code that failed to clean is not read further, but its version is
                pass
            return
        for attempt in range(3):
            stats_start, unparseable = len(self._stats), dict(self.unparseable)
            begun = False
            try:
                for chunk in self._large_zip_code_once(snap, zip_code, parts, hash_key=f"zip_etl_dedup_{attempt:02d}"):
                    begun = begun or chunk.begins is not None
                    yield chunk
                for _ in parts:  # a zip code that failed to clean is not read further, but its version is
                    pass
                return
            except _HashCollision:
                del self._stats[stats_start:]
                self.unparseable = unparseable
                if begun:
                    yield CleanedChunk(aborts=zip_code)
                for _ in parts:  # the rest of the run's stream goes on past this zip code
                    pass
                parts = snap.side.rows([zip_code], self.chunk_rows)
        raise RuntimeError(f"zip code {zip_code}: record id hashes collided with three hash keys")

    def _clean_part(self, zip_code: str, raw: pd.DataFrame):
        """One part of a zip code larger than a chunk, cleaned and timed; None when cleaning raised,
        the zip code's failure recorded (it fails alone)."""
        started = time.perf_counter()
        try:
            return self.clean(raw)
        except Exception as error:  # noqa: BLE001 - this zip code fails alone
            self.failures[zip_code] = f"{type(error).__name__}: {error}"
            return None
        finally:
            self.transform_seconds += time.perf_counter() - started

    def _large_zip_code_in_parts(self, zip_code: str, parts: Iterator[pd.DataFrame]) -> Iterator[CleanedChunk]:
        """A zip code larger than a chunk, each part cleaned on its own (a transform other than
        clean_companies), between a savepoint and its release: if a part fails to clean, the zip code
        fails alone and its previous rows come back."""
        stats_start, first = len(self._stats), True
        for raw in parts:
            result = self._clean_part(zip_code, raw)
            if result is None:
                del self._stats[stats_start:]
                if not first:
                    yield CleanedChunk(aborts=zip_code)
                return
            self._count(raw, result)
            yield CleanedChunk(replace=[zip_code] if first else [], begins=zip_code if first else None,
                               cleaned=result.cleaned, rejected=result.rejected)
            first = False
        yield CleanedChunk(replace=[zip_code]) if first else CleanedChunk(ends=zip_code)

    def _large_zip_code_once(self, snap, zip_code: str, parts: Iterator[pd.DataFrame], hash_key: str
                             ) -> Iterator[CleanedChunk]:
        index = _WinnerIndex(hash_key)
        losers: list[np.ndarray] = []  # raw ids of duplicate losers, quarantined at the end
        losers_of: list[np.ndarray] = []  # the hash of each one's record id
        stats_start, moved, first = len(self._stats), 0, True
        self._adjust[zip_code] = 0
        for raw in parts:
            result = self._clean_part(zip_code, raw)
            if result is None:
                del self._stats[stats_start:]
                self._adjust.pop(zip_code, None)
                if not first:
                    yield CleanedChunk(aborts=zip_code)
                return
            started = time.perf_counter()  # the duplicates across parts count as cleaning too
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
            rows = snap.side.rows_by_id(self._id_column, np.concatenate([part, np.unique(kept[part].to_numpy())]).tolist())
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


def _runs(batch: pa.RecordBatch, column: str) -> Iterator[tuple[str, int, int]]:
    """The batch's runs of one zip code, in order: (zip code, first row, rows)."""
    if not batch.num_rows:
        return
    zip_codes = batch.column(column)
    changes = np.flatnonzero(pc.not_equal(zip_codes[1:], zip_codes[:-1]).to_numpy(zero_copy_only=False)) + 1
    starts = np.concatenate([[0], changes])
    rows = np.diff(np.concatenate([starts, [batch.num_rows]]))
    yield from zip(zip_codes.take(pa.array(starts)).to_pylist(), starts.tolist(), rows.tolist())


def _take(batches: list[pa.RecordBatch], rows: int) -> list[pa.RecordBatch]:
    """The first `rows` rows of `batches`."""
    out = []
    for batch in batches:
        if rows <= 0:
            break
        out.append(batch.slice(0, rows))
        rows -= batch.num_rows
    return out


def _drop(batches: list[pa.RecordBatch], rows: int) -> list[pa.RecordBatch]:
    """`batches` without their first `rows` rows."""
    out = []
    for batch in batches:
        if rows >= batch.num_rows:
            rows -= batch.num_rows
            continue
        out.append(batch.slice(rows))
        rows = 0
    return out
