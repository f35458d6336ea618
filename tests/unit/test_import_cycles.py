"""No two chimera modules import each other, directly or around a loop (STYLE.md): checked statically over every
module of the package, imports inside functions and under TYPE_CHECKING included, since each is a dependency
a reader has to hold in mind (and a deferred import only hides a loop until the day it runs first)."""

from __future__ import annotations

import ast
from pathlib import Path

CHIMERA = Path(__file__).resolve().parents[2] / "chimera"


def _module_name(path: Path) -> str:
    parts = path.relative_to(CHIMERA.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in CHIMERA.rglob("*.py")}


def _imported(module: str, node: ast.AST) -> set[str]:
    """The chimera modules one import statement loads: a module, or a package and the submodules it names."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    if not isinstance(node, ast.ImportFrom):
        return set()
    base = node.module or ""
    if node.level:  # relative: `from . import x` in chimera/a/b.py (or chimera/a/__init__.py) is chimera.a
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    return {base} | {f"{base}.{alias.name}" for alias in node.names}


def import_graph() -> dict[str, set[str]]:
    """module -> the chimera modules it imports anywhere in its file (a package's __init__ counted as importing
    the package's parents, as Python runs them first)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names |= _imported(module, node)
        targets = set()
        for name in names:
            while name and name not in MODULES:  # `from chimera.x import function` loads chimera.x
                name = name.rpartition(".")[0]
            if name:
                targets.add(name)
        graph[module] = targets - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One loop through each strongly connected group of two or more modules (Tarjan), as a path a -> b -> a."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_loop(graph, group) for group in groups]


def _loop(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """The shortest path from the group's first module back to itself, inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{group} is not strongly connected")


def test_the_checker_sees_a_loop_and_names_it():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_holds_deferred_and_type_checking_imports():
    graph = import_graph()
    assert "chimera.cli" in graph and "chimera.commands" in graph["chimera.cli"]
    assert "chimera.train.run" in graph["chimera.api"]  # imported inside a function


def _described(loops: list[list[str]]) -> str:
    return "import cycles: " + "; ".join(" -> ".join(loop) for loop in loops)


def test_no_chimera_module_imports_itself_around_a_loop():
    found = cycles(import_graph())
    assert not found, _described(found)
