"""What a save accepts, and the bow-tie repair: ``core.geometry.check_geometry`` and
``repair_geometry`` on the cases the canvas shares (tests/data/geometry_cases.json; the
canvas side is in test_canvas_geometry.py), and the save that keeps going past a bad instance
(``services.labelling.saves.save_annotation_set`` with ``keep_going``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from browser_helpers import seed_workspace
from conftest import REPO_ROOT

from core.geometry import (
    GeometryError,
    Shape,
    check_geometry,
    fit_to_image,
    repair_geometry,
    split_ring,
)
from db.models import AnnotationRevision, Image
from services.accounts.projects import get_or_create_project
from services.errors import Forbidden, Invalid, VersionConflict
from services.labelling import readers, saves

CASES = json.loads((REPO_ROOT / "tests" / "data" / "geometry_cases.json").read_text())


def _reason(geometry, case) -> str | None:
    try:
        check_geometry(geometry, case["width"], case["height"], max_vertices=case["max_vertices"])
    except GeometryError as e:
        return str(e)
    return None


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_shared_cases_hold_for_core(case):
    assert _reason(case["geometry"], case) == case["reason"]
    if not case["parses"]:
        with pytest.raises(GeometryError):
            Shape.from_json(case["geometry"])
        return
    rep = repair_geometry(case["geometry"])
    assert (rep if rep != case["geometry"] else None) == case["repaired"]
    if case["repaired"] is not None:
        assert _reason(rep, case) == case["repaired_reason"]


def test_the_cases_cover_what_the_issue_names():
    by = {c["name"]: c for c in CASES}
    assert by["three_clicks_on_one_spot"]["reason"] and by["collinear_points"]["reason"]
    assert by["bow_tie"]["reason"] == "polygon has zero area"
    assert by["bow_tie"]["repaired_reason"] is None and len(by["bow_tie"]["repaired"]) == 2
    assert by["tiny_area"]["reason"] is None and by["self_touching"]["reason"] is None
    assert by["vertex_at_1e300"]["reason"] is None  # stored clipped, not refused
    assert by["far_beside_the_photo"]["reason"] == "polygon lies outside the 100x80 image"
    assert "2 parts have 6 points" in by["parts_over_vertex_limit"]["reason"]


def test_a_vertex_far_off_is_clipped_to_the_photo_and_saves_again():
    """A vertex at 1e300 was stored as sent: COCO's area became null, pycocotools crashed."""
    far = [{"exterior": [[0, 0], [1e300, 0], [0, 1e300]], "holes": []}]
    stored = check_geometry(far, 640, 480, max_vertices=100)
    assert stored.to_json() == [
        {"exterior": [[0.0, 0.0], [640.0, 0.0], [640.0, 480.0], [0.0, 480.0]], "holes": []}
    ]
    assert check_geometry(stored.to_json(), 640, 480, max_vertices=100).almost_equal(stored)
    beside = [{"exterior": [[-10, -10], [1e6, -10], [-10, -5]], "holes": []}]
    with pytest.raises(GeometryError, match="outside the 640x480 image"):
        check_geometry(beside, 640, 480, max_vertices=100)


@pytest.mark.parametrize("rule", ["save", "import"])
def test_a_hole_reaching_far_is_clipped_too(rule):
    """The far test read the outlines only (``Shape.bbox``), so a hole kept its 1e300."""
    holed = [
        {
            "exterior": [[10, 10], [600, 10], [600, 470], [10, 470]],
            "holes": [[[20, 20], [30, 20], [25, 1e300]]],
        }
    ]
    if rule == "save":
        shape = check_geometry(holed, 640, 480, max_vertices=100)
    else:
        shape, clipped = fit_to_image(Shape.from_json(holed), 640, 480, max_vertices=100)
        assert clipped
    points = np.concatenate([r for p in shape.polygons for r in p.rings()])
    assert (points >= 0).all() and (points <= [640, 480]).all()
    assert len(shape.polygons[0].holes) == 1


@pytest.mark.parametrize("rule", ["save", "import"])
def test_the_points_of_all_parts_count_against_the_vertex_limit(rule):
    triangles = [
        {"exterior": [[0, 0], [10, 0], [0, 10]], "holes": []},
        {"exterior": [[20, 20], [30, 20], [20, 30]], "holes": []},
    ]
    with pytest.raises(GeometryError, match="its 2 parts have 6 points together"):
        if rule == "save":
            check_geometry(triangles, 100, 80, max_vertices=5)
        else:
            fit_to_image(Shape.from_json(triangles), 100, 80, max_vertices=5)
    assert check_geometry(triangles, 100, 80, max_vertices=6)


def test_a_bow_tie_splits_into_its_two_triangles_with_the_same_pixels():
    bow = [[0, 0], [10, 10], [10, 0], [0, 10]]
    assert split_ring(bow) == [[[5, 5], [10, 10], [10, 0]], [[5, 5], [0, 10], [0, 0]]]
    lop = [[0.0, 0.0], [20.0, 20.0], [20.0, 0.0], [0.0, 4.0]]
    whole = Shape.from_json([{"exterior": lop}]).to_mask(24, 24)
    parts = Shape.from_json(repair_geometry([{"exterior": lop, "holes": []}])).to_mask(24, 24)
    # pycocotools fills a bow-tie's two lobes: the split keeps every pixel but the few on the
    # crossing point's rounded edges.
    assert (whole ^ parts).sum() <= 3 and parts.sum() > 100


def test_a_stored_shape_always_saves_again():
    """The rules judge the rounded coordinates the store keeps, so a shape that passes is
    stored as one that passes again (a tiny triangle that rounds to a point is refused up
    front, not stored and then refused on every later save)."""
    tiny = [{"exterior": [[0, 0], [0.001, 0], [0, 0.001]], "holes": []}]
    with pytest.raises(GeometryError):
        check_geometry(tiny, 100, 100, max_vertices=100)
    ok = check_geometry([{"exterior": [[0, 0], [0.1, 0], [0, 0.104]]}], 100, 100, max_vertices=100)
    assert check_geometry(ok.to_json(), 100, 100, max_vertices=100).almost_equal(ok)


# -- the save keeps going -------------------------------------------------------------------------
SQUARE = [{"exterior": [[10.0, 10.0], [60.0, 10.0], [60.0, 60.0], [10.0, 60.0]], "holes": []}]
TRIANGLE = [{"exterior": [[100.0, 100.0], [150.0, 100.0], [120.0, 140.0]], "holes": []}]
POINT = [{"exterior": [[5.0, 5.0], [5.0, 5.0], [5.0, 5.0]], "holes": []}]
LINE = [{"exterior": [[0.0, 0.0], [20.0, 20.0], [40.0, 40.0]], "holes": []}]
BOW_TIE = [{"exterior": [[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0]], "holes": []}]


@pytest.fixture
def seeded(tmp_path: Path):
    from core.config import reset_settings
    from db.session import reset_engine

    yield seed_workspace(tmp_path / "data", n_synthetic=1)
    reset_engine()
    reset_settings()


def _save(s, image_id: int, items: list[dict], *, version: int, role: str = "annotator", **kw):
    from services.accounts.users import get_user

    return saves.save_annotations_as(
        s,
        get_user(s, f"{role}1"),
        project=get_or_create_project(s),
        image_id=image_id,
        expected_version=version,
        annotations=items,
        **kw,
    )


def _revisions(s, image_id: int) -> int:
    from sqlmodel import select

    return len(
        s.exec(select(AnnotationRevision).where(AnnotationRevision.image_id == image_id)).all()
    )


def _item(geometry, client_id=None, **extra) -> dict:
    return {"class_id": 26, "geometry": geometry, "client_id": client_id, **extra}


def test_one_bad_instance_does_not_block_the_others(seeded):
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        # Without keep_going the old contract holds: the whole set is refused, nothing written.
        with pytest.raises(Invalid, match="annotation 2: polygon 1: a polygon needs at least 3"):
            _save(s, image_id, [_item(SQUARE), _item(POINT)], version=0)
        assert s.get(Image, image_id).annotation_version == 0
    with session_scope() as s:
        out = _save(
            s,
            image_id,
            [_item(SQUARE, "a"), _item(POINT, "b"), _item(LINE, 7)],
            version=0,
            keep_going=True,
        )
        assert out["version"] == 1
        assert [(r["index"], r["client_id"], r["id"]) for r in out["rejected"]] == [
            (1, "b", None),
            (2, 7, None),
        ]
        assert out["rejected"][1]["reason"] == "annotation 3: polygon has zero area"
        stored = readers.annotation_dicts(s, image_id)
        assert [a["geometry"] for a in stored] == [SQUARE]
        assert out["created"] == [{"index": 0, "client_id": "a", "id": stored[0]["id"]}]
        square_id = stored[0]["id"]
    # The next save goes through, and an edit that breaks a stored instance keeps the stored
    # version (it is neither changed nor deleted), reported with its id.
    with session_scope() as s:
        out = _save(
            s,
            image_id,
            [_item(LINE, "a", id=square_id), _item(TRIANGLE, "c")],
            version=1,
            keep_going=True,
        )
        assert out["version"] == 2
        assert [(r["client_id"], r["id"]) for r in out["rejected"]] == [("a", square_id)]
        stored = {a["id"]: a["geometry"] for a in readers.annotation_dicts(s, image_id)}
        assert stored[square_id] == SQUARE and TRIANGLE in stored.values()
        revisions = _revisions(s, image_id)
    # Only refusals and nothing else changed: no new version, no revision, still reported.
    with session_scope() as s:
        ids = {a["id"]: a for a in readers.annotation_dicts(s, image_id)}
        tri_id = next(i for i, g in ids.items() if g["geometry"] == TRIANGLE)
        out = _save(
            s,
            image_id,
            [_item(POINT, "a", id=square_id), _item(TRIANGLE, "c", id=tri_id)],
            version=2,
            keep_going=True,
        )
        assert out["version"] == 2 and len(out["rejected"]) == 1
        assert _revisions(s, image_id) == revisions


def test_keep_going_keeps_conflicts_and_the_fake_flag_rule(seeded):
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        _save(s, image_id, [_item(SQUARE)], version=0, keep_going=True)
    with session_scope() as s:
        with pytest.raises(VersionConflict):
            _save(s, image_id, [_item(TRIANGLE), _item(POINT)], version=0, keep_going=True)
    with session_scope() as s:
        with pytest.raises(Forbidden):
            _save(
                s,
                image_id,
                [_item(TRIANGLE, attributes={"fake": True}), _item(POINT)],
                version=1,
                keep_going=True,
            )
        assert s.get(Image, image_id).annotation_version == 1


def test_a_bow_tie_is_saved_as_its_two_triangles(seeded):
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        out = _save(s, image_id, [_item(BOW_TIE, "x")], version=0, keep_going=True)
        assert out["rejected"] == []
        [stored] = readers.annotation_dicts(s, image_id)
        assert stored["geometry"] == repair_geometry(BOW_TIE)
        assert len(stored["geometry"]) == 2


def test_other_per_instance_rules_are_reported_too(seeded):
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        out = _save(
            s,
            image_id,
            [
                _item(SQUARE, 1),
                {"class_id": 99999, "geometry": TRIANGLE, "client_id": 2},
                _item(TRIANGLE, 3, prediction_id=123456),
                _item(TRIANGLE, 4, id=424242),
                "not an object",
                _item([{"exterior": [[0, 0], [float("nan"), 5], [5, 9]]}], 6),
            ],
            version=0,
            keep_going=True,
        )
        reasons = {r["index"]: r["reason"] for r in out["rejected"]}
        assert sorted(reasons) == [1, 2, 3, 4, 5]
        assert "not in the taxonomy" in reasons[1] and "prediction_id 123456" in reasons[2]
        assert "does not belong" in reasons[3] and "finite" in reasons[5]
        assert len(readers.annotation_dicts(s, image_id)) == 1
