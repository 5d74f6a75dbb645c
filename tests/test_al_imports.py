"""``active_learning/`` is pure numpy: no store, no services, no web framework.

The strategies, uncertainty, diversity and committee code must run on arrays alone (the
benchmark runs them without a database); the store glue lives in ``services/training/selection.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "active_learning"
#: Top-level packages the active-learning code must never import, even lazily.
FORBIDDEN = {"sqlmodel", "sqlalchemy", "db", "services", "api", "jobs", "annotator", "fastapi"}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in the file, top-level or inside a function."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


FILES = sorted(PACKAGE.glob("*.py"))


def test_the_package_has_files():
    assert {"strategies.py", "committee.py", "uncertainty.py"} <= {f.name for f in FILES}


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_module_imports_no_store(path):
    bad = [
        f"{path.name}:{line} imports {mod}"
        for line, mod in imported_modules(path)
        if mod.split(".")[0] in FORBIDDEN
    ]
    assert not bad, "active_learning/ must stay numpy-only; move this to services/: " + "; ".join(
        bad
    )


def test_the_checker_sees_lazy_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from db.models import Image\n    import sqlmodel\n")
    assert [m for _, m in imported_modules(f)] == ["db.models", "sqlmodel"]
