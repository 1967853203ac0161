"""`zip-etl checks`: every check of cleaned_companies over the whole table, as the UI's Checks tab
"Execute all" runs them (no partition), in a run recorded in Dagster's storage: the Checks tab shows
its results. Dagster's own CLI materializes assets only; it cannot run checks alone."""

from __future__ import annotations

import click

from zip_etl.instance import get_instance


@click.command("checks")
@click.option("--schema", default=None, help="schema of the raw and cleaned tables  [default: cleaned_companies' defs.yaml]")
def checks_command(schema):
    """Run every check of cleaned_companies over the whole table (as the Checks tab's "Execute all")."""
    raise SystemExit(run_checks(schema))


def run_checks(schema: str | None) -> int:
    """Run the checks, print one line per check; 0 when all passed, 1 otherwise."""
    import dagster as dg

    from zip_etl.definitions import CHECKS, QUALITY_CHECKS, cleaned_companies, raw_companies
    from zip_etl.resources import PostgresResource, PostgresWriter

    postgres = PostgresResource(raw_schema=schema)
    resources = {"postgres": postgres, "postgres_writer": PostgresWriter(postgres=postgres, target_schema=schema)}

    with get_instance() as instance:
        result = dg.materialize(
            [raw_companies, cleaned_companies, *QUALITY_CHECKS], selection=dg.AssetSelection.checks(*QUALITY_CHECKS),
            resources=resources, instance=instance, raise_on_error=False,
        )
    evaluations = sorted(result.get_asset_check_evaluations(), key=lambda e: e.check_name)
    for evaluation in evaluations:
        verdict = "passed" if evaluation.passed else f"FAILED ({evaluation.severity.value.lower()})"
        checked = evaluation.metadata.get("checked")
        click.echo(f"{verdict:17} {evaluation.check_name} (checked {checked.value if checked else '?'})"
                   f"{'' if evaluation.passed else ': ' + what_failed(evaluation)}")
    click.echo(f"Run {result.run_id}: the UI's Checks tab shows these results.")
    ran_all = len(evaluations) == len(CHECKS) and result.success
    return 0 if ran_all and all(e.passed for e in evaluations) else 1


def what_failed(evaluation) -> str:
    """A failed check's description, else what its metadata names (the zip codes and values concerned)."""
    if evaluation.description:
        return evaluation.description
    return "; ".join(f"{key} {str(value.value)[:200]}" for key, value in evaluation.metadata.items()
                     if not key.startswith("checked"))
