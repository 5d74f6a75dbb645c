"""jobs/ imports in one direction: service -> queue -> runner -> tasks -> rounds -> context."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

JOBS = Path(__file__).resolve().parents[1] / "jobs"


def jobs_imports(source: str) -> set[str]:
    """The ``jobs.*`` modules a source imports anywhere (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "jobs":
                found |= {f"jobs.{a.name}" for a in node.names}
            elif node.module.startswith("jobs."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("jobs.")}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


@pytest.mark.parametrize(
    "graph,cycle",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
        ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
        ({"a": {"a"}}, ["a", "a"]),
    ],
)
def test_find_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


def test_jobs_modules_import_without_a_cycle():
    graph = {
        f"jobs.{p.stem}": jobs_imports(p.read_text()) - {f"jobs.{p.stem}"}
        for p in JOBS.glob("*.py")
        if p.stem != "__init__"
    }
    assert find_cycle(graph) is None, f"import cycle in jobs/: {' -> '.join(find_cycle(graph))}"


def test_jobs_layers_point_one_way():
    order = ["service", "queue", "runner", "tasks", "rounds", "context"]
    for i, name in enumerate(order):
        imported = jobs_imports((JOBS / f"{name}.py").read_text())
        upward = {f"jobs.{m}" for m in order[: i + 1]} & imported
        assert not upward, f"jobs/{name}.py imports {sorted(upward)}, which sit above it"
