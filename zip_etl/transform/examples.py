"""The rules' examples, run as the pipeline runs them, and the page that shows them (docs/RULES.md).

- `check_examples()` runs every example of `rules.py` through `clean_companies` (as the reader gives
  raw rows: Arrow-backed; and as object columns) and says, naming the rule and the example, where
  the code does not do what the example says.
- `unrecorded_changes()` compares each rule's code and examples with what docs/RULES.md recorded
  when it was last written: a rule whose code changed while its examples did not is a change only
  half made (what does it do now? an example says it).
- `rules_page()` is docs/RULES.md: every rule's docstring and examples, generated.

`zip-etl rules` runs all three; `zip_etl_tests/test_rules.py` too.
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import inspect
import re
import unicodedata
from pathlib import Path

import pandas as pd
import pyarrow as pa

from zip_etl.transform import rules
from zip_etl.transform.cleaning import RAW_COLUMNS, TEXT_COLUMNS, CleaningResult, clean_companies
from zip_etl.transform.rulebook import EXAMPLE_DATE, EXAMPLE_ROW, RULES, Example, Rejected, Rule

RULES_PAGE = Path(__file__).resolve().parents[2] / "docs" / "RULES.md"
WRITE_COMMAND = "zip-etl rules --write-doc"


# --- running the examples ---


def example_frame(example: Example, form: str = "arrow") -> pd.DataFrame:
    """The example's raw rows: `EXAMPLE_ROW` with the example's values, raw ids 1, 2, ... `form`
    "arrow" is what the reader gives (Arrow-backed columns; a column holding bytes that are not
    UTF-8 stays Python strings, as the reader decodes it), "object" Python objects throughout."""
    records = [{**EXAMPLE_ROW, "raw_id": i, **row} for i, row in enumerate(example.rows, 1)]
    frame = pd.DataFrame.from_records(records, columns=RAW_COLUMNS)
    frame["updated_at"] = pd.to_datetime(frame["updated_at"], utc=True)
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].astype(object)
    if form == "object":
        return frame
    out = {}
    for column in RAW_COLUMNS:
        try:
            out[column] = pd.Series(pd.arrays.ArrowExtensionArray(pa.array(frame[column], from_pandas=True)))
        except (UnicodeEncodeError, pa.ArrowInvalid):
            out[column] = frame[column]
    out["updated_at"] = out["updated_at"].astype(pd.ArrowDtype(pa.timestamp("us", tz="UTC")))
    return pd.DataFrame(out)


def outcomes(result: CleaningResult, rows: int) -> list[dict | Rejected]:
    """Each raw row's outcome: its cleaned values, or `Rejected`."""
    cleaned = {r["raw_id"]: r for r in result.cleaned.astype(object).to_dict("records")}
    rejected = {r["raw_id"]: Rejected(r["reason"], r["detail"])
                for r in result.rejected.astype(object).to_dict("records")}
    return [rejected.get(i) or {k: _plain(v) for k, v in cleaned[i].items()} for i in range(1, rows + 1)]


def _plain(value):
    return None if value is pd.NA or value is None or (isinstance(value, float) and value != value) else value


def example_problems(example: Example, form: str = "arrow") -> list[str]:
    """Where `clean_companies` does not do what the example says (empty when it does)."""
    result = clean_companies(example_frame(example, form), today=EXAMPLE_DATE)
    problems = []
    for row, (expected, got) in enumerate(zip(example.expected, outcomes(result, len(example.rows))), 1):
        if isinstance(expected, Rejected):
            ok = got == expected
            want = f"rejected as {expected.reason}: {expected.detail!r}"
        else:
            ok = isinstance(got, dict) and all(got.get(column) == value for column, value in expected.items())
            want = ", ".join(f"{column} {value!r}" for column, value in expected.items())
        if not ok:
            shown = (f"rejected as {got.reason}: {got.detail!r}" if isinstance(got, Rejected)
                     else ", ".join(f"{column} {got.get(column)!r}" for column in
                                    (expected if isinstance(expected, dict) else got)))
            where = f", row {row}" if len(example.rows) > 1 else ""
            problems.append(f"rule {example.rule.name} ({example.rule.where}), example {example.number}{where} "
                            f"{example.written[0]!r}: expected {want}; the code gives {shown} ({form} input)")
    return problems


def all_examples() -> list[Example]:
    return [example for rule in RULES for example in rule.examples]


def check_examples() -> list[str]:
    """Every example, in both input forms: what fails."""
    return [problem for example in all_examples() for form in ("arrow", "object")
            for problem in example_problems(example, form)]


# --- a change made in full: the code and its examples together ---


def _module_tree(source: str | None = None) -> dict[str, ast.stmt]:
    """rules.py's top-level definitions by name (functions and assignments)."""
    tree = ast.parse(source if source is not None else inspect.getsource(rules))
    named: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            named[node.name] = node
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    named[target.id] = node
    return named


def _without_docstring(node: ast.AST) -> ast.AST:
    body = getattr(node, "body", None)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        node.body = body[1:] or [ast.Pass()]
    return node


def _examples_keyword(node: ast.FunctionDef) -> ast.keyword | None:
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call):
            for keyword in decorator.keywords:
                if keyword.arg == "examples":
                    return keyword
    return None


def fingerprints(rule: Rule, named: dict[str, ast.stmt] | None = None) -> tuple[str, str]:
    """(code, examples): short hashes of the rule's code (its function without docstring or
    examples, its decorator's other arguments, and the definitions of rules.py it uses, recursively)
    and of its examples as written."""
    named = named if named is not None else _module_tree()
    node = ast.parse(ast.unparse(named[rule.name])).body[0]  # a copy to trim
    keyword = _examples_keyword(node)
    examples = ast.dump(keyword.value) if keyword else ""
    for decorator in node.decorator_list:
        if isinstance(decorator, ast.Call):
            decorator.keywords = [k for k in decorator.keywords if k.arg != "examples"]
    parts, seen, todo = [], {rule.name}, [_without_docstring(node)]
    while todo:
        current = todo.pop()
        parts.append(ast.dump(current))
        for name in sorted({n.id for n in ast.walk(current) if isinstance(n, ast.Name)} - seen):
            seen.add(name)
            if name in named and not _is_rule(named[name]):
                todo.append(_without_docstring(ast.parse(ast.unparse(named[name])).body[0]))
    return _short_hash("\n".join(parts)), _short_hash(examples)


def _is_rule(node: ast.stmt) -> bool:
    return isinstance(node, ast.FunctionDef) and _examples_keyword(node) is not None


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


_RECORD = re.compile(r"<!-- rule (\w+): code (\w+), examples (\w+) -->")


def recorded_fingerprints(page: str | None = None) -> dict[str, tuple[str, str]]:
    """What docs/RULES.md recorded of each rule when it was written."""
    page = page if page is not None else (RULES_PAGE.read_text(encoding="utf-8") if RULES_PAGE.exists() else "")
    return {name: (code, examples) for name, code, examples in _RECORD.findall(page)}


def changed_without_examples(page: str | None = None, source: str | None = None) -> list[Rule]:
    """Rules whose code changed since docs/RULES.md was written while their examples did not
    (`source`: rules.py as it would be, to show the check at work)."""
    recorded = recorded_fingerprints(page)
    named = _module_tree(source)
    changed = []
    for rule in RULES:
        if rule.name in recorded:
            code, examples = fingerprints(rule, named)
            if code != recorded[rule.name][0] and examples == recorded[rule.name][1]:
                changed.append(rule)
    return changed


def unrecorded_changes(page: str | None = None, source: str | None = None) -> list[str]:
    """`changed_without_examples`, said for a person."""
    return [f"rule {rule.name} ({rule.where}): its code changed but its examples did not. Add an example that "
            f"shows what the change does (raw value -> cleaned value, or -> rejected), then run `{WRITE_COMMAND}`. "
            f"A rewrite that changes no outcome is recorded with `{WRITE_COMMAND} --same-outcomes {rule.name}`."
            for rule in changed_without_examples(page, source)]


# --- the page ---


def _cell(value) -> str:
    """A value as Python writes it, in code font; characters a reader could not tell apart from
    others (combining marks, spaces, controls, compatibility forms such as `ﬁ` or the Kelvin sign)
    escaped, and long runs of one character shortened (`'R' * 201`)."""
    if isinstance(value, dt.datetime):
        shown = value.isoformat(sep=" ")
    elif isinstance(value, str) and len(value) > 12 and len(set(value)) == 1:
        shown = f"{_shown(value[0])} * {len(value)}"
    else:
        shown = _shown(value)
    shown = shown.replace("|", "\\|")
    return f"``{shown}``" if "`" in shown else f"`{shown}`"


def _shown(value) -> str:
    if not isinstance(value, str):
        return repr(value)
    return "".join(c if c.isascii() or not _confusable(c) else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                   else f"\\U{ord(c):08x}" for c in repr(value))


def _confusable(character: str) -> bool:
    return (unicodedata.category(character)[0] in "MZC"
            or unicodedata.normalize("NFKC", character) != character)


def _outcome_cell(outcome: dict | Rejected) -> str:
    if isinstance(outcome, Rejected):
        return f"rejected, `{outcome.reason}`: {_cell(outcome.detail)}"
    return ", ".join(f"{column} {_cell(value)}" for column, value in outcome.items())


def _raw_cell(rule: Rule, row: dict) -> str:
    if list(row) == [rule.raw]:
        return _cell(row[rule.raw])
    return ", ".join(f"{column} {_cell(value)}" for column, value in row.items())


def _rule_section(rule: Rule, named: dict[str, ast.stmt]) -> list[str]:
    if rule.kind == "value":
        title = f"`{rule.name}`: `{rule.raw}` → " + ", ".join(f"`{c}`" for c in rule.cleaned)
        header = f"| raw `{rule.raw}` | cleaned |"
    else:
        title = f"`{rule.name}`: rejects as `{rule.reason}`"
        header = "| raw values | outcome |"
    lines = [f"### {title}", "", inspect.cleandoc(rule.function.__doc__ or ""), ""]
    if rule.kind == "rejection":
        lines += [f"Detail: `{rule.detail}`", ""]
    lines += [header, "| --- | --- |"]
    for example in rule.examples:
        for i, (row, outcome) in enumerate(zip(example.rows, example.expected), 1):
            prefix = f"example {example.number}, row {i}: " if len(example.rows) > 1 else ""
            lines.append(f"| {prefix}{_raw_cell(rule, row)} | {_outcome_cell(outcome)} |")
    code, examples = fingerprints(rule, named)
    lines += ["", f"<!-- rule {rule.name}: code {code}, examples {examples} -->", ""]
    return lines


def rules_page() -> str:
    """docs/RULES.md, as generated from rules.py."""
    named = _module_tree()
    first_row = ", ".join(f"{k} {_cell(v)}" for k, v in EXAMPLE_ROW.items() if k not in ("raw_id", "updated_at"))
    lines = [
        "# The cleaning rules, by example",
        "",
        f"Generated from `zip_etl/transform/rules.py` by `{WRITE_COMMAND}`: do not edit here. Each rule is",
        "one function there, with these examples beside it; `zip-etl rules` and `pytest zip_etl_tests/test_rules.py`",
        "run every example through `clean_companies`, as the pipeline runs it, and fail naming the rule and the",
        "example when the code does something else.",
        "",
        "## Changing a rule",
        "",
        "1. In `zip_etl/transform/rules.py`, change the rule's function (or the table it reads: `REVENUE_SUFFIXES`,",
        "   `STATE_CODES`, `INDUSTRIES`, `NO_NUMBER` ...) and add an example that shows the change. A new rule is",
        "   a new function with `@value_rule` or `@rejection` (`zip_etl/transform/rulebook.py`). Text is read with",
        "   `text.py`'s primitives, which are exact to CPython (`text.upper`, not `pc.utf8_upper`).",
        "2. `zip-etl rules` (seconds, no database): every example; a rule whose code changed while its examples",
        f"   did not is named (a change made half); `{WRITE_COMMAND}` then rewrites this page, recording each",
        "   rule's code (a rewrite that changes no outcome is recorded with `--same-outcomes RULE`).",
        "   It also lists the test-mode fixture rows the change affects (`zip-etl rules --affected`):",
        "   correct them by hand in `zip_etl/fixtures/cleaned_companies_truth.jsonl` (test mode checks the",
        "   pipeline against it). `pytest zip_etl_tests/test_rules.py` checks the same, and the bad-input",
        "   corpus of the database suites (`CORPUS` in `zip_etl_tests/test_bad_input.py`).",
        "3. The code version is derived from the code (examples and docstrings left out): every built partition",
        "   goes stale, and the refresh sensor (or `zip-etl refresh`) rebuilds them. `zip-etl demo --debug`, or",
        "   the debug job in the UI, shows first what a rebuild would change, row by row.",
        "",
        "A change meant to keep every output (a rewrite, a speed-up) is checked by",
        "`python scripts/compare_transform.py save DIR` before it and `... compare DIR` after it.",
        "",
        f"An example is one raw row (or a few): the values shown, the others those of a valid row of zip code "
        f"`10016` ({first_row}), cleaned on {EXAMPLE_DATE.isoformat()}.",
        "Values are shown as Python writes them (`'\\t'` is a tab, `'\\x00'` NUL, `None` NULL).",
        "",
        "## The rules",
        "",
        "Input:" + inspect.cleandoc(rules.__doc__ or "").split("\nInput:", 1)[1],
        "",
    ]
    for rule in RULES:
        lines += _rule_section(rule, named)
    return "\n".join(lines).rstrip() + "\n"


def page_is_current() -> bool:
    return RULES_PAGE.exists() and RULES_PAGE.read_text(encoding="utf-8") == rules_page()


def write_page() -> Path:
    RULES_PAGE.write_text(rules_page(), encoding="utf-8")
    return RULES_PAGE
