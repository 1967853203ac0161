"""The `zip-etl` command line: one small module per command (zip_etl/cli/), on click.

Other installed packages add commands through the `zip_etl.commands` entry point group; the
project's own tooling adds `zip-etl bench` that way (zip_etl_tools/), so the runtime package
never imports its benchmarks.
"""

from __future__ import annotations

import logging
import sys
import warnings
from importlib.metadata import entry_points

import click

# Dagster's notices about its own beta and preview APIs are not the user's concern.
warnings.filterwarnings("ignore", message=r".* is currently in (beta|preview)")

from zip_etl.cli.check_raw import check_raw_command
from zip_etl.cli.checks import checks_command
from zip_etl.cli.db import db_command
from zip_etl.cli.demo import demo_command
from zip_etl.cli.launch import launch_command
from zip_etl.cli.refresh import refresh_command
from zip_etl.cli.rules import rules_command
from zip_etl.cli.seed import seed_command
from zip_etl.cli.sizing import sizing_command
from zip_etl.cli.tables import load_fixtures_command, migrate_command

COMMANDS_ENTRY_POINT = "zip_etl.commands"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli():
    """Scale a pandas ETL job over a big PostgreSQL table: cleaned_companies, one partition per US zip code."""


for command in (seed_command, demo_command, launch_command, refresh_command, sizing_command, checks_command,
                check_raw_command, migrate_command, load_fixtures_command, db_command, rules_command):
    cli.add_command(command)
for entry_point in entry_points(group=COMMANDS_ENTRY_POINT):
    cli.add_command(entry_point.load(), entry_point.name)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return its exit status (a database problem: one line, status 2)."""
    warnings.filterwarnings("ignore", category=UserWarning)
    from zip_etl.db.connection import DatabaseError

    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        cli.main(args=argv, prog_name="zip-etl", standalone_mode=False)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        return 130
    except DatabaseError as error:
        click.echo(f"zip-etl: {error}", err=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
