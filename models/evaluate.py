"""Measure a stage's predictions against labelled images: what ``Stage.evaluate`` does unless
a stage measures something else (assist_net scores box prompts instead).

Figures per taxonomy group: the classification metrics of
:func:`models.albert.metrics.classification_metrics` and, under ``"coco"``, COCO mask AP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from core.instances import ImageResult
from models.base import Progress, TrainingSet


def evaluate_predictions(
    predict: Callable[[list[np.ndarray]], list[ImageResult]],
    data: TrainingSet,
    groups: Sequence[str] = ("damage", "part"),
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``{group: {...classification figures, "coco": {...}}}`` of ``predict`` over ``data``.

    Photos go to ``predict`` one at a time (a held-out split can be large, and one photo's
    instances are all the metrics need at once). ``progress(done, total, info)`` is called
    after each photo, ``info`` holding the record's file name.
    """
    from models.albert.metrics import classification_metrics, coco_mask_ap

    pairs = []
    for i, rec in enumerate(data.records):
        img = data.load_image(i)
        pairs.append((predict([img])[0].instances, rec.instances, img.shape[0], img.shape[1]))
        if progress:
            progress(i + 1, len(data), {"image": rec.file_name})
    out: dict[str, Any] = {}
    for g in groups:
        out[g] = classification_metrics(pairs, data.taxonomy, g)
        out[g]["coco"] = coco_mask_ap(pairs, data.taxonomy, g)
    return out
