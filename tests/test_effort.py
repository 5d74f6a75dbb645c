"""The simulated annotator (``active_learning.effort``): every action count on a hand-made
photo, the click placement, and the real GrabCut assistance on a synthetic photo."""

from __future__ import annotations

import numpy as np
import pytest

from active_learning.effort import (
    Prompt,
    Tally,
    corrective_click,
    match,
    remaining_vertices,
    simulate_photo,
    vertex_count,
)
from core.geometry import Shape, ellipse_ring
from core.instances import Instances

H = W = 100


def _boxes(*items: tuple[tuple[float, float, float, float], int]) -> Instances:
    return Instances(
        shapes=[Shape.from_box(*box) for box, _ in items],
        class_ids=np.array([c for _, c in items], dtype=np.int64),
    )


def _rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


# The hand-made photo: A is predicted well (IoU 0.95), B's prediction is of the right class
# at IoU 0.7 (rows 10-23 of 10-29), C is missed, and one prediction is a false positive.
A, B, C = (10, 10, 30, 30), (50, 10, 70, 30), (10, 60, 30, 80)
TRUTH = _boxes((A, 1), (B, 1), (C, 2))
SHOWN = _boxes(((10, 10, 30, 29), 1), ((70, 70, 90, 90), 1), ((50, 10, 70, 24), 1))


class ScriptedAssist:
    """Known answers: fixing B (its prediction's box) gains two rows with the first click
    (IoU 0.8) and is right after the second; drawing C always gives its left half (IoU 0.5);
    any other box is answered with the box itself."""

    def __init__(self) -> None:
        self.prompts: list[Prompt] = []

    def __call__(self, prompt: Prompt) -> np.ndarray:
        self.prompts.append(prompt)
        box = tuple(int(v) for v in prompt.box)
        if box == (50, 10, 70, 24):
            return _rect(50, 10, 70, 26) if len(prompt.points) == 1 else _rect(*B)
        if box == C:
            return _rect(10, 60, 20, 80)
        return _rect(*box)  # any other box: the box itself


def test_every_action_on_the_hand_made_photo_is_counted():
    assist = ScriptedAssist()
    t = simulate_photo(TRUTH, SHOWN, assist, H, W)
    assert (t.accept, t.accepted) == (1, 1)  # A: same class, IoU 0.95
    assert (t.delete, t.deleted) == (1, 1)  # the false positive
    assert (t.relabel, t.relabelled) == (0, 0)
    # B: IoU 0.7 -> 1st click 0.8 -> 2nd click 1.0; nothing left by hand
    assert (t.fix_clicks, t.fix_vertices, t.fixed) == (2, 0, 1)
    # C: a box (2), five clicks that never improve the left half, then its two right
    # corners by hand (the left two already lie on the outline)
    assert (t.draw_box, t.draw_clicks, t.draw_vertices, t.drawn) == (2, 5, 2, 1)
    assert t.total == 1 + 1 + 2 + 2 + 5 + 2 == 13
    assert t.by_hand == 12  # three squares, four vertices each
    # the prompts as sent: B's clicks with its prediction's box, positive, in the missed rows
    fix = [p for p in assist.prompts if tuple(p.box) == (50, 10, 70, 24)]
    assert [len(p.points) for p in fix] == [1, 2]
    assert fix[0].labels.tolist() == [1] and 24 <= fix[0].points[0][1] <= 30
    assert fix[1].labels.tolist() == [1, 1] and 26 <= fix[1].points[1][1] <= 30
    draw = [p for p in assist.prompts if tuple(p.box) == C]
    assert [len(p.points) for p in draw] == [0, 1, 2, 3, 4, 5]
    assert draw[1].labels.tolist() == [1] and 20 <= draw[1].points[0][0] <= 30


def test_assistance_only_draws_every_instance_and_by_hand_places_every_vertex():
    only = simulate_photo(TRUTH, Instances.empty(), ScriptedAssist(), H, W)
    assert only.drawn == 3 and only.accept == only.delete == only.fix_clicks == 0
    assert (only.draw_box, only.draw_clicks, only.draw_vertices) == (6, 5, 2)  # A, B: boxes
    hand = simulate_photo(TRUTH, SHOWN[[1]], None, H, W)  # no assistance: vertices only
    assert (hand.delete, hand.draw_vertices, hand.draw_box, hand.total) == (1, 12, 0, 13)


@pytest.mark.parametrize(
    ("shown_box", "cls", "expected"),
    [
        ((10, 10, 30, 29), 2, {"relabel": 2, "accept": 0, "fixed": 0, "total": 2}),
        ((10, 10, 30, 29), 1, {"relabel": 0, "accept": 1, "fixed": 0, "total": 1}),
        ((10, 10, 30, 14), 1, {"delete": 1, "drawn": 1}),  # IoU 0.2: no match
    ],
)
def test_one_prediction(shown_box, cls, expected):
    t = simulate_photo(
        _boxes((A, 1)), _boxes((shown_box, cls)), lambda p: _rect(*A), H, W
    ).as_dict()
    assert {k: t[k] for k in expected} == expected


def test_a_wrong_class_at_iou_07_is_relabelled_and_fixed():
    t = simulate_photo(_boxes((B, 1)), _boxes(((50, 10, 70, 24), 3)), ScriptedAssist(), H, W)
    assert (t.relabel, t.fix_clicks, t.total) == (2, 2, 4)


def test_matching_is_one_to_one_and_best_first():
    truth = np.stack([_rect(*A), _rect(*B)])
    shown = np.stack([_rect(10, 10, 30, 25), _rect(10, 10, 30, 29), _rect(*B)])
    got = match(truth, shown)
    assert [(s, t) for s, t, _ in got] == [(2, 1), (1, 0)]
    assert [iou for _, _, iou in got] == pytest.approx([1.0, 0.95])


@pytest.mark.parametrize(
    ("current", "label", "where"),
    [
        (_rect(10, 10, 20, 30), 1, (20, 30, 10, 30)),  # missed right half: positive there
        (_rect(10, 10, 40, 30), 0, (30, 40, 10, 30)),  # spills right: negative there
    ],
)
def test_a_click_goes_deep_in_the_largest_error(current, label, where):
    xy, lab = corrective_click(_rect(*A), current)
    assert lab == label
    assert where[0] < xy[0] < where[1] and where[2] + 3 < xy[1] < where[3] - 3


def test_no_click_when_the_outline_is_right():
    assert corrective_click(_rect(*A), _rect(*A)) is None


def test_vertices_on_the_outline_are_not_placed_again():
    corners = np.array([[10, 10], [30, 10], [30, 30], [10, 30]], float)
    assert remaining_vertices(corners, _rect(*A), 2.0) == 0
    assert remaining_vertices(corners, _rect(10, 10, 20, 30), 2.0) == 2
    assert remaining_vertices(corners, np.zeros((H, W), bool), 2.0) == 4


def test_vertex_count_counts_holes_and_simplifies():
    ring = ellipse_ring(50, 50, 30, 20, n=400)
    assert 12 < vertex_count(Shape.from_ring(ring)) < 80
    donut = Shape.from_json(
        [
            {
                "exterior": [[0, 0], [40, 0], [40, 40], [0, 40]],
                "holes": [[[10, 10], [20, 10], [20, 20]]],
            }
        ]
    )
    assert vertex_count(donut) == 7


def test_tallies_add_up():
    a, b = Tally(accept=1, by_hand=4), Tally(delete=2, by_hand=3)
    s = Tally.zero() + a + b
    assert (s.total, s.by_hand, s.photos) == (3, 7, 2)


def test_drawing_with_real_grabcut_costs_a_box_and_few_clicks():
    """A clean object on a noisy background: GrabCut finds it from the box; the draw costs
    a box and at most two clicks, far fewer than its vertices by hand."""
    from models.assist.grabcut import GrabCutAssistant
    from services.labelling.effort import assist_callable

    rng = np.random.default_rng(0)
    h, w = 160, 200
    image = rng.integers(90, 140, size=(h, w, 3)).astype(np.uint8)
    ring = ellipse_ring(100, 80, 45, 30, n=200)
    truth = Instances(shapes=[Shape.from_ring(ring)], class_ids=np.array([5]))
    obj = truth.masks(h, w)[0]
    image[obj] = (200, 30, 40)
    assistant = GrabCutAssistant()
    assistant.set_image(image)
    t = simulate_photo(truth, Instances.empty(), assist_callable(assistant, h, w), h, w)
    assert t.draw_box == 2 and t.draw_clicks <= 2 and t.draw_vertices == 0
    assert t.total < t.by_hand / 3
