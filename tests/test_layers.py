"""The layers stay apart: routes parse, call a service and answer; the UI calls services."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO_ROOT

ROUTES = sorted((REPO_ROOT / "api" / "routes").glob("*.py"))
UI = sorted((REPO_ROOT / "annotator").rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _queries(tree: ast.Module) -> list[str]:
    """``session.exec(...)``, ``select(...)`` and ``session.execute(...)`` calls, by line."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in ("exec", "execute", "scalars"):
            found.append(f"line {node.lineno}: .{f.attr}(")
        elif isinstance(f, ast.Name) and f.id == "select":
            found.append(f"line {node.lineno}: select(")
    return found


def _api_imports(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found += [f"line {node.lineno}: {n}" for n in names if n == "api" or n.startswith("api.")]
    return found


def test_there_are_routes_and_ui_modules_to_check() -> None:
    assert len(ROUTES) >= 10 and any(p.name == "app.py" for p in UI)


@pytest.mark.parametrize("path", ROUTES, ids=lambda p: p.name)
def test_routes_run_no_queries(path: Path) -> None:
    assert _queries(_tree(path)) == [], f"{path.name}: move the query into services/"


@pytest.mark.parametrize("path", UI, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_ui_does_not_import_the_api(path: Path) -> None:
    assert _api_imports(_tree(path)) == [], f"{path.name}: call services/, not api/"


def test_the_checks_catch_what_they_look_for() -> None:
    bad = ast.parse(
        "from api.routes.dashboard import x\nimport api.deps\n"
        "rows = session.exec(select(User)).all()\n"
    )
    assert len(_api_imports(bad)) == 2 and len(_queries(bad)) == 2
