"""A deterministic generator of dirty raw company records, shaped like the real upstream feed.

Same arguments, same rows: tests and benchmarks can rely on it. The skew is realistic: a few zip
codes with thousands of rows, most with tens, some with none. The dirt is deliberate and covers
every cleaning rule: stray whitespace and case, phones in many formats, numbers written as
`1,200` / `N/A` / empty, duplicate records, NULLs, ZIP+4 values, codes that lost their leading
zeros, and text with commas, quotes, tabs, newlines, backslashes and non-ASCII characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

ADJECTIVES = [
    "Acme", "Blue Sky", "Golden", "Summit", "Pioneer", "Liberty", "Evergreen", "Atlas", "Harbor",
    "Redwood", "Silver", "Northern", "Prairie", "Lakeside", "Keystone", "Granite", "Maple",
    "Café Zoë", "Müller & Söhne", "Ñandú", "東京 Sushi", "Crème Brûlée", "Smith, Jones &",
    '"Best"', "O'Malley's", "A\\B", "Joe's 🍕",
]
NOUNS = [
    "Widgets", "Bakery", "Consulting", "Plumbing", "Dental", "Logistics", "Software", "Realty",
    "Auto Repair", "Hardware", "Catering", "Fitness", "Printing", "Landscaping", "Pharmacy",
    "Insurance", "Tailors", "Books", "Bagels", "Brewing",
]
SUFFIXES = ["LLC", "Inc.", "Co", "Corp", "Group", "& Sons", "Partners", "", "", ""]
STREETS = [
    "Main", "Oak", "Pine", "Maple", "Cedar", "Elm", "Washington", "Lake", "Hill", "Park",
    "Sunset", "Lincoln", "Jackson", "River", "Church", "Mill", "Spring", "Center",
]
STREET_TYPES = ["St", "Ave", "Blvd", "Rd", "Ln", "Dr", "Way", "Ct"]
INDUSTRY_SPELLINGS = [
    "Retail", "retail ", "RESTAURANTS", "Restaurant", "food service", "Construction", "Healthcare",
    "health care", "Technology", "tech", "Software", "Professional Services", "Manufacturing",
    "Real Estate", "Finance", "financial services", "Education", "Transportation", "logistics",
    "Pet Grooming", "", None,
]
PHONE_FORMATS = [
    "({a}) {e}-{n}", "{a}-{e}-{n}", "{a}.{e}.{n}", "+1 {a} {e} {n}", "{a}{e}{n}", "1-{a}-{e}-{n}",
    "{a}-{e}-{n} x{x}", "({a}){e}-{n} ext. {x}", " {a} {e} {n} ",
]
BAD_PHONES = ["555-0123", "N/A", "", "call us", "000-000-0000", "12345"]


def _zip_directory() -> dict[str, tuple[str, str, str]]:
    import zipcodes

    directory = {}
    for record in zipcodes.list_all():
        if record["active"]:
            area = (record.get("area_codes") or ["212"])[0]
            directory[record["zip_code"]] = (record["city"], record["state"], area)
    return directory


def zip_code_counts(
    rows: int, zip_codes: Sequence[str], rng: np.random.Generator, *, empty_share: float = 0.05
) -> np.ndarray:
    """Rows per zip code: log-normal (most zips tens of rows), a few hubs, some zips with none."""
    n = len(zip_codes)
    weights = rng.lognormal(mean=0.0, sigma=1.2, size=n)
    hubs = rng.random(n) < min(0.0005, 5 / max(n, 1)) if n > 200 else np.zeros(n, dtype=bool)
    weights[hubs] *= 60
    if n > 20:
        weights[rng.random(n) < empty_share] = 0.0
    return rng.multinomial(rows, weights / weights.sum())


def _dirty_text(rng: np.random.Generator, values: list[str], *, rate: float = 0.12) -> list:
    """Stray whitespace and case, the odd tab/newline, NULLs and blanks."""
    kinds = rng.choice(
        ["clean", "pad", "upper", "lower", "double", "tab", "newline", "cr", "null", "blank"],
        size=len(values),
        p=[1 - rate, rate * 0.3, rate * 0.15, rate * 0.15, rate * 0.15, rate * 0.05, rate * 0.05,
           rate * 0.02, rate * 0.08, rate * 0.05],
    )
    out = []
    for value, kind in zip(values, kinds):
        if kind == "clean":
            out.append(value)
        elif kind == "pad":
            out.append(f"  {value} ")
        elif kind == "upper":
            out.append(value.upper())
        elif kind == "lower":
            out.append(value.lower())
        elif kind == "double":
            out.append(value.replace(" ", "  ", 1))
        elif kind == "tab":
            out.append(value.replace(" ", "\t", 1))
        elif kind == "newline":
            out.append(value.replace(" ", "\n", 1))
        elif kind == "cr":
            out.append(value + "\r\n")
        elif kind == "null":
            out.append(None)
        else:
            out.append("   ")
    return out


def _phones(rng: np.random.Generator, areas: list[str]) -> list:
    n = len(areas)
    fmt = rng.integers(0, len(PHONE_FORMATS), n)
    exchange = rng.integers(200, 1000, n)
    line = rng.integers(0, 10000, n)
    ext = rng.integers(1, 999, n)
    kind = rng.random(n)
    out = []
    for i in range(n):
        if kind[i] < 0.03:
            out.append(BAD_PHONES[i % len(BAD_PHONES)])
        elif kind[i] < 0.06:
            out.append(None)
        else:
            out.append(PHONE_FORMATS[fmt[i]].format(a=areas[i], e=exchange[i], n=f"{line[i]:04d}", x=ext[i]))
    return out


def _employees(rng: np.random.Generator, n: int) -> list:
    values = np.maximum(1, rng.lognormal(2.5, 1.4, n).astype(np.int64))
    kind = rng.random(n)
    out = []
    for v, k in zip(values.tolist(), kind.tolist()):
        if k < 0.04:
            out.append(["N/A", "", "unknown", "-", "n/a"][int(k * 1000) % 5])
        elif k < 0.06:
            out.append(None)
        elif k < 0.08:
            out.append(f" {v}.0 ")
        elif k < 0.085:
            out.append("lots")
        elif v >= 1000:
            out.append(f"{v:,}")
        else:
            out.append(str(v))
    return out


def _revenue(rng: np.random.Generator, n: int) -> list:
    values = rng.lognormal(13, 1.6, n)
    kind = rng.random(n)
    out = []
    for v, k in zip(values.tolist(), kind.tolist()):
        if k < 0.04:
            out.append(["N/A", "", "unknown"][int(k * 1000) % 3])
        elif k < 0.07:
            out.append(None)
        elif k < 0.15:
            out.append(f"{v / 1e6:.1f}M")
        elif k < 0.22:
            out.append(f"{v / 1e3:.0f}K")
        elif k < 0.6:
            out.append(f"${v:,.0f}")
        elif k < 0.61:
            out.append("USD 1,000")
        else:
            out.append(f"{v:.0f}")
    return out


def _founded(rng: np.random.Generator, n: int) -> list:
    years = rng.integers(1850, 2026, n)
    kind = rng.random(n)
    out = []
    for y, k in zip(years.tolist(), kind.tolist()):
        if k < 0.03:
            out.append(["N/A", "", "3000", "'98", "unknown"][int(k * 1000) % 5])
        elif k < 0.06:
            out.append(None)
        elif k < 0.08:
            out.append(f" {y} ")
        else:
            out.append(str(y))
    return out


def _postal_codes(rng: np.random.Generator, zips: list[str], all_zips: Sequence[str]) -> list:
    n = len(zips)
    kind = rng.random(n)
    plus4 = rng.integers(0, 10000, n)
    other = rng.integers(0, len(all_zips), n)
    out = []
    for z, k, p4, o in zip(zips, kind.tolist(), plus4.tolist(), other.tolist()):
        if k < 0.55:
            out.append(z)
        elif k < 0.75:
            out.append(f"{z}-{p4:04d}")
        elif k < 0.80:
            out.append(f"{z} {p4:04d}")
        elif k < 0.83:
            out.append(f"{z}{p4:04d}")
        elif k < 0.87:
            out.append(f" {z} ")
        elif k < 0.90:
            out.append(z.lstrip("0") if z.startswith("0") else z)
        elif k < 0.93:
            out.append(None)
        elif k < 0.94:
            out.append(all_zips[o])  # typo upstream: another zip code (rejected unless equal)
        elif k < 0.945:
            out.append(["ABCDE", "1234567", "N/A"][int(k * 10000) % 3])
        else:
            out.append(z)
    return out


def generate_raw_companies(
    rows: int,
    zip_codes: Sequence[str] | None = None,
    *,
    seed: int = 42,
    duplicate_share: float = 0.03,
    first_raw_id: int = 1,
) -> pd.DataFrame:
    """`rows` raw company records over `zip_codes` (default: every active US zip code)."""
    from zip_etl.partitions import ZIP_CODES

    rng = np.random.default_rng(seed)
    zip_codes = list(ZIP_CODES if zip_codes is None else zip_codes)
    directory = _zip_directory()
    n_dup = int(rows * duplicate_share) if rows >= 20 else 0
    n_base = rows - n_dup

    counts = zip_code_counts(n_base, zip_codes, rng)
    zips = np.repeat(np.array(zip_codes, dtype=object), counts).tolist()
    places = [directory.get(z, ("Springfield", "IL", "217")) for z in zips]

    adjective = rng.integers(0, len(ADJECTIVES), n_base)
    noun = rng.integers(0, len(NOUNS), n_base)
    suffix = rng.integers(0, len(SUFFIXES), n_base)
    names = [
        f"{ADJECTIVES[a]} {NOUNS[b]} {SUFFIXES[c]}".strip()
        for a, b, c in zip(adjective.tolist(), noun.tolist(), suffix.tolist())
    ]
    number = rng.integers(1, 9999, n_base)
    street = rng.integers(0, len(STREETS), n_base)
    street_type = rng.integers(0, len(STREET_TYPES), n_base)
    suite = rng.random(n_base)
    addresses = [
        f"{num} {STREETS[s]} {STREET_TYPES[t]}" + (f", Suite {num % 900 + 100}" if u < 0.2 else "")
        for num, s, t, u in zip(number.tolist(), street.tolist(), street_type.tolist(), suite.tolist())
    ]
    state_kind = rng.random(n_base)
    from zip_etl.transform.rules import US_STATES

    states = [
        (US_STATES.get(p[1], p[1]) if k < 0.05 else p[1].lower() if k < 0.1 else p[1])
        for p, k in zip(places, state_kind.tolist())
    ]
    start = pd.Timestamp("2026-01-01", tz="UTC")
    base = pd.DataFrame(
        {
            "updated_at": start + pd.to_timedelta(rng.integers(0, 300 * 86400, n_base), unit="s"),
            "record_id": [
                (f" c{i:08d}" if k < 0.03 else f"C{i:08d}")
                for i, k in zip(range(first_raw_id, first_raw_id + n_base), rng.random(n_base).tolist())
            ],
            "company_name": _dirty_text(rng, names),
            "street_address": _dirty_text(rng, addresses),
            "city": _dirty_text(rng, [p[0] for p in places]),
            "state": _dirty_text(rng, states, rate=0.05),
            "zip_code": zips,
            "postal_code": _postal_codes(rng, zips, zip_codes),
            "phone": _phones(rng, [p[2] for p in places]),
            "employees": _employees(rng, n_base),
            "annual_revenue": _revenue(rng, n_base),
            "founded_year": _founded(rng, n_base),
            "industry": [INDUSTRY_SPELLINGS[i] for i in rng.integers(0, len(INDUSTRY_SPELLINGS), n_base)],
        }
    )
    # A few record ids go missing upstream.
    missing_id = rng.random(n_base) < 0.002
    base.loc[missing_id, "record_id"] = None

    if n_dup and n_base:
        # Re-sent records: same company, a different update time, sometimes re-typed.
        source = rng.integers(0, n_base, n_dup)
        dups = base.iloc[source].copy()
        dups["updated_at"] = dups["updated_at"] + pd.to_timedelta(rng.integers(-86400 * 30, 86400 * 30, n_dup), unit="s")
        dups["company_name"] = [
            (v.upper() if isinstance(v, str) and k < 0.5 else v)
            for v, k in zip(dups["company_name"].tolist(), rng.random(n_dup).tolist())
        ]
        base = pd.concat([base, dups], ignore_index=True)

    # Upstream order is arrival order, not zip order.
    order = rng.permutation(len(base))
    raw = base.iloc[order].reset_index(drop=True)
    raw.insert(0, "raw_id", np.arange(first_raw_id, first_raw_id + len(raw), dtype=np.int64))
    from zip_etl.transform.cleaning import RAW_COLUMNS

    return raw[RAW_COLUMNS]


def write_raw_companies(url: str, df: pd.DataFrame, table=None, *, replace: bool = True,
                        chunk_rows: int = 250_000, on_chunk=None) -> int:
    """Write generated rows in one transaction with binary COPY (in chunks, to bound memory): the
    table (re)created, the rows, an index on the zip-code column, fresh statistics."""
    from psycopg2 import sql

    from zip_etl.db.ddl import create_table_statement
    from zip_etl.db.partition_writer import ArrowTransaction
    from zip_etl.tables import RAW_COMPANIES

    table = table or RAW_COMPANIES
    with ArrowTransaction(url) as transaction:
        transaction.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema)))
        if replace:
            transaction.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table.identifier))
        transaction.execute(create_table_statement(table))
        for start in range(0, len(df), chunk_rows):
            written = transaction.append_to(table, df.iloc[start : start + chunk_rows])
            if on_chunk is not None:
                on_chunk(written)
        transaction.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(f"{table.name}_zip_code_idx"), table.identifier, sql.Identifier("zip_code")
            )
        )
        transaction.execute(sql.SQL("ANALYZE {}").format(table.identifier))
    return len(df)


def insert_rows(cursor, table, frame: pd.DataFrame) -> int:
    """A few rows into `table` on the caller's psycopg2 transaction (values bound as parameters)."""
    from psycopg2 import sql
    from psycopg2.extras import execute_values

    if not len(frame):
        return 0
    records = [tuple(None if pd.isna(v) else v for v in row) for row in frame[table.column_names].astype(object).itertuples(index=False)]
    execute_values(
        cursor,
        sql.SQL("INSERT INTO {} ({}) VALUES %s").format(
            table.identifier, sql.SQL(", ").join(map(sql.Identifier, table.column_names))
        ).as_string(cursor),
        records,
    )
    return len(records)


@dataclass(frozen=True)
class ZipCodeChange:
    zip_code: str
    inserted: int
    updated: int
    deleted: int


def pick_zip_codes_with_rows(cursor, table, count: int, *, seed: int = 1) -> list[str]:
    """`count` zip codes that have raw rows, picked deterministically (same table, same seed)."""
    from psycopg2 import sql

    cursor.execute(
        sql.SQL("SELECT DISTINCT {0} FROM {1} ORDER BY {0}").format(sql.Identifier(table.partition_column), table.identifier)
    )
    with_rows = [row[0] for row in cursor.fetchall()]
    if count > len(with_rows):
        raise ValueError(f"asked to change {count} zip codes but only {len(with_rows)} have rows")
    picked = np.random.default_rng(seed).choice(len(with_rows), size=count, replace=False)
    return sorted(with_rows[i] for i in picked)


def apply_change_set(
    cursor, zip_codes: Sequence[str], *, delete_all: Sequence[str] = (), seed: int = 1, table=None
) -> list[ZipCodeChange]:
    """Change the raw rows of `zip_codes` the way upstream does between two loads: in each, about a
    fifth of the rows deleted, a fifth updated (renamed, phone re-typed, `updated_at` one day later)
    and 1-5 new rows inserted (fresh `raw_id`s); every row of `delete_all` is deleted. Deterministic:
    the same table and arguments give the same rows. Runs on the caller's transaction."""
    from psycopg2 import sql

    from zip_etl.tables import RAW_COMPANIES

    table = table or RAW_COMPANIES
    zip_column = sql.Identifier(table.partition_column)
    # New raw_ids must not collide with a concurrent writer's.
    cursor.execute(sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(table.identifier))
    cursor.execute(sql.SQL("SELECT coalesce(max(raw_id), 0) FROM {}").format(table.identifier))
    next_id = int(cursor.fetchone()[0]) + 1
    rng = np.random.default_rng(seed)
    changes = []
    for zip_code in sorted(set(zip_codes) - set(delete_all)):
        cursor.execute(
            sql.SQL("SELECT raw_id FROM {} WHERE {} = %s ORDER BY raw_id").format(table.identifier, zip_column),
            (zip_code,),
        )
        ids = np.array([row[0] for row in cursor.fetchall()], dtype=np.int64)
        order = rng.permutation(len(ids))
        n_delete = len(ids) // 5
        n_update = max(1, len(ids) // 5) if len(ids) > n_delete else 0
        deleted = ids[order[:n_delete]].tolist()
        updated = ids[order[n_delete : n_delete + n_update]].tolist()
        cursor.execute(sql.SQL("DELETE FROM {} WHERE raw_id = ANY(%s)").format(table.identifier), (deleted,))
        cursor.execute(
            sql.SQL(
                "UPDATE {} SET company_name = company_name || ' (renamed)', phone = translate(phone, '-', '.'), "
                "updated_at = updated_at + interval '1 day' WHERE raw_id = ANY(%s)"
            ).format(table.identifier),
            (updated,),
        )
        new_rows = generate_raw_companies(int(rng.integers(1, 6)), [zip_code], seed=int(rng.integers(2**31)), first_raw_id=next_id)
        insert_rows(cursor, table, new_rows)
        next_id += len(new_rows)
        changes.append(ZipCodeChange(zip_code, len(new_rows), len(updated), len(deleted)))
    for zip_code in sorted(set(delete_all)):
        cursor.execute(sql.SQL("DELETE FROM {} WHERE {} = %s").format(table.identifier, zip_column), (zip_code,))
        changes.append(ZipCodeChange(zip_code, 0, 0, cursor.rowcount))
    cursor.execute(sql.SQL("ANALYZE {}").format(table.identifier))
    return sorted(changes, key=lambda c: c.zip_code)
