"""Under CI=true a skipped test fails the run; elsewhere it still skips with its reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SKIPPING = """
import pytest

def test_needs_a_service():
    pytest.skip("the service is not running")

def test_fine():
    pass
"""


@pytest.mark.parametrize(
    "ci,expected", [("true", "1 failed, 1 passed"), ("", "1 passed, 1 skipped")]
)
def test_a_skip_fails_only_under_ci(tmp_path: Path, ci: str, expected: str):
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_skipping.py").write_text(SKIPPING)
    tests = Path(__file__).resolve().parent
    # the copied conftest imports the suite's shared modules and the project
    path = os.pathsep.join([str(tests), str(tests.parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "CI": ci, "PYTHONPATH": path}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert expected in run.stdout, run.stdout
    if ci:
        assert "the service is not running" in run.stdout
