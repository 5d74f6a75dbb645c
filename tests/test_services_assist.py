"""The workspace's assistance as a service: prompt errors as sentences, the per-photo cache,
polygon simplification, and one ``ASSIST_MAX_SIDE`` for the API and the embed job."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import seed_workspace
from conftest import REPO_ROOT

from core.geometry import Polygon, Shape
from models.assist import AssistResult
from services.accounts.projects import get_or_create_project
from services.errors import Invalid, NotFound
from services.training import assist


def _circle(cx: float, cy: float, r: float, n: int = 64) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _points(shape: Shape) -> int:
    return sum(len(p.exterior) + sum(len(h) for h in p.holes) for p in shape.polygons)


@pytest.mark.parametrize(
    "shape",
    [
        Shape([Polygon(_circle(50, 50, 40))]),
        Shape([Polygon(_circle(50, 50, 40), (_circle(50, 50, 15),))]),  # a hole
        Shape([Polygon(_circle(30, 30, 20)), Polygon(_circle(90, 90, 20))]),  # two parts
    ],
    ids=["disc", "disc-with-hole", "two-discs"],
)
def test_simplify_shape_keeps_parts_and_holes_with_fewer_points(shape: Shape) -> None:
    out = assist.simplify_shape(shape, 1.0)
    assert out is not None and len(out.polygons) == len(shape.polygons)
    for a, b in zip(out.polygons, shape.polygons, strict=True):
        assert len(a.holes) == len(b.holes)
    assert _points(out) < _points(shape)
    assert abs(out.area - shape.area) / shape.area < 0.1
    assert assist.simplify_shape(shape, 0.0) is shape  # no tolerance: unchanged


def test_assist_max_side_is_defined_once() -> None:
    """The API's assistance and the embed job must embed the same pixels to share SAM's cache."""
    found = []
    for path in REPO_ROOT.rglob("*.py"):
        rel = path.relative_to(REPO_ROOT)
        if rel.parts[0] in (".venv", "tests") or "site-packages" in rel.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign):
                targets = [node.target]
            found += [str(rel) for t in targets if getattr(t, "id", None) == "ASSIST_MAX_SIDE"]
    assert found == ["services/training/assist.py"]


@pytest.fixture
def seeded(tmp_path: Path):
    from core.config import reset_settings
    from db.session import reset_engine

    assist.clear_cache()
    yield seed_workspace(tmp_path / "data", n_synthetic=assist.CACHE_SIZE + 1)
    assist.clear_cache()
    reset_engine()
    reset_settings()


@pytest.mark.parametrize(
    "prompt,needle",
    [
        ({}, "at least one point or a box"),
        ({"points": [[1, 2]], "labels": []}, "one label"),
        ({"points": [[300, 240]], "labels": [0]}, "foreground point"),  # the back end's check
        ({"box": [10, 10, 10.2, 10.2]}, "empty"),
    ],
)
def test_unanswerable_prompts_are_invalid_with_a_sentence(seeded, prompt, needle) -> None:
    from db.session import session_scope

    with session_scope() as s, pytest.raises(Invalid, match=needle):
        assist.assist(s, seeded.image_ids[0], project=get_or_create_project(s), **prompt)


def test_assist_answers_in_image_pixels_and_caches_the_photo(seeded) -> None:
    from db.session import session_scope

    img = seeded.image_ids[0]
    with session_scope() as s:
        project = get_or_create_project(s)
        assert assist.prepare(s, img, project=project) == "grabcut"  # no SAM, no assist_net
        first = assist.prepared(s, img)
        result = assist.assist(s, img, project=project, box=[96, 150, 544, 330], tolerance=2)
        assert assist.prepared(s, img) is first  # embedded once
    assert isinstance(result, AssistResult) and result.backend == "grabcut"
    x0, y0, x1, y1 = result.shape.bbox  # the synthetic car body spans x 106..533, y 160..320
    assert 80 <= x0 and x1 <= 560 and 140 <= y0 and y1 <= 340


def test_the_cache_keeps_the_last_few_photos(seeded) -> None:
    from db.session import session_scope

    ids = seeded.image_ids
    with session_scope() as s:
        first = assist.prepared(s, ids[0])
        for image_id in ids[1:]:
            assist.prepared(s, image_id)
        assert assist.prepared(s, ids[-1]) is assist.prepared(s, ids[-1])
        assert assist.prepared(s, ids[0]) is not first  # evicted, embedded again
        with pytest.raises(NotFound, match="image 999999 does not exist"):
            assist.prepared(s, 999999)
