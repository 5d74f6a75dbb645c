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


# ---------- the whole import graph ----------

#: Lower layers first. A module may import its own layer and those below, never above;
#: function-local imports count too (a lazy import is still an arrow).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core",),
    ("db",),
    ("exports", "active_learning"),
    ("models",),
    ("services",),
    ("jobs",),
    ("api", "annotator"),
    ("app",),
    ("cli",),
)
#: The rooms of services/, lower first, with the shared modules every room may use.
ROOMS: tuple[str, ...] = (
    "errors",
    "events",
    "accounts",
    "labelling",
    "review",
    "training",
    "data_io",
    "integrations",
    "claims",
    "dashboard",
)
PACKAGES = [p for layer in LAYERS for p in layer if p != "app"]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {"app": REPO_ROOT / "app.py"}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """``(module, line)`` of every in-repo module ``name`` imports, anywhere in the file."""

    def resolve(target: str) -> str | None:
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = []
    for node in ast.walk(_tree(path)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            # `from pkg import module` imports the module; `from module import name`, the module
            subs = [f"{base}.{a.name}" for a in node.names]
            targets = [t for t in subs if t in known] or [base]
        for t in targets:
            r = resolve(t)
            if r and r != name:
                out.append((r, node.lineno))
    return sorted(set(out))


def import_graph() -> dict[str, list[tuple[str, int]]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _rank(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def _room(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "services" or len(parts) < 2:
        return None
    return ROOMS.index(parts[1])


def upward_imports(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    bad = []
    for src, targets in graph.items():
        for dst, line in targets:
            if _rank(dst) > _rank(src):
                bad.append(f"{src}:{line} imports {dst} (a higher layer)")
            elif _room(src) is not None and _room(dst) is not None and _room(dst) > _room(src):
                bad.append(f"{src}:{line} imports {dst} (a later services room)")
    return bad


def circles(graph: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in graph.get(v, []):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def private_imports(modules: dict[str, Path]) -> list[str]:
    bad = []
    for name, path in modules.items():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                bad += [
                    f"{name}:{node.lineno} takes {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return bad


def test_every_module_sits_in_a_layer_and_every_service_in_a_room() -> None:
    modules = _modules()
    assert len(modules) > 150
    services = [m for m in modules if m.startswith("services.")]
    assert all(_room(m) is not None for m in services), services
    flat = [
        m for m in services if m.count(".") == 1 and m.split(".")[1] not in ("errors", "events")
    ]
    for room in flat:  # a room is a package with a docstring that says what it is for
        doc = ast.get_docstring(_tree(modules[room]))
        assert doc and "\n" not in doc.strip(), f"{room}: give the room a one-line docstring"


def test_no_import_runs_up_a_layer() -> None:
    assert upward_imports(import_graph()) == []


def test_no_circle_between_files() -> None:
    assert circles(import_graph()) == []


def test_no_private_name_crosses_modules() -> None:
    assert private_imports(_modules()) == []


def test_the_graph_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    graph = {
        "services.labelling.leases": [("services.review.quality", 3), ("jobs.service", 9)],
        "services.review.quality": [("services.labelling.leases", 4)],
        "jobs.service": [],
        "core.files": [("models.base", 1)],
        "models.base": [],
    }
    assert upward_imports(graph) == [
        "services.labelling.leases:3 imports services.review.quality (a later services room)",
        "services.labelling.leases:9 imports jobs.service (a higher layer)",
        "core.files:1 imports models.base (a higher layer)",
    ]
    assert circles(graph) == [["services.labelling.leases", "services.review.quality"]]
    # a function-local import is an arrow too, and so is a relative one
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def f():\n    from jobs.service import create_job\n    from . import rounds\n"
    )
    known = {"jobs", "jobs.service", "jobs.rounds", "jobs.probe"}
    assert _imports("jobs.probe", probe, known) == [("jobs.rounds", 3), ("jobs.service", 2)]
