"""Every Python file of the repository compiles and passes the linter (`ruff check`, configured in
pyproject.toml): the tooling, the scripts and the tests too, which the rest of the suite may not import."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_OURS = {".venv", "venv", ".git", "build", "node_modules", ".zip_etl"}


def our_python_files() -> list[Path]:
    """The repository's Python files, without descending into virtualenvs or hidden folders: besides
    being large, a hidden folder may vanish mid-walk (`dg launch` and `dagster dev` make a temporary
    `.tmp_dagster_home_*` here while other tests run beside this one)."""
    found = []
    for folder, subfolders, names in os.walk(ROOT):  # a folder gone before it is read is skipped
        subfolders[:] = [name for name in subfolders if name not in NOT_OURS and not name.startswith(".")]
        found += [Path(folder, name) for name in names if name.endswith(".py")]
    return found


def test_every_python_file_compiles():
    files = our_python_files()
    assert len(files) > 50
    broken = []
    for path in files:
        try:
            compile(path.read_bytes(), str(path), "exec")
        except SyntaxError as error:
            broken.append(f"{path.relative_to(ROOT)}:{error.lineno}: {error.msg}")
    assert not broken, broken


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(ROOT)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
