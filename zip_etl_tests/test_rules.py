"""The cleaning rules (zip_etl/transform/rules.py) by their examples, and the invariants every rule
keeps. No database.

- Every example runs through `clean_companies`, what the pipeline runs, as the reader gives rows
  (Arrow) and as Python objects: a test per example, named after its rule (`phone[5]`).
- A change made only half fails here, naming the rule: code changed without a new example
  (`test_every_changed_rule_has_new_examples`), or an example the code does not do (its own test).
- docs/RULES.md is what rules.py generates (`zip-etl rules --write-doc`).
- rules.py leaves Unicode to the primitives (`text.py`): no utf8proc case mapping, no RE2 case folding.
- Property tests (hypothesis): rows in = rows out + rows rejected per zip code; a text rule applied to
  its own output changes nothing; the output's types.
- The fixture rows of test mode and of the database suites follow the rules (checked here without a
  database, so a rule change shows which rows it affects before the slow suites run).
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import inspect
import json
import unicodedata

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zip_etl.transform import examples, rules
from zip_etl.transform.cleaning import (
    CLEANED_COLUMNS,
    REJECTION_REASONS,
    RULES_BY_NAME,
    TEXT_COLUMNS,
    clean_companies,
    partition_stats,
)
from zip_etl.transform.rulebook import RULES, Rejected

EXAMPLES = examples.all_examples()


# --- every example, through clean_companies ---


@pytest.mark.parametrize("form", ["arrow", "object"])
@pytest.mark.parametrize("example", EXAMPLES, ids=[e.name for e in EXAMPLES])
def test_example(example, form):
    problems = examples.example_problems(example, form)
    assert not problems, "\n".join(problems)


def test_every_rule_has_examples_and_every_reason_a_rule():
    assert all(rule.written_examples for rule in RULES), [r.name for r in RULES if not r.written_examples]
    shown = {o.reason for e in EXAMPLES for o in e.expected if isinstance(o, Rejected)}
    assert shown == set(REJECTION_REASONS)
    made = {name for rule in RULES for name in rule.cleaned}
    assert set(CLEANED_COLUMNS) - made == {"raw_id", "source_updated_at"}


def test_a_wrong_example_fails_naming_its_rule_and_example():
    """An example the code does not do (a change made in the examples only) fails, and says which."""
    rule = RULES_BY_NAME["annual_revenue_usd"]
    ahead = dataclasses.replace(rule, written_examples=[*rule.written_examples, ("1000", 999)])
    problems = examples.example_problems(ahead.examples[-1])
    assert problems == [f"rule annual_revenue_usd (rules.py:{rule.function.__code__.co_firstlineno}), example "
                        f"{len(ahead.written_examples)} '1000': expected annual_revenue_usd 999; the code gives "
                        "annual_revenue_usd 1000 (arrow input)"]


def test_the_examples_test_what_runs(monkeypatch):
    """The examples run the rule the pipeline runs: a phone rule that forgets E.164's `+1` fails them."""
    rule = RULES_BY_NAME["phone"]
    original = rule.function
    monkeypatch.setattr(rule, "function", lambda raw: pc.utf8_slice_codeunits(original(raw), 2))
    failing = {e.number for e in rule.examples if examples.example_problems(e)}
    assert failing >= {e.number for e in rule.examples if e.expected[0]["phone"] is not None} != set()


# --- a change made in full ---


def test_every_changed_rule_has_new_examples():
    """A rule whose code changed since docs/RULES.md was written, while its examples did not, is a
    change made only half: the message says which rule, and what to do."""
    problems = examples.unrecorded_changes()
    assert not problems, "\n".join(problems)


def test_the_rules_page_is_current():
    assert examples.page_is_current(), f"docs/RULES.md is not what rules.py makes: run `{examples.WRITE_COMMAND}`"


def test_code_changed_without_examples_is_named():
    source = inspect.getsource(rules)
    page = examples.rules_page()
    assert examples.unrecorded_changes(page, source) == []
    # A new revenue suffix without an example: the revenue rule is named, and no other.
    changed = source.replace('REVENUE_SUFFIXES = {"k": 1e3,', 'REVENUE_SUFFIXES = {"t": 1e12, "k": 1e3,')
    assert changed != source
    problems = examples.unrecorded_changes(page, changed)
    assert len(problems) == 1 and problems[0].startswith("rule annual_revenue_usd (rules.py:"), problems
    # With an example beside it, the change is whole (the examples tests then run the new example).
    whole = changed.replace('("$1,250,000", 1_250_000),', '("$1,250,000", 1_250_000),\n        ("2t", 2e12),')
    assert whole != changed and examples.unrecorded_changes(page, whole) == []
    # A helper a rule uses is part of the rule: the number grammar's words name every number column.
    helper = source.replace('NO_NUMBER = ["", "n/a",', 'NO_NUMBER = ["", "n.a.", "n/a",')
    named = {p.split(" ")[1] for p in examples.unrecorded_changes(page, helper)}
    assert named == {"employees", "annual_revenue_usd", "founded_year"}
    # Docstrings and comments are not code.
    reworded = source.replace('"""A whole number of employees', '"""The whole number of employees')
    assert reworded != source and examples.unrecorded_changes(page, reworded) == []


# --- rules.py leaves Unicode to the primitives ---

CASE_AND_FORM = {"utf8_upper", "utf8_lower", "utf8_title", "utf8_capitalize", "utf8_swapcase", "utf8_normalize"}


def unicode_problems(source: str) -> list[str]:
    """Where rules.py would decide Unicode itself: utf8proc's case mappings or normalisation (not
    CPython's), RE2's `(?i)` or `ignore_case` (Unicode case folding: `ſ` is `s`)."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and (node.attr in CASE_AND_FORM or node.attr.startswith("utf8_is_")):
            primitive = node.attr.removeprefix("utf8_")
            problems.append(f"rules.py:{node.lineno}: pc.{node.attr} is utf8proc's, not CPython's: use text.{primitive}")
        if isinstance(node, ast.keyword) and node.arg == "ignore_case":
            problems.append(f"rules.py:{node.lineno}: ignore_case folds case the Unicode way: lower-case first")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "(?i" in node.value:
            problems.append(f"rules.py:{node.lineno}: (?i) folds case the Unicode way: lower-case first")
    return problems


def test_rules_leave_unicode_to_the_primitives():
    source = inspect.getsource(rules)
    assert unicode_problems(source) == []
    broken = source.replace("pc.ascii_lower(text.normalize(raw))", "pc.utf8_lower(text.normalize(raw))")
    broken = broken.replace('EXTENSION = r" ?(x|', 'EXTENSION = r"(?i) ?(x|')
    assert len(unicode_problems(broken)) == 2


# --- invariants (hypothesis) ---

FRAGMENTS = ["", " ", "\t", "\x00", "\xa0", "\u3000", "a", "A", "\u00df", "\u0130", "\u017f", "\u212a", "\ufb01",
             "\u03a3", "e\u0301", "\u01c6", "\u0149", "x", "ext.", "-", ".", ",", "$", "k", "mm", "bn", "usd", "1", "0",
             "212", "555", "0123", "10016", "00501", "1234", "NY", "new york", "tech", "o'malley", "\\N", "\u0664"]
text_values = st.one_of(st.none(), st.lists(st.sampled_from(FRAGMENTS), max_size=5).map("".join),
                        st.text(st.characters(exclude_categories=("Cs",)), max_size=6))


@st.composite
def raw_frames(draw):
    n = draw(st.integers(1, 10))
    rows = []
    for i in range(n):
        row = {c: draw(text_values) for c in TEXT_COLUMNS}
        row["zip_code"] = draw(st.sampled_from(["10016", "00501", "10016", "1001\uff16"]))
        row["record_id"] = draw(st.one_of(st.sampled_from(["a1", "A1", " a1", "\u00c51", "A\u030a1", "\u00df", "SS"]),
                                          text_values))
        if draw(st.booleans()):
            row["postal_code"] = draw(st.sampled_from(["10016", "501", "00501-0332", None]))
        row["company_name"] = draw(st.sampled_from(["Acme", "", None, "caf\u00e9"])) if draw(st.booleans()) \
            else row["company_name"]
        row["raw_id"] = i + 1
        row["updated_at"] = pd.Timestamp("2026-03-01", tz="UTC") + pd.Timedelta(seconds=draw(st.sampled_from([0, 1])))
        rows.append(row)
    frame = pd.DataFrame(rows)
    return frame[["raw_id", "updated_at", *TEXT_COLUMNS]]


PROPERTY = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@PROPERTY
@given(raw_frames())
def test_rows_in_are_rows_out_plus_rows_rejected_per_zip_code(raw):
    result = clean_companies(raw, today=dt.date(2026, 11, 23))
    stats = partition_stats(raw, result)
    assert (stats["rows_in"] == stats["rows_out"] + stats["rows_rejected"]).all()
    assert stats["rows_in"].sum() == len(raw)
    assert sorted(result.cleaned["raw_id"].tolist() + result.rejected["raw_id"].tolist()) == sorted(raw["raw_id"])


TEXT_RULES = [r for r in RULES if r.kind == "value" and r.cleaned == (r.raw,) and not r.takes_today
              and pa.types.is_string(r.function(pa.array(["1"])).type)]


def test_the_text_rules():
    assert [r.name for r in TEXT_RULES] == ["record_id", "company_name", "street_address", "city", "state",
                                            "industry", "zip_code", "phone"]


CASE_MAPPING_RULES = {"record_id", "city", "state", "industry"}


@PROPERTY
@given(st.lists(text_values, min_size=1, max_size=20))
def test_a_text_rule_applied_to_its_own_output_changes_nothing(values):
    """Except where CPython's case mapping leaves a combining mark, which the rule's normalisation
    (before the case mapping, as the rules say) would then compose, or `str.title()` reads as the end
    of a word: `ΐ` upper-cases to `Ϊ́`, `AİA` title-cases to `Ai̇a` (the examples of `record_id` and
    `city` show both)."""
    raw = pa.array(values, pa.string())
    for rule in TEXT_RULES:
        once = rule.function(raw)
        for value, first, second in zip(values, once.to_pylist(), rule.function(once).to_pylist()):
            if first != second:
                marked = first is not None and any(unicodedata.category(c) == "Mn" for c in first)
                assert rule.name in CASE_MAPPING_RULES and marked, (rule.name, value, first, second)


@PROPERTY
@given(raw_frames())
def test_output_types(raw):
    result = clean_companies(raw, today=dt.date(2026, 11, 23))
    table = pa.Table.from_pandas(result.cleaned, preserve_index=False)
    assert table.column_names == CLEANED_COLUMNS
    for field in table.schema:
        kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
        if field.name == "source_updated_at":
            assert pa.types.is_timestamp(kind) and kind.tz == "UTC"
        elif field.name in ("employees", "annual_revenue_usd", "founded_year", "raw_id"):
            assert pa.types.is_integer(kind), field
        else:
            assert pa.types.is_string(kind), field
    assert set(result.rejected["reason"]) <= set(REJECTION_REASONS)
    assert all(isinstance(d, str) and d for d in result.rejected["detail"])
    assert len(result.duplicate_kept_raw_id) == len(result.rejected)


# --- the fixture rows that carry rule outcomes ---


def test_test_mode_fixtures_follow_the_rules():
    """The test-mode sample, cleaned here, gives the hand-written truth table (test mode checks the
    same through the pipeline and PostgreSQL): `zip-etl rules --affected` lists the rows that differ."""
    from zip_etl.cli.rules import fixture_differences

    assert fixture_differences() == []


def test_the_bad_input_corpus_follows_the_rules():
    """The outcomes test_bad_input.py expects of its corpus through PostgreSQL, checked here without one."""
    from zip_etl_tests.test_bad_input import CORPUS, corpus_frame

    result = clean_companies(corpus_frame())
    cleaned = result.cleaned.astype(object).set_index("record_id")
    reasons = dict(zip(result.rejected["record_id"].astype(object).fillna(""), result.rejected["reason"]))
    for record_id, (_, expected) in CORPUS.items():
        if isinstance(expected, str):
            assert reasons.get(record_id) == expected, record_id
        else:
            got = {k: (None if pd.isna(v) else v) for k, v in cleaned.loc[record_id, list(expected)].items()}
            assert got == expected, record_id


def test_json_fixture_values_are_plain():
    """The truth table holds JSON values (str, int, null) a rule's output compares with exactly."""
    from zip_etl.testmode import FIXTURES

    for line in (FIXTURES / "cleaned_companies_truth.jsonl").read_text().splitlines():
        assert all(isinstance(v, (str, int, type(None))) for v in json.loads(line).values())


# --- the command the team runs before committing ---


def test_zip_etl_rules_checks_and_writes_the_page(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from zip_etl.cli.rules import rules_command

    checked = CliRunner().invoke(rules_command, [])
    assert checked.exit_code == 0, checked.output
    assert f"{len(EXAMPLES)} examples of {len(RULES)} rules hold" in checked.output

    # A page that recorded other code for the phone rule (as after a change of its code only).
    page = tmp_path / "RULES.md"
    code, _ = examples.fingerprints(RULES_BY_NAME["phone"])
    page.write_text(examples.rules_page().replace(f"rule phone: code {code}", "rule phone: code 000000000000"))
    monkeypatch.setattr(examples, "RULES_PAGE", page)
    refused = CliRunner().invoke(rules_command, ["--write-doc"])
    assert refused.exit_code == 1 and "rule phone (rules.py:" in refused.output, refused.output
    assert "000000000000" in page.read_text()  # nothing recorded
    assert CliRunner().invoke(rules_command, []).exit_code == 1
    written = CliRunner().invoke(rules_command, ["--write-doc", "--same-outcomes", "phone"])
    assert written.exit_code == 0, written.output
    assert page.read_text() == examples.rules_page()
