"""Fixtures shared by every test module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
#: Real public car photos with polygon labels; absent on users' machines.
SHARED_DATASETS = Path(os.environ.get("PANELBEATER_SHARED_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))

requires_datasets = pytest.mark.skipif(
    not SHARED_DATASETS.is_dir(),
    reason=f"real datasets not found at {SHARED_DATASETS} (set PANELBEATER_SHARED_DATASETS)",
)

# Several agents and CI share two cores: keep torch from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture
def datasets_dir() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS
