"""The version of the cleaning code, derived from the code itself.

`cleaned_companies` declares it as its Dagster code version, and every partition records it in its
data provenance, so changing what the code does makes every built partition stale (in `zip-etl
refresh --plan`, the refresh sensor and the UI) with no constant to remember to bump.

What is hashed: the syntax tree of every module of `zip_etl/transform/` (so comments, docstrings,
blank lines and formatting do not count, nor do the rules' examples, the `examples=` of their
declarations, which document what the code does; any change to code does) and the declarations of
the raw and cleaned tables (names, types, nullability, keys). Library versions are not hashed. To rebuild
everything anyway (say, after upgrading pyarrow), materialize all partitions from the UI, or run
`zip-etl refresh --all`.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
from pathlib import Path

from zip_etl import transform
from zip_etl.tables import CLEANED_COMPANIES, RAW_COMPANIES, Table


def _without_docs(tree: ast.AST) -> ast.AST:
    """The tree without docstrings and without the examples of the rules' declarations."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call):
                    decorator.keywords = [k for k in decorator.keywords if k.arg != "examples"]
    return tree


def code_digest(paths: list[Path]) -> str:
    """sha256 over the syntax trees of `paths` (docstrings and examples left out), in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        tree = _without_docs(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        digest.update(path.name.encode())
        digest.update(ast.dump(tree, annotate_fields=False, include_attributes=False).encode())
    return digest.hexdigest()


def _declaration(table: Table) -> str:
    return repr((table.name, [(c.name, c.sql_type, c.nullable) for c in table.columns], table.primary_key,
                 table.partition_column))


NOT_CLEANING = {"examples.py"}
"""Modules of zip_etl/transform/ that clean nothing: running and showing the rules' examples."""


def cleaning_code_version(transform_dir: Path | None = None,
                          tables: tuple[Table, ...] = (RAW_COMPANIES, CLEANED_COMPANIES)) -> str:
    """A short hash of the transform's code (the modules of its folder) and of the declarations of the
    tables it reads and writes."""
    folder = transform_dir or Path(transform.__file__).parent
    digest = hashlib.sha256()
    digest.update(code_digest(sorted(p for p in folder.glob("*.py") if p.name not in NOT_CLEANING)).encode())
    for table in tables:
        digest.update(_declaration(table).encode())
    return digest.hexdigest()[:16]


def transform_code_version(function, tables: tuple[Table, ...]) -> str:
    """The code version of a transform, as `cleaning_code_version` gives zip_etl's own: its module's
    folder (every module there, as zip_etl's transform is a package) and the tables' declarations."""
    return cleaning_code_version(Path(inspect.getfile(function)).resolve().parent, tables)


CLEANING_CODE_VERSION = cleaning_code_version()
