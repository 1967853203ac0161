"""The cleaning code's version follows the code: change a rule in the transform, and every partition
built before reads as stale to `zip-etl refresh --plan` (and so to the sensor, which plans the same
way) and to Dagster's own stale status (the UI's), with no constant to remember to bump."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zip_etl.code_version import CLEANING_CODE_VERSION, cleaning_code_version

ROOT = Path(__file__).resolve().parents[1]


def copy_of_transform(tmp_path: Path) -> Path:
    folder = tmp_path / "transform"
    shutil.copytree(ROOT / "zip_etl" / "transform", folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def test_a_rule_change_changes_the_version_and_a_comment_does_not(tmp_path):
    folder = copy_of_transform(tmp_path)
    assert cleaning_code_version(folder) == CLEANING_CODE_VERSION
    rules = folder / "rules.py"
    source = rules.read_text()
    rules.write_text(source.replace('"""The cleaning rules', '"""The cleaning rules, reworded,', 1)
                     + "\n# a comment changes nothing\n")
    assert cleaning_code_version(folder) == CLEANING_CODE_VERSION  # docstrings and comments do not count
    another_example = source.replace('("1999.0", 1999),', '("1999.0", 1999),\n        ("1999.00", 1999),', 1)
    assert another_example != source
    rules.write_text(another_example)
    assert cleaning_code_version(folder) == CLEANING_CODE_VERSION  # examples document the code: they do not count
    rules.write_text(source.replace("MIN_FOUNDED_YEAR = 1800", "MIN_FOUNDED_YEAR = 1801"))
    assert cleaning_code_version(folder) != CLEANING_CODE_VERSION
    rules.write_text(source.replace('"mm": 1e6,', '"mm": 1e6, "t": 1e12,'))  # a new suffix
    assert cleaning_code_version(folder) != CLEANING_CODE_VERSION


STALE_IN_DAGSTER = """
import dagster as dg
from zip_etl.definitions import defs
from zip_etl.instance import get_instance
from zip_etl_tools.stale_status import dagster_stale_status_resolver
with get_instance() as instance:
    resolver = dagster_stale_status_resolver(instance, defs)
    print(",".join(str(resolver.get_status(dg.AssetKey("cleaned_companies"), z).value) for z in {zips!r}))
"""


@pytest.mark.slow
def test_changing_a_rule_in_a_copy_makes_every_built_partition_stale(zip_etl_environment, fresh_dagster_storage,
                                                                      tmp_path):
    def zip_etl(*args, cwd=ROOT, env=None):
        return subprocess.run([sys.executable, "-m", "zip_etl.cli.main", *args], cwd=cwd, capture_output=True,
                              text=True, timeout=600, env=env)

    assert zip_etl("seed", "--rows", "300", "--zip-codes", "5").returncode == 0
    built = zip_etl("demo", "--zip-codes", "5", "--workers", "1")
    assert built.returncode == 0, built.stdout + built.stderr
    assert "0 stale and" in zip_etl("refresh", "--plan").stdout

    # The user's throwaway copy of the project, with one rule changed.
    copy = tmp_path / "project"
    shutil.copytree(ROOT / "zip_etl", copy / "zip_etl", ignore=shutil.ignore_patterns("__pycache__"))
    for config in ("dagster.yaml", "dg.toml"):  # dg.toml makes it a dg project, as the defs folder's loader needs
        shutil.copy(ROOT / config, copy / config)
    rules = copy / "zip_etl" / "transform" / "rules.py"
    rules.write_text(rules.read_text().replace("MIN_FOUNDED_YEAR = 1800", "MIN_FOUNDED_YEAR = 1801"))
    env = {**os.environ, "PYTHONPATH": str(copy)}
    plan = zip_etl("refresh", "--plan", cwd=copy, env=env)
    assert plan.returncode == 0, plan.stderr
    assert "5 stale and" in plan.stdout, plan.stdout
    from zip_etl.partitions import ZIP_CODES

    statuses = subprocess.run([sys.executable, "-c", STALE_IN_DAGSTER.format(zips=ZIP_CODES[:5])], cwd=copy, env=env,
                              capture_output=True, text=True, timeout=600)
    assert statuses.stdout.strip().splitlines()[-1] == ",".join(["STALE"] * 5), statuses.stdout + statuses.stderr
    # The project as it is: nothing stale.
    assert "0 stale and" in zip_etl("refresh", "--plan").stdout
