"""The data shapes `zip-etl bench` measures, and seeding them (in chunks: a 5,000,000-row zip code is
generated and written 500,000 rows at a time, so seeding needs no more memory than a chunk).

- many-small: 1,000,000 demo rows over all 41,749 zip codes (most have tens of rows);
- few-large: 5,000,000 rows over 100 zip codes (about 50,000 each);
- skewed: one 5,000,000-row zip code, one 1,000,000-row zip code, and 1,000,000 rows over all the
  others.

Each shape has its own schema (`bench_many_small`, ...). A seeded table carries a comment naming
what was seeded; the next bench reuses it when the comment matches (`--reseed` forces a new one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zip_etl.partitions import ZIP_CODES

SEED = 2026
GENERATE_ROWS = 500_000  # rows generated and written at once


@dataclass(frozen=True)
class Shape:
    name: str
    zip_codes: int  # how many zip codes (a contiguous block of the partition order)
    rows: int  # rows spread over them by the demo generator's skew
    big: tuple[int, ...] = ()  # rows of zip codes of their own, besides `rows`

    @property
    def schema(self) -> str:
        return "bench_" + self.name.replace("-", "_")

    def scaled(self, scale: float) -> Shape:
        if scale == 1:
            return self
        return Shape(
            self.name,
            zip_codes=max(2, min(len(ZIP_CODES), round(self.zip_codes * scale))),
            rows=max(1, round(self.rows * scale)),
            big=tuple(max(1, round(b * scale)) for b in self.big),
        )

    def keys(self) -> list[str]:
        """The zip codes: all of them, or a contiguous block from the middle of the partition order
        (a backfill of them is a few tight ranges, as a user's "these 100 zip codes" would be)."""
        if self.zip_codes >= len(ZIP_CODES):
            return list(ZIP_CODES)
        middle = len(ZIP_CODES) // 2
        return list(ZIP_CODES[middle : middle + self.zip_codes])

    def big_keys(self) -> list[str]:
        """The zip codes that get `big` rows each: spread over the block, none at its ends."""
        keys = self.keys()
        return [keys[(i + 1) * len(keys) // (len(self.big) + 1)] for i in range(len(self.big))]

    @property
    def description(self) -> str:
        text = f"{self.rows:,} rows over {self.zip_codes:,} zip codes"
        if self.big:
            text = " + ".join(f"one {b:,}-row zip code" for b in self.big) + f" + {text}"
        return text

    @property
    def total_rows(self) -> int:
        return self.rows + sum(self.big)


SHAPES = {
    "many-small": Shape("many-small", zip_codes=len(ZIP_CODES), rows=1_000_000),
    "few-large": Shape("few-large", zip_codes=100, rows=5_000_000),
    "skewed": Shape("skewed", zip_codes=len(ZIP_CODES), rows=1_000_000, big=(5_000_000, 1_000_000)),
}


def seed(shape: Shape, url: str, *, reseed: bool = False, schema: str | None = None, out=print) -> dict[str, int]:
    """The shape's raw table (`<schema>.raw_companies`, the shape's own schema unless `schema` names
    another), seeded unless an identical one is there; returns the rows per zip code."""
    from psycopg2 import sql

    from zip_etl.db.connection import transaction
    from zip_etl.demo_data import generate_raw_companies, write_raw_companies, zip_code_counts
    from zip_etl.tables import RAW_COMPANIES

    schema = schema or shape.schema
    table = RAW_COMPANIES.with_name(schema, "raw_companies")
    marker = f"zip-etl bench: {shape.description}, seed {SEED}"
    with transaction(url) as cursor:
        cursor.execute("SELECT obj_description(to_regclass(%s), 'pg_class')", (table.qualified_name,))
        found = cursor.fetchone()[0]
    if found == marker and not reseed:
        out(f"  reusing {table.qualified_name} ({shape.description})")
    else:
        out(f"  seeding {shape.description} into {table.qualified_name} ...")
        with transaction(url) as cursor:
            if schema == shape.schema:  # the shape's own schema: whatever an earlier bench left in it goes
                cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            else:  # a schema of other tables (the Celery deployment's `public`): only the raw table
                cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table.identifier))
        keys, big_keys = shape.keys(), shape.big_keys()
        small_keys = [k for k in keys if k not in big_keys]
        next_id, first = 1, True

        def write(rows: int, zip_codes: list[str], seed_value: int) -> None:
            nonlocal next_id, first
            frame = generate_raw_companies(rows, zip_codes, seed=seed_value, first_raw_id=next_id)
            write_raw_companies(url, frame, table, replace=first)
            next_id += len(frame)
            first = False

        part = 0
        if shape.zip_codes <= 200 and shape.rows > GENERATE_ROWS:
            # Few zip codes, many rows: each zip code's count drawn once with the generator's skew,
            # then generated a zip code at a time.
            counts = zip_code_counts(shape.rows, small_keys, np.random.default_rng(SEED))
            for key, n in zip(small_keys, counts.tolist()):
                for start in range(0, n, GENERATE_ROWS):
                    take = min(GENERATE_ROWS, n - start)
                    write(take, [key], SEED + part)
                    part += 1
        else:
            write(shape.rows, small_keys, SEED)
            part += 1
        for key, rows in zip(big_keys, shape.big):
            for start in range(0, rows, GENERATE_ROWS):
                write(min(GENERATE_ROWS, rows - start), [key], SEED + part)
                part += 1
        with transaction(url) as cursor:
            cursor.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(table.identifier, sql.Literal(marker)))
    with transaction(url) as cursor:
        cursor.execute(sql.SQL("SELECT zip_code, count(*) FROM {} GROUP BY 1").format(table.identifier))
        return {k: int(v) for k, v in cursor.fetchall()}
