"""Agreement between annotators on hand-made cases with known matches, IoUs and labels."""

from __future__ import annotations

import numpy as np
import pytest

from core.geometry import Polygon, Shape
from core.instances import Instances
from services.review.agreement import (
    class_figures,
    match_instances,
    pairwise_figures,
    quorum_merge,
    summarise,
)

H = W = 40


def boxes(*items: tuple[int, float, float, float, float]) -> Instances:
    """Instances from ``(class_id, x0, y0, x1, y1)`` boxes."""
    if not items:
        return Instances.empty()
    return Instances(
        shapes=[Shape.from_box(*b) for _, *b in items],
        class_ids=np.array([c for c, *_ in items]),
    )


def test_box_rasterises_to_whole_pixels() -> None:
    # The known IoUs below rely on a box covering exactly its pixels.
    assert Shape.from_box(0, 0, 10, 10).to_mask(H, W).sum() == 100


def test_identical_sets_match_fully() -> None:
    a = boxes((1, 0, 0, 10, 10), (2, 20, 20, 30, 30))
    res = match_instances(a, a, height=H, width=W)
    assert [(m.i, m.j) for m in res.matches] == [(0, 0), (1, 1)]
    assert all(m.iou == pytest.approx(1.0) for m in res.matches)
    assert res.label_disagreements == [] and res.unmatched_a == [] and res.unmatched_b == []


def test_known_ious_and_hungarian_beats_greedy() -> None:
    # A0 overlaps B0 (IoU 80/120) and B1 (IoU 0.6); A1 overlaps B0 (IoU 80/120) and B1 only
    # below the threshold. Greedy would take A0-B0 and leave A1 alone; Hungarian pairs A0-B1
    # and A1-B0 (total 1.27 > 0.67).
    a = boxes((1, 0, 0, 10, 10), (1, 4, 0, 14, 10))
    b = boxes((1, 2, 0, 12, 10), (1, 0, 0, 10, 10 * 0.6))
    res = match_instances(a, b, height=H, width=W, iou_threshold=0.5)
    pairs = {(m.i, m.j): m.iou for m in res.matches}
    assert set(pairs) == {(0, 1), (1, 0)}
    assert pairs[(0, 1)] == pytest.approx(0.6)
    assert pairs[(1, 0)] == pytest.approx(80 / 120)


def test_threshold_leaves_poor_overlaps_unmatched() -> None:
    a = boxes((1, 0, 0, 10, 10))
    b = boxes((1, 5, 0, 15, 10))  # IoU 50/150 = 1/3
    assert match_instances(a, b, height=H, width=W, iou_threshold=0.5).matches == []
    res = match_instances(a, b, height=H, width=W, iou_threshold=0.3)
    assert res.matches[0].iou == pytest.approx(1 / 3)


def test_same_class_pass_comes_before_cross_class() -> None:
    # A0 (class 1) overlaps B0 (class 2, IoU 1.0) and B1 (class 1, IoU 0.8): the same-class
    # pass pairs A0-B1 even though B0 overlaps more; then B0 is left unmatched.
    a = boxes((1, 0, 0, 10, 10))
    b = boxes((2, 0, 0, 10, 10), (1, 0, 0, 10, 8))
    res = match_instances(a, b, height=H, width=W)
    assert [(m.i, m.j) for m in res.matches] == [(0, 1)]
    assert res.label_disagreements == [] and res.unmatched_b == [0]


def test_cross_class_pairs_are_label_disagreements() -> None:
    a = boxes((1, 0, 0, 10, 10), (3, 20, 20, 30, 30))
    b = boxes((2, 0, 0, 10, 10), (3, 20, 20, 30, 30), (3, 0, 30, 5, 35))
    res = match_instances(a, b, height=H, width=W)
    assert [(m.i, m.j) for m in res.matches] == [(1, 1)]
    assert [(m.i, m.j, m.class_a, m.class_b) for m in res.label_disagreements] == [(0, 0, 1, 2)]
    assert res.unmatched_a == [] and res.unmatched_b == [2]
    per = class_figures(res)
    assert per[3].matched == 1 and per[3].instances == 3
    assert per[3].f1 == pytest.approx(2 / 3) and per[3].mean_iou == pytest.approx(1.0)
    assert per[1].label_disagreements == 1 and per[2].label_disagreements == 1
    assert per[1].f1 == 0.0 and per[1].mean_iou is None
    overall = summarise(per)
    assert overall["f1"] == pytest.approx(2 * 1 / 5)
    assert overall["label_disagreements"] == 2  # counted once per class involved


def test_holes_count_in_iou() -> None:
    ring = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    hole = np.array([[2, 2], [8, 2], [8, 8], [2, 8]], float)
    donut = Instances(shapes=[Shape((Polygon(ring, (hole,)),))], class_ids=np.array([1]))
    full = boxes((1, 0, 0, 10, 10))
    res = match_instances(donut, full, height=H, width=W, iou_threshold=0.1)
    assert res.matches[0].iou == pytest.approx(64 / 100)


def test_empty_sets_agree_and_one_sided_disagrees() -> None:
    empty = Instances.empty()
    pair = pairwise_figures({"a": empty, "b": empty}, height=H, width=W)
    assert len(pair) == 1 and summarise(pair[0].per_class)["f1"] == 1.0
    pair = pairwise_figures({"a": boxes((1, 0, 0, 10, 10)), "b": empty}, height=H, width=W)
    assert summarise(pair[0].per_class)["f1"] == 0.0


def test_pairwise_covers_every_pair_once() -> None:
    sets = {n: boxes((1, 0, 0, 10, 10)) for n in ("cy", "ana", "bo")}
    pairs = pairwise_figures(sets, height=H, width=W)
    assert [(p.a, p.b) for p in pairs] == [("ana", "bo"), ("ana", "cy"), ("bo", "cy")]


def test_quorum_merge_keeps_objects_with_enough_votes() -> None:
    # Three annotators. Object X (top-left) drawn by all three, slightly different; object Y
    # drawn by two (one calls it class 2); object Z drawn by one.
    a = boxes((1, 0, 0, 10, 10), (5, 20, 20, 30, 30), (4, 30, 0, 38, 8))
    b = boxes((1, 0, 0, 10, 12), (5, 20, 20, 30, 30))
    c = boxes((1, 0, 0, 12, 10), (2, 20, 20, 30, 30))
    merged = quorum_merge([a, b, c], q=0.5, height=H, width=W)
    # ceil(0.5 * 3) = 2 votes needed: X (3 votes) and Y (3 votes: 5, 5, 2) stay, Z goes.
    assert sorted(merged.data["votes"]) == [3, 3]
    masks = merged.masks(H, W)
    by_class = dict(zip(merged.class_ids.tolist(), masks, strict=True))
    assert set(by_class) == {1, 5}  # Y takes its majority class
    # X: pixels covered by at least 2 of the 3 boxes = the 10x10 square exactly.
    expected = np.zeros((H, W), bool)
    expected[0:10, 0:10] = True
    assert np.array_equal(by_class[1], expected)
    strict = quorum_merge([a, b, c], q=1.0, height=H, width=W)
    assert sorted(strict.class_ids.tolist()) == [1, 5]
    loose = quorum_merge([a, b, c], q=0.3, height=H, width=W)
    assert sorted(loose.class_ids.tolist()) == [1, 4, 5]


def test_quorum_needs_ceil_of_q_times_n() -> None:
    a = boxes((1, 0, 0, 10, 10))
    empty = Instances.empty()
    # 2 of 4 annotators drew it: q=0.5 needs 2 (kept), q=0.6 needs ceil(2.4) = 3 (dropped).
    assert len(quorum_merge([a, a, empty, empty], q=0.5, height=H, width=W)) == 1
    assert len(quorum_merge([a, a, empty, empty], q=0.6, height=H, width=W)) == 0
    with pytest.raises(ValueError, match="quorum"):
        quorum_merge([a], q=0.0, height=H, width=W)
