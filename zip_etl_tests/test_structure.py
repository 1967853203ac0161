"""The package's structure, as a person would check it: no import cycles between modules or between
subpackages, private Dagster names in one module only, and nothing of the tooling in what Dagster
loads. `python -m pytest zip_etl_tests/test_structure.py -q` is the command that shows it."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "zip_etl"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the zip_etl modules it imports (at any depth of its code, lazy imports included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                # `from package import module` depends on that module; any other name, on `base` itself.
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith("zip_etl"):
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one node (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The same arrows between subpackages (zip_etl.cli, zip_etl.db, ...; top-level modules stand alone)."""
    def room(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else module

    rooms: dict[str, set[str]] = {}
    for module, targets in graph.items():
        rooms.setdefault(room(module), set()).update(room(t) for t in targets if room(t) != room(module))
    return rooms


def test_no_import_cycle_between_modules():
    assert cycles(import_graph()) == []


def test_no_import_cycle_between_subpackages():
    assert cycles(package_graph(import_graph())) == []


def test_private_dagster_names_live_in_one_module():
    users = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if re.search(r"dagster\._", p.read_text()))
    assert users == ["zip_etl/dagster_internals.py"]


def test_tests_and_tooling_reach_dagster_internals_through_their_contract_modules():
    """Outside the package too: the runtime's internals through zip_etl.dagster_internals, Dagster's
    stale-status resolver (a test and benchmark aid) through zip_etl_tools/stale_status.py, and the
    contract test itself, which checks them."""
    users = sorted(str(p.relative_to(ROOT)) for folder in ("zip_etl_tests", "zip_etl_tools", "scripts")
                   for p in (ROOT / folder).rglob("*.py") if re.search(r"dagster\._", p.read_text()))
    assert users == ["zip_etl_tests/test_dagster_internals.py",
                     "zip_etl_tools/stale_status.py"]


def test_the_runtime_package_never_imports_the_tooling():
    imported = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {(path.name, alias.name.split(".")[0]) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                imported.add((path.name, node.module.split(".")[0]))
    assert sorted(i for i in imported if i[1] in {"zip_etl_tools", "zip_etl_tests"}) == []
