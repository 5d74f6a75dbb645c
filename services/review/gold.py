"""Scoring an annotator's submission on a gold photo against its gold labels (pure numpy).

Instances pair up exactly as in :func:`services.review.agreement.match_instances` (same-class
Hungarian on mask IoU at a threshold); only same-class pairs count as hits. Per class:

- ``precision`` = hits / submitted instances of the class (None when none were submitted),
- ``recall`` = hits / gold instances of the class (None when gold has none),
- ``mean_iou`` over the hits (None without hits),
- ``label_disagreements``: objects found but named differently (cross-class pairs).
"""

from __future__ import annotations

from typing import Any

from core.instances import Instances
from services.review.agreement import match_instances

__all__ = ["score"]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def score(
    submission: Instances,
    gold: Instances,
    *,
    height: int,
    width: int,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """``{"per_class": {class_id: {...}}, "overall": {...}}`` of ``submission`` against
    ``gold`` on one ``height`` x ``width`` photo. Overall figures pool the counts of all
    classes. A submission with nothing, on a gold photo with nothing, scores 1/1."""
    res = match_instances(gold, submission, height=height, width=width, iou_threshold=iou_threshold)
    counts: dict[int, dict[str, float]] = {}

    def row(c: int) -> dict[str, float]:
        return counts.setdefault(
            int(c), {"hits": 0, "submitted": 0, "gold": 0, "iou_sum": 0.0, "label_disagreements": 0}
        )

    for c in gold.class_ids:
        row(c)["gold"] += 1
    for c in submission.class_ids:
        row(c)["submitted"] += 1
    for m in res.matches:
        row(m.class_a)["hits"] += 1
        row(m.class_a)["iou_sum"] += m.iou
    for m in res.label_disagreements:
        row(m.class_a)["label_disagreements"] += 1
        if m.class_b != m.class_a:
            row(m.class_b)["label_disagreements"] += 1

    def figures(c: dict[str, float]) -> dict[str, Any]:
        return {
            "hits": int(c["hits"]),
            "submitted": int(c["submitted"]),
            "gold": int(c["gold"]),
            "label_disagreements": int(c["label_disagreements"]),
            "iou_sum": c["iou_sum"],
            "precision": _ratio(c["hits"], c["submitted"]),
            "recall": _ratio(c["hits"], c["gold"]),
            "mean_iou": _ratio(c["iou_sum"], c["hits"]),
        }

    total = {k: 0.0 for k in ("hits", "submitted", "gold", "iou_sum", "label_disagreements")}
    for c in counts.values():
        for k in ("hits", "submitted", "gold", "iou_sum"):
            total[k] += c[k]
    total["label_disagreements"] = len(res.label_disagreements)
    overall = figures(total)
    if not total["submitted"] and not total["gold"]:
        overall["precision"] = overall["recall"] = 1.0
    return {"per_class": {c: figures(v) for c, v in sorted(counts.items())}, "overall": overall}
