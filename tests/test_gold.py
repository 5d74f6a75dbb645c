"""Scoring a submission against gold labels on hand-made cases."""

from __future__ import annotations

import pytest
from test_agreement import H, W, boxes

from core.instances import Instances
from services.review.gold import score


def test_perfect_submission_scores_one() -> None:
    gold = boxes((1, 0, 0, 10, 10), (2, 20, 20, 30, 30))
    out = score(gold, gold, height=H, width=W)
    for c in (1, 2):
        assert out["per_class"][c]["precision"] == 1.0
        assert out["per_class"][c]["recall"] == 1.0
        assert out["per_class"][c]["mean_iou"] == pytest.approx(1.0)


def test_precision_recall_and_iou_per_class() -> None:
    gold = boxes((1, 0, 0, 10, 10), (1, 20, 0, 30, 10), (2, 0, 20, 10, 30))
    sub = boxes(
        (1, 0, 0, 10, 8),  # hit, IoU 0.8
        (1, 30, 30, 38, 38),  # false positive
        (3, 0, 20, 10, 30),  # right place, wrong class
    )
    out = score(sub, gold, height=H, width=W)
    one, two, three = (out["per_class"][c] for c in (1, 2, 3))
    assert one["hits"] == 1 and one["precision"] == 0.5 and one["recall"] == 0.5
    assert one["mean_iou"] == pytest.approx(0.8)
    assert two["precision"] is None and two["recall"] == 0.0 and two["label_disagreements"] == 1
    assert three["precision"] == 0.0 and three["recall"] is None
    overall = out["overall"]
    assert overall["precision"] == pytest.approx(1 / 3)
    assert overall["recall"] == pytest.approx(1 / 3)
    assert overall["label_disagreements"] == 1


def test_empty_against_empty_and_missing_everything() -> None:
    empty = Instances.empty()
    assert score(empty, empty, height=H, width=W)["overall"]["recall"] == 1.0
    out = score(empty, boxes((1, 0, 0, 10, 10)), height=H, width=W)
    assert out["overall"]["recall"] == 0.0 and out["overall"]["precision"] is None


def test_iou_threshold_applies() -> None:
    gold = boxes((1, 0, 0, 10, 10))
    sub = boxes((1, 4, 0, 14, 10))  # IoU 60/140
    assert score(sub, gold, height=H, width=W, iou_threshold=0.5)["overall"]["recall"] == 0.0
    out = score(sub, gold, height=H, width=W, iou_threshold=0.4)
    assert out["overall"]["recall"] == 1.0
    assert out["overall"]["mean_iou"] == pytest.approx(60 / 140)
