"""Every Python file of the repository compiles and passes the linter (`ruff check`, configured in
pyproject.toml): the tooling, the scripts and the tests too, which the rest of the suite may not import."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_OURS = {".venv", "venv", ".git", "build", "node_modules", ".zip_etl"}


def test_every_python_file_compiles():
    files = [p for p in ROOT.rglob("*.py") if not NOT_OURS & set(p.relative_to(ROOT).parts)]
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
