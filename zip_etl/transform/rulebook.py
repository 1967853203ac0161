"""How a cleaning rule is declared: what it reads, what it makes, and its examples.

`rules.py` declares every rule with one of two decorators, in the order the pipeline applies them:

- `@value_rule(raw=..., cleaned=..., examples=[...])`: a function from one raw text column (an Arrow
  string array) to the cleaned column(s) (Arrow arrays of the same length). It reads each value on its
  own: the pipeline may run it once per distinct value. A rule that needs the date of the run takes
  a `today` argument.
- `@rejection(reason, detail=..., examples=[...])`: a function `(raw, clean)` that returns
  `reject(where=...)`, the rows it rejects. `raw.<column>` are the raw columns (text as Arrow strings,
  `raw_id`, `updated_at` in microseconds as PostgreSQL keeps it, and `not_utf8`), `clean.<name>` what
  the value rules made of them; both hold only the rows no earlier rejection rejected. `detail` says why, for a person: a `str.format` template whose
  fields are `raw.<column>`, `clean.<name>` and the values the rule passes to `reject`.

Examples are `(raw, expected)` pairs. `raw` is the rule's raw value, or {raw column: value} for
several columns, or a list of such dicts for several rows; the other raw values are `EXAMPLE_ROW`'s.
`expected` is the cleaned value (of the rule's first cleaned column), or {cleaned column: value},
or `rejected(reason, detail)`, or a list of those, one per row. The tests run every example through
`clean_companies` (what the pipeline runs), on `EXAMPLE_DATE`; docs/RULES.md shows them.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

EXAMPLE_DATE = dt.date(2026, 11, 23)
"""The day every example is cleaned on (founded years up to 2026)."""

EXAMPLE_ROW = {
    "raw_id": 1,
    "updated_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    "record_id": "C1",
    "company_name": "Acme",
    "street_address": "1 Main St",
    "city": "New York",
    "state": "NY",
    "zip_code": "10016",
    "postal_code": "10016",
    "phone": "212-555-0123",
    "employees": "10",
    "annual_revenue": "1000",
    "founded_year": "1999",
    "industry": "Retail",
}
"""The raw row an example starts from: a valid row of zip code 10016 (rows after the first take the
next raw ids)."""


@dataclass(frozen=True)
class Rejected:
    """An example's expected outcome: the row is rejected with this reason and detail."""

    reason: str
    detail: str


def rejected(reason: str, detail: str) -> Rejected:
    return Rejected(reason, detail)


@dataclass
class Rejects:
    """What a rejection rule returns: the rows it rejects, and the values its detail names."""

    where: np.ndarray
    fields: dict[str, pa.Array]


def reject(where, **fields) -> Rejects:
    """The rows `where` is true (a boolean Arrow or NumPy array; NULL counts as false) are rejected;
    `fields` are values the rule's detail names (`{name}`), one per row."""
    if isinstance(where, (pa.Array, pa.ChunkedArray)):
        where = where.fill_null(False).to_numpy(zero_copy_only=False)
    return Rejects(np.asarray(where, dtype=bool), fields)


@dataclass
class Example:
    """One example, spelled out: the raw rows (raw values that differ from `EXAMPLE_ROW`) and the
    outcome expected for each ({cleaned column: value} or `Rejected`)."""

    rule: Rule
    number: int
    rows: list[dict]
    expected: list[dict | Rejected]
    written: tuple
    """The example as written in rules.py."""

    @property
    def name(self) -> str:
        return f"{self.rule.name}[{self.number}]"


@dataclass
class Rule:
    name: str
    function: Callable
    kind: str
    """"value" or "rejection"."""
    raw: str | None = None
    """A value rule's raw column."""
    cleaned: tuple[str, ...] = ()
    """A value rule's outputs, in the order it returns them."""
    counts_unparseable: bool = False
    reason: str | None = None
    detail: str | None = None
    written_examples: list[tuple] = field(default_factory=list)
    takes_today: bool = False

    @property
    def where(self) -> str:
        """rules.py:LINE, where the rule is written."""
        code = self.function.__code__
        return f"{code.co_filename.rsplit('/', 1)[-1]}:{code.co_firstlineno}"

    @property
    def examples(self) -> list[Example]:
        return [self._example(i, raw, expected) for i, (raw, expected) in enumerate(self.written_examples, 1)]

    def _example(self, number: int, raw, expected) -> Example:
        rows = raw if isinstance(raw, list) else [raw if isinstance(raw, dict) else {self.raw: raw}]
        outcomes = expected if isinstance(expected, list) else [expected]
        if len(outcomes) != len(rows):
            raise ValueError(f"rule {self.name}, example {number}: {len(rows)} rows but {len(outcomes)} outcomes")
        spelled = [o if isinstance(o, (dict, Rejected)) else {self.cleaned[0]: o} for o in outcomes]
        return Example(self, number, rows, spelled, (raw, expected))


RULES: list[Rule] = []
"""Every rule, in the order declared (and applied)."""


def _register(rule: Rule, examples: list) -> None:
    for item in examples:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise ValueError(f"rule {rule.name}: an example is a (raw, expected) pair, not {item!r}")
    rule.written_examples = list(examples)
    if any(r.name == rule.name for r in RULES):
        raise ValueError(f"two rules are named {rule.name}")
    RULES.append(rule)


def value_rule(raw: str, cleaned: str | tuple[str, ...] | None = None, *, examples: list,
               counts_unparseable: bool = False):
    """Declare a rule from the raw column `raw` to the cleaned column(s) `cleaned` (default: the
    same name). `counts_unparseable`: a raw value that has text but cleans to NULL is counted
    (`CleaningResult.unparseable`, the asset's metadata) rather than silently dropped."""
    outputs = (raw,) if cleaned is None else (cleaned,) if isinstance(cleaned, str) else tuple(cleaned)

    def register(function: Callable) -> Callable:
        takes_today = "today" in inspect.signature(function).parameters
        _register(Rule(function.__name__, function, "value", raw=raw, cleaned=outputs,
                       counts_unparseable=counts_unparseable, takes_today=takes_today), examples)
        return function

    return register


def rejection(reason: str, *, detail: str, examples: list):
    """Declare a rule that rejects rows, with `reason` (the quarantine's reason column) and a `detail`
    template for a person."""

    def register(function: Callable) -> Callable:
        _register(Rule(function.__name__, function, "rejection", reason=reason, detail=detail), examples)
        return function

    return register


class Columns:
    """`raw` and `clean` as a rejection rule reads them: columns by attribute (`raw.postal_code`),
    Arrow arrays, fetched when first read."""

    def __init__(self, kind: str, names: list[str], fetch: Callable[[str], pa.Array]):
        self._kind, self._names, self._fetch, self._read = kind, names, fetch, {}

    def __getattr__(self, name: str) -> pa.Array:
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._names:
            raise AttributeError(f"{self._kind}.{name}: {self._kind} has {', '.join(self._names)}")
        if name not in self._read:
            self._read[name] = self._fetch(name)
        return self._read[name]
