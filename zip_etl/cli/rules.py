"""`zip-etl rules`: check the cleaning rules before committing a change to them, and write their page.

    zip-etl rules                # every example through clean_companies; each rule's code changed
                                 # only with its examples; docs/RULES.md current; the fixture rows
    zip-etl rules --write-doc    # regenerate docs/RULES.md from zip_etl/transform/rules.py, recording
                                 # each rule's code (refused while a rule changed without its examples;
                                 # --same-outcomes RULE records a rewrite that changes no outcome)
    zip-etl rules --affected     # the test-mode fixture rows the rules no longer clean as written

No database: everything runs in this process, in a few seconds.
"""

from __future__ import annotations

import click


def fixture_differences() -> list[str]:
    """Where test mode's sample, cleaned as the pipeline cleans it, differs from its hand-written
    truth table (zip_etl/fixtures/): the rows a rule change affects there."""
    from zip_etl.tables import CLEANED_COMPANIES
    from zip_etl.testmode import SAMPLE_TABLE, TRUTH_TABLE, compare_with_truth, read_fixture
    from zip_etl.transform import clean_companies

    raw = read_fixture("raw_companies_sample.jsonl", SAMPLE_TABLE)
    truth = read_fixture("cleaned_companies_truth.jsonl", TRUTH_TABLE)
    cleaned = clean_companies(raw).cleaned
    return compare_with_truth(cleaned.astype(object), truth.astype(object), list(CLEANED_COMPANIES.primary_key))


def _report(title: str, problems: list[str]) -> bool:
    if problems:
        click.echo(f"{title}: {len(problems)}")
        for problem in problems:
            click.echo(f"  {problem}")
    return not problems


@click.command("rules")
@click.option("--write-doc", is_flag=True, help="regenerate docs/RULES.md from rules.py (its examples must hold)")
@click.option("--same-outcomes", multiple=True, metavar="RULE",
              help="with --write-doc: record RULE's new code though its examples did not change (a rewrite)")
@click.option("--affected", is_flag=True, help="only list the test-mode fixture rows the rules no longer clean "
                                              "as zip_etl/fixtures/cleaned_companies_truth.jsonl says")
def rules_command(write_doc, same_outcomes, affected):
    """Check the cleaning rules (zip_etl/transform/rules.py) by their examples, without a database."""
    from zip_etl.transform import examples

    if affected:
        problems = fixture_differences()
        _report("test-mode fixture rows that differ from the truth table (zip_etl/fixtures/)", problems)
        if not problems:
            click.echo("every test-mode fixture row cleans as the truth table says")
        raise SystemExit(1 if problems else 0)
    failing = examples.check_examples()
    if write_doc:
        if not _report("examples the code does not do (fix the code or the example first)", failing):
            raise SystemExit(1)
        unknown = sorted(set(same_outcomes) - {rule.name for rule in examples.RULES})
        if unknown:
            raise click.BadParameter(f"no rule is named {', '.join(unknown)}", param_hint="--same-outcomes")
        half = [problem for rule, problem in zip(examples.changed_without_examples(), examples.unrecorded_changes())
                if rule.name not in same_outcomes]
        if not _report("rules changed without their examples (not recorded)", half):
            raise SystemExit(1)
        click.echo(f"wrote {examples.write_page()}")
        return
    ok = _report("examples the code does not do", failing)
    ok &= _report("rules changed without their examples", examples.unrecorded_changes())
    if examples.RULES_PAGE.parent.is_dir() and not examples.page_is_current():  # a checkout, not an install
        ok &= _report("docs/RULES.md", [f"not what rules.py makes: run `{examples.WRITE_COMMAND}`"])
    ok &= _report("test-mode fixture rows that differ from the truth table (zip_etl/fixtures/)", fixture_differences())
    if ok:
        click.echo(f"{len(examples.all_examples())} examples of {len(examples.RULES)} rules hold; "
                   "docs/RULES.md is current; the test-mode fixtures follow the rules")
    raise SystemExit(0 if ok else 1)
