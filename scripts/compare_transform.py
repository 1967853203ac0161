"""Save what the cleaning transform outputs, and compare a later version of it with a saved run.

A change meant to keep every output (a refactoring, a speed-up) is checked with it: save the outputs of
the code before the change, change it, compare.

    python scripts/compare_transform.py save /tmp/before          # the current code's outputs
    python scripts/compare_transform.py compare /tmp/before       # the current code against them

It cleans (with `clean_companies`, as the pipeline runs it, on a fixed `today`):
- the demo table, `--rows` rows (1,000,000 by default) with the demo's seed (42), as the reader gives
  it (Arrow-backed columns, timestamps in microseconds): cut into chunks of whole zip codes of at most
  200,000 rows as a run does, and also whole in one call; and 200,000 other demo rows as object columns;
- the hostile text (`zip_etl_tests/hostile_text.py`) and the bad-input corpus of the database tests, in
  every input form (object, Arrow, pandas' Arrow strings, large strings, chunks), each column cleaned
  per row and per distinct value, and text that is not UTF-8;
- 20,000 rows of random fragments of that text (a fixed seed).

It saves, per case, the cleaned and the rejected rows (every value, NULLs, reasons and details, the
kept raw id of each duplicate) as Parquet, the dtypes and the unparseable counts; `compare` says for
each case "same" (the Arrow tables equal, dictionaries included, and the same dtypes and counts),
"same values" (equal but for the order of a dictionary column's entries, which is how the column is
stored, not what it holds), or which rows and columns differ; it exits 1 if any case differs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TODAY = dt.date(2026, 11, 23)
DEMO_SEED = 42  # `zip-etl seed` and `zip-etl demo`
CHUNK_ROWS = 200_000  # the `postgres` resource's chunk_rows


# --- the cases ---


def demo_arrow(rows: int, seed: int) -> pd.DataFrame:
    from zip_etl.demo_data import generate_raw_companies
    from zip_etl_tests.hostile_text import arrow_backed

    return arrow_backed(generate_raw_companies(rows, seed=seed))


def run_chunks(frame: pd.DataFrame) -> list[pd.DataFrame]:
    """The frame cut as a run cuts its zip codes: in order, groups of whole zip codes of at most
    `CHUNK_ROWS` rows (a zip code with more is a group of its own)."""
    codes = frame["zip_code"].astype(object).to_numpy()
    order = np.argsort(codes, kind="stable")
    keys, starts, counts = np.unique(codes[order], return_index=True, return_counts=True)
    chunks, current, held = [], [], 0
    for start, count in zip(starts.tolist(), counts.tolist()):
        if current and held + count > CHUNK_ROWS:
            chunks.append(np.concatenate(current))
            current, held = [], 0
        current.append(order[start:start + count])
        held += count
    if current:
        chunks.append(np.concatenate(current))
    return [frame.iloc[np.sort(rows)].reset_index(drop=True) for rows in chunks]


def fuzz_frame(rows: int = 20_000, seed: int = 5) -> pd.DataFrame:
    """Random joins of hostile fragments and random code points in every text column."""
    from zip_etl_tests.hostile_text import NASTY, TEXT_COLUMNS, edge_frame

    rng = np.random.default_rng(seed)
    fragments = [s for s in NASTY if len(s) < 12] + [
        "212", "555", "0123", "10016", "1234", "00501", "0", "1", "9", ".", ",", "$", "k", "m", "mm", "b", "bn",
        "usd", "x", "ext.", "-", "+", "e3", "a", "A", "new", "york", "Tech", " ", "  ", "X", "EXT"]
    code_points = np.concatenate([rng.integers(0x20, 0x7F, 4000), rng.integers(0x80, 0x3000, 2000),
                                  rng.integers(0x3000, 0x110000, 1000)])
    code_points = code_points[(code_points < 0xD800) | (code_points > 0xDFFF)]

    def value():
        kind = rng.integers(0, 5)
        if kind == 0:
            return None
        if kind == 4:
            return "".join(chr(int(c)) for c in rng.choice(code_points, rng.integers(0, 8)))
        return "".join(fragments[i] for i in rng.integers(0, len(fragments), rng.integers(1, 5)))

    def digits(low: int, high: int) -> str:
        return "".join(str(d) for d in rng.integers(0, 10, rng.integers(low, high + 1)))

    def pick(*options: str) -> str:
        return options[rng.integers(0, len(options))]

    def number() -> str:
        body = digits(0, 12) + pick("", "", ".", "." + digits(1, 4)) or "0"
        body = pick("", "", ",", "_", " ").join(body[i:i + 3] for i in range(0, len(body), 3))
        return (pick("", "", "$", "-", "+", " ") + body + pick("", "", "k", "K", "m", "MM", "b", "bn", "BN", "usd", " USD")
                + pick("", "", " ", "e3"))

    def phone() -> str:
        number = pick("", "", "1 ", "+1 ", "1-") + pick(f"({digits(3, 3)}) ", digits(3, 3) + "-") + digits(3, 3) + pick(
            "-", ".", " ", "") + digits(3, 5)
        return number + pick("", "", " x" + digits(0, 4), "x" + digits(1, 3), " ext. " + digits(1, 3), "EXT" + digits(1, 3),
                             " extension " + digits(1, 3), " Ext." + digits(1, 3), " ex 12", " x 7", " ")

    def year() -> str:
        return pick(" ", "") + str(rng.integers(1750, 2040)) + pick("", "", ".0", ".5", ",0", " ") if rng.random() < 0.8 else number()

    def postal() -> str:
        return pick(digits(5, 5), digits(3, 4), digits(5, 5) + pick("-", " ", "") + digits(4, 4), digits(1, 10))

    base = edge_frame().iloc[0]
    data = {c: [value() for _ in range(rows)] for c in TEXT_COLUMNS}
    for column, make in (("phone", phone), ("employees", number), ("annual_revenue", number),
                         ("founded_year", year), ("postal_code", postal)):
        data[column] = [make() if rng.random() < 0.5 else v for v in data[column]]
    data["zip_code"] = rng.choice(["10016", "00501", "10016", "1001\uff16"], rows).tolist()
    hostile_ids = rng.choice(["a1", "A1", " a1", "\u00c51", "A\u030a1", "b2", "", "\u00df", "SS", "x"], rows).tolist()
    data["record_id"] = [hostile_ids[i] if rng.random() < 0.1 else f"r{i % (rows // 2)}" for i in range(rows)]
    data["company_name"] = [v if rng.random() < 0.3 else "Acme" for v in data["company_name"]]
    postal = rng.choice(["same", "none", "none", "random"], rows).tolist()
    data["postal_code"] = [z if p == "same" else None if p == "none" else v
                           for p, z, v in zip(postal, data["zip_code"], data["postal_code"])]
    frame = pd.DataFrame(data)
    frame.insert(0, "raw_id", rng.permutation(rows).astype(np.int64) + 1)
    frame.insert(1, "updated_at", base["updated_at"] + pd.to_timedelta(rng.integers(0, 3, rows), unit="s"))
    return frame[list(edge_frame().columns)]


Case = tuple[str, Callable[[], pd.DataFrame], bool | None]


def cases(rows: int) -> Iterator[Case]:
    from zip_etl_tests.hostile_text import edge_frame, input_forms, undecodable_frames
    from zip_etl_tests.test_bad_input import corpus_frame

    demo: dict[str, object] = {}

    def demo_frame() -> pd.DataFrame:
        if "frame" not in demo:
            demo["frame"] = demo_arrow(rows, DEMO_SEED)
        return demo["frame"]

    def chunks() -> list[pd.DataFrame]:
        if "chunks" not in demo:
            demo["chunks"] = run_chunks(demo_frame())
        return demo["chunks"]

    for i in range(len(chunks())):
        yield f"demo {rows} arrow, run chunk {i}", (lambda i=i: chunks()[i]), None
    yield f"demo {rows} arrow, whole", demo_frame, None
    yield "demo 200000 object (seed 11)", lambda: _demo_object(), None
    hostile = pd.concat([corpus_frame(), edge_frame().assign(raw_id=lambda f: f["raw_id"] + 1000)], ignore_index=True)
    for form in input_forms(hostile):
        for always in (False, True):
            path = "per distinct value" if always else "per row"
            yield f"hostile text, {form}, {path}", (lambda form=form: input_forms(hostile)[form]), always
    yield "hostile text, shuffled", lambda: hostile.sample(frac=1, random_state=3), None
    for name in undecodable_frames():
        yield f"not UTF-8, {name}", (lambda name=name: undecodable_frames()[name]), None
    for always in (None, True):
        yield f"fuzz 20000{', per distinct value' if always else ''}", fuzz_frame, always


def _demo_object() -> pd.DataFrame:
    from zip_etl.demo_data import generate_raw_companies

    return generate_raw_companies(200_000, seed=11)


# --- outputs as Arrow tables, exactly ---


def to_table(frame: pd.DataFrame) -> pa.Table:
    """Every column as Arrow; text a Python string cannot encode (lone surrogates) as its bytes."""
    columns = {}
    for name, column in frame.items():
        if column.dtype == object:
            values = column.tolist()
            try:
                columns[name] = pa.array(values, type=pa.string(), from_pandas=True)
            except (UnicodeEncodeError, pa.ArrowInvalid, pa.ArrowTypeError):
                columns[name] = pa.array([v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v
                                          for v in values], type=pa.binary(), from_pandas=True)
        else:
            columns[name] = pa.Table.from_pandas(column.to_frame(), preserve_index=False).column(0)
    return pa.table(columns)


def _parquet_bytes(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def outputs(raw: pd.DataFrame, always: bool | None) -> dict[str, object]:
    from zip_etl.transform import clean_companies
    from zip_etl_tests.hostile_text import per_distinct_value

    with per_distinct_value(always):
        result = clean_companies(raw, today=TODAY)
    return {
        "cleaned": to_table(result.cleaned),
        "rejected": to_table(result.rejected.assign(duplicate_kept_raw_id=result.duplicate_kept_raw_id.to_numpy())),
        "meta": {
            "rows": len(raw),
            "cleaned_dtypes": {k: str(v) for k, v in result.cleaned.dtypes.items()},
            "rejected_dtypes": {k: str(v) for k, v in result.rejected.dtypes.items()},
            "unparseable": result.unparseable,
        },
    }


def _folder(root: Path, name: str) -> Path:
    return root / "".join(c if c.isalnum() else "_" for c in name)


def save(root: Path, rows: int) -> int:
    root.mkdir(parents=True, exist_ok=True)
    manifest = {"rows": rows, "today": TODAY.isoformat(), "commit": _commit(), "saved": dt.datetime.now().isoformat(),
                "cases": []}
    for name, make, always in cases(rows):
        started = time.perf_counter()
        out = outputs(make(), always)
        folder = _folder(root, name)
        folder.mkdir(exist_ok=True)
        for part in ("cleaned", "rejected"):
            (folder / f"{part}.parquet").write_bytes(_parquet_bytes(out[part]))
        (folder / "meta.json").write_text(json.dumps(out["meta"], indent=1, sort_keys=True))
        manifest["cases"].append(name)
        print(f"saved {name}: {out['meta']['rows']:,} rows in, {out['cleaned'].num_rows:,} cleaned, "
              f"{out['rejected'].num_rows:,} rejected ({time.perf_counter() - started:.1f} s)", flush=True)
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return 0


def _commit() -> str:
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (" with uncommitted changes" if git("status", "--porcelain") else "")


_REORDERED = "dictionary entries in another order"


def _decoded(table: pa.Table) -> pa.Table:
    """Dictionary columns as their values: the order of a dictionary's entries is how a column is
    stored, not what it holds (its dtype, index width included, is compared apart)."""
    for i, column in enumerate(table.columns):
        if pa.types.is_dictionary(column.type):
            table = table.set_column(i, table.field(i).name, column.cast(column.type.value_type))
    return table


def table_differences(saved: pa.Table, got: pa.Table, limit: int = 5) -> list[str]:
    if saved.schema == got.schema and saved.equals(got):
        return []
    stored_apart = [name for name in saved.column_names
                    if name in got.column_names and not saved[name].equals(got[name])]
    saved, got = _decoded(saved), _decoded(got)
    if saved.schema == got.schema and saved.equals(got):
        return [f"{_REORDERED} in {', '.join(stored_apart)}"]
    if saved.schema != got.schema:
        return [f"schema differs:\n    saved {saved.schema}\n    now   {got.schema}"]
    if saved.num_rows != got.num_rows:
        return [f"{saved.num_rows:,} rows saved, {got.num_rows:,} now"]
    problems = []
    for name in saved.column_names:
        a, b = saved[name], got[name]
        if a.equals(b):
            continue
        left, right = a.to_pylist(), b.to_pylist()
        rows = [i for i, (x, y) in enumerate(zip(left, right)) if x != y]
        shown = ", ".join(f"row {i}: {left[i]!r} -> {right[i]!r}" for i in rows[:limit])
        problems.append(f"column {name}: {len(rows):,} rows differ ({shown})")
    return problems


def compare(root: Path) -> int:
    manifest = json.loads((root / "manifest.json").read_text())
    print(f"comparing with {root} (saved {manifest['saved']} at {manifest['commit']}); now {_commit()}", flush=True)
    differing = reordered_cases = 0
    listed = {name: (make, always) for name, make, always in cases(manifest["rows"])}
    for name in manifest["cases"]:
        folder = _folder(root, name)
        if name not in listed:
            print(f"MISSING {name}: this script no longer builds that case")
            differing += 1
            continue
        make, always = listed[name]
        out = outputs(make(), always)
        problems = []
        for part in ("cleaned", "rejected"):
            saved = pq.read_table(folder / f"{part}.parquet")
            got = pq.read_table(io.BytesIO(_parquet_bytes(out[part])))  # the same round trip as saved
            problems += [f"{part}: {p}" for p in table_differences(saved, got)]
        saved_meta = json.loads((folder / "meta.json").read_text())
        for key, value in json.loads(json.dumps(out["meta"], sort_keys=True)).items():
            if saved_meta.get(key) != value:
                problems.append(f"{key}: saved {saved_meta.get(key)}, now {value}")
        reordered = [p for p in problems if _REORDERED in p]
        if len(reordered) < len(problems):
            differing += 1
            print(f"DIFFERS {name}:\n  " + "\n  ".join(problems), flush=True)
        elif reordered:
            reordered_cases += 1
            print(f"same values {name}: {'; '.join(reordered)}", flush=True)
        else:
            print(f"same    {name}: {out['meta']['rows']:,} rows in, {out['cleaned'].num_rows:,} cleaned, "
                  f"{out['rejected'].num_rows:,} rejected", flush=True)
    print(f"{len(manifest['cases']) - differing} of {len(manifest['cases'])} cases the same"
          + (f" ({reordered_cases} with a dictionary's entries in another order)" if reordered_cases else "")
          + ("" if not differing else f"; {differing} differ"))
    return 1 if differing else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["save", "compare"])
    parser.add_argument("folder", type=Path, help="where the outputs are saved (outside the repository)")
    parser.add_argument("--rows", type=int, default=1_000_000, help="demo rows (save; compare reads them from the run)")
    args = parser.parse_args(argv)
    return save(args.folder, args.rows) if args.action == "save" else compare(args.folder)


if __name__ == "__main__":
    raise SystemExit(main())
