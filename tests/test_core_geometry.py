from __future__ import annotations

import numpy as np
import pytest

from core.geometry import (
    GeometryError,
    Shape,
    as_ring,
    box_iou,
    mask_iou,
    mask_to_shape,
    shape_to_mask,
)
from core.instances import Instances

SQUARE_WITH_HOLE = [
    {"exterior": [[1, 1], [7, 1], [7, 7], [1, 7]], "holes": [[[3, 3], [5, 3], [5, 5], [3, 5]]]}
]
TWO_PARTS = [
    {"exterior": [[0, 0], [2, 0], [2, 2], [0, 2]]},
    {"exterior": [[4, 4], [8, 4], [8, 8], [4, 8]]},
]


@pytest.mark.parametrize(
    "geometry, expected_pixels",
    [
        (SQUARE_WITH_HOLE, 36 - 4),
        (TWO_PARTS, 4 + 16),
        ([{"exterior": [[0, 0], [8, 0], [0, 8]]}], 28),  # 3 points; centres on the edge are out
    ],
)
def test_rasterise_counts_pixel_centres(geometry, expected_pixels):
    mask = Shape.from_json(geometry).to_mask(8, 8)
    assert mask.sum() == expected_pixels


@pytest.mark.parametrize(
    "points, message",
    [
        ([[0, 0], [1, 1]], "at least 3 points"),
        ([[0, 0], [1, float("nan")], [2, 2]], "finite"),
        ([0, 1, 2], "even length"),
        ([[[0, 0]]], "shaped"),
    ],
)
def test_bad_rings_raise_sentences(points, message):
    with pytest.raises(GeometryError, match=message):
        as_ring(points)


def test_closed_ring_is_stored_open():
    assert len(as_ring([[0, 0], [4, 0], [4, 4], [0, 0]])) == 3


def test_mask_to_shape_keeps_holes_and_parts_exactly():
    rng = np.random.default_rng(0)
    for _ in range(100):
        m = np.zeros((16, 16), bool)
        for _ in range(3):
            x, y = rng.integers(0, 13, 2)
            w, h = rng.integers(1, 6, 2)
            m[y : y + h, x : x + w] = True
        m[rng.integers(0, 16), rng.integers(0, 16)] = False
        shape = mask_to_shape(m, tolerance=0, min_area=0)
        assert shape is not None
        assert (shape_to_mask(shape, 16, 16) == m).all()
    holed = Shape.from_json(SQUARE_WITH_HOLE).to_mask(8, 8)
    traced = mask_to_shape(holed, tolerance=0, min_area=0)
    assert len(traced.polygons) == 1 and len(traced.polygons[0].holes) == 1


@pytest.mark.parametrize("mask", [np.zeros((5, 5), bool), np.ones((0, 0), bool)])
def test_empty_mask_gives_none(mask):
    assert mask_to_shape(mask) is None


def test_ious():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert box_iou(
        np.array([[0, 0, 2, 2]]), np.array([[1, 1, 3, 3], [5, 5, 6, 6]])
    ) == pytest.approx(np.array([[1 / 7, 0]]))


def test_json_round_trip():
    shape = Shape.from_json(SQUARE_WITH_HOLE + TWO_PARTS)
    assert Shape.from_json(shape.to_json()).almost_equal(shape)
    assert shape.area == pytest.approx(32 + 4 + 16)
    assert shape.bbox.tolist() == [0, 0, 8, 8]


def test_instances_validate_and_slice():
    shapes = [Shape.from_json(SQUARE_WITH_HOLE), Shape.from_json(TWO_PARTS)]
    inst = Instances(shapes, [1, 40], probs={"damage": np.eye(2, 27)})
    assert inst.boxes.shape == (2, 4)
    sub = inst[np.array([False, True])]
    assert len(sub) == 1 and sub.class_ids.tolist() == [40]
    assert len(Instances.concat([inst, sub])) == 3
    with pytest.raises(ValueError, match=r"probs\['damage'\] must be shaped \(N=2, C\)"):
        Instances(shapes, [1, 2], probs={"damage": np.ones((3, 27))})
    with pytest.raises(ValueError, match="class_ids has 1 entries but there are 2 shapes"):
        Instances(shapes, [1])


def test_speck_prefilter_never_changes_the_traced_shape(monkeypatch):
    """The bounding-box test that skips specks early gives exactly the shapes of the full path."""
    import core.geometry as g

    rng = np.random.default_rng(7)
    masks = [rng.random((120, 160)) > p for p in (0.5, 0.6, 0.7)]
    masks.append(np.pad(np.ones((6, 6), bool), 20))  # area 36: kept at 16, dropped at 40
    cases = [(1.0, 16.0), (1.0, 4.0), (0.0, 0.5), (2.0, 40.0)]
    fast = [g.mask_to_shape(m, tolerance=t, min_area=a) for m in masks for t, a in cases]
    monkeypatch.setattr(g, "_too_small", lambda cnt, min_area: False)
    full = [g.mask_to_shape(m, tolerance=t, min_area=a) for m in masks for t, a in cases]
    assert fast[-3] is not None and fast[-1] is None
    for a, b in zip(fast, full, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            assert len(a.polygons) == len(b.polygons)
            for p, q in zip(a.polygons, b.polygons, strict=True):
                np.testing.assert_array_equal(p.exterior, q.exterior)
                assert len(p.holes) == len(q.holes)
