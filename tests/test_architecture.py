"""The layer rules, read from the source with `ast` (every import, also those inside functions).

    domain (pure)  <-  config, locations, package_data  <-  ledger (+ ledger_schema), transports  <-  backends
                   <-  services  <-  presentation  <-  ui, cli

A module may import its own layer and the layers to its left. Only ui/ imports textual; the UI
never imports the CLI; nothing imports `fceval_tui.cli` but the CLI and `__main__`; module-level
imports form no cycle between modules.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.cli import REPO

PACKAGE = REPO / "fceval_tui"

# Rank of each part of the package; a module may import parts of equal or lower rank.
RANKS = {
    "errors": 0,
    "domain": 0,
    "config": 1,
    "locations": 1,
    "package_data": 1,
    "ledger": 2,
    "ledger_schema": 2,
    "ledger_pools": 2,
    "ledger_costs": 2,
    "transports": 2,
    "backends": 3,
    "services": 4,
    "presentation": 5,
    "ui": 6,
    "cli": 6,
    "__main__": 7,
}


@dataclass(frozen=True)
class Import:
    source: str  # dotted name of the importing module
    target: str  # dotted name imported (a module or a name in one)
    line: int
    top_level: bool  # at module level (not inside a function or class body)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> Iterator[Import]:
    source = module_name(path)
    tree = ast.parse(path.read_text(), str(path))
    top = set(map(id, tree.body))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(source, alias.name, node.lineno, id(node) in top)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against the importing package
                package = source.split(".") if path.name == "__init__.py" else source.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                yield Import(source, f"{base}.{alias.name}" if base else alias.name, node.lineno, id(node) in top)


def all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path)]


def part(module: str) -> str:
    """The top-level part of the package a dotted name is in (`fceval_tui.__version__` is the package's own)."""
    name = module.split(".")[1] if module.count(".") else "__init__"
    return name if name in RANKS else "__init__"


def ours(target: str) -> bool:
    return target == "fceval_tui" or target.startswith("fceval_tui.")


def test_every_part_of_the_package_has_a_layer():
    parts = {module_name(p).split(".")[1] for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem != "__init__"}
    assert parts <= set(RANKS), f"give these a rank in RANKS: {sorted(parts - set(RANKS))}"


def test_imports_point_down_only():
    upward = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in all_imports()
        if ours(imp.target)
        and imp.target != "fceval_tui"
        and part(imp.target) != "__init__"
        and RANKS[part(imp.target)] > RANKS.get(part(imp.source), max(RANKS.values()))
    ]
    assert upward == []


def test_the_domain_imports_only_the_domain_and_errors():
    outside = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in all_imports()
        if part(imp.source) == "domain" and ours(imp.target) and part(imp.target) not in ("domain", "errors")
    ]
    assert outside == []


def test_domain_does_no_io():
    forbidden = {"boto3", "botocore", "sqlite3", "subprocess", "libtmux", "textual", "os", "socket"}
    found = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in all_imports()
        if part(imp.source) == "domain" and imp.target.split(".")[0] in forbidden
    ]
    assert found == []


def test_no_module_below_ui_imports_textual():
    offenders = [
        f"{imp.source}:{imp.line}"
        for imp in all_imports()
        if imp.target.split(".")[0] == "textual" and part(imp.source) != "ui"
    ]
    assert offenders == []


@pytest.mark.parametrize(("layer", "forbidden"), [("backends", "services"), ("ui", "cli"), ("transports", "backends")])
def test_named_layer_rules(layer, forbidden):
    found = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in all_imports()
        if part(imp.source) == layer and ours(imp.target) and part(imp.target) == forbidden
    ]
    assert found == []


def _resolve(target: str, modules: set[str]) -> str | None:
    """The module a dotted import name lands in (`a.b.name` -> `a.b` when `a.b.name` is no module)."""
    while target and target not in modules:
        target = target.rpartition(".")[0]
    return target or None


def test_module_level_imports_have_no_cycle():
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in all_imports():
        if imp.top_level and ours(imp.target):
            target = _resolve(imp.target, modules)
            # A package importing its own submodules (to re-export them) is not a cycle.
            if target and target != imp.source and not target.startswith(imp.source + "."):
                graph[imp.source].add(target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert cycles == []


def test_no_module_is_over_500_lines():
    long = {str(p.relative_to(REPO)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}
