"""Comparing two lists of records, for round-trip checks (tests and import verification).

``compare_records`` returns the differences as sentences (empty list = equal). Shapes are
compared exactly (``atol``) or, for formats that quantise coordinates or rasterise
(YOLO's 6 decimals, brush RLE, COCO RLE), by mask IoU at the image's size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from core.geometry import Shape, mask_iou
from core.records import ImageRecord


def compare_records(
    expected: Sequence[ImageRecord],
    actual: Sequence[ImageRecord],
    *,
    key: Callable[[ImageRecord], str] = lambda r: r.file_name,
    atol: float | None = 1e-6,
    min_iou: float | None = None,
    attributes: bool = True,
    scores: bool = False,
    splits: bool = False,
    iou_scale: int = 1,
) -> list[str]:
    """Differences between two record lists matched by ``key``.

    A shape passes when it is equal within ``atol`` (if given) or, failing that, when its
    mask IoU with the expected shape is at least ``min_iou`` (if given). ``iou_scale`` > 1
    rasterises at that many samples per pixel side: vertices lying exactly on pixel centres
    (common in hand-labelled data) make single-sample masks flip whole pixel rows under
    sub-pixel rounding, which says nothing about the region.
    """
    diffs: list[str] = []
    exp = {key(r): r for r in expected}
    act = {key(r): r for r in actual}
    if len(exp) != len(expected) or len(act) != len(actual):
        diffs.append("record keys are not unique; choose another key")
    for k in sorted(set(exp) ^ set(act)):
        diffs.append(f"{k}: only in {'expected' if k in exp else 'actual'}")
    for k in sorted(set(exp) & set(act)):
        a, b = exp[k], act[k]
        if (a.width, a.height) != (b.width, b.height):
            diffs.append(f"{k}: size {a.width}x{a.height} != {b.width}x{b.height}")
            continue
        if splits and a.split != b.split:
            diffs.append(f"{k}: split {a.split} != {b.split}")
        ia, ib = a.instances, b.instances
        if len(ia) != len(ib):
            diffs.append(f"{k}: {len(ia)} instances != {len(ib)}")
            continue
        if not np.array_equal(ia.class_ids, ib.class_ids):
            diffs.append(f"{k}: class ids {ia.class_ids.tolist()} != {ib.class_ids.tolist()}")
        if scores and not np.allclose(ia.scores, ib.scores, atol=1e-6):
            diffs.append(f"{k}: scores {ia.scores.tolist()} != {ib.scores.tolist()}")
        if attributes and ia.attributes != ib.attributes:
            diffs.append(f"{k}: attributes {ia.attributes} != {ib.attributes}")
        for j, (sa, sb) in enumerate(zip(ia.shapes, ib.shapes, strict=True)):
            if atol is not None and sa.almost_equal(sb, atol=atol):
                continue
            if min_iou is not None:
                iou = shape_iou(sa, sb, a.width, a.height)
                if iou < min_iou and iou_scale > 1:  # supersample only where it matters: it is slow
                    iou = shape_iou(sa, sb, a.width, a.height, scale=iou_scale)
                if iou >= min_iou:
                    continue
                diffs.append(f"{k}: instance {j} mask IoU {iou:.4f} < {min_iou}")
            else:
                diffs.append(f"{k}: instance {j} geometry differs")
    return diffs


def shape_iou(a: Shape, b: Shape, width: int, height: int, *, scale: int = 1) -> float:
    """Mask IoU of two shapes inside the image, rasterised only over their joint bbox."""
    box = np.concatenate([a.bbox, b.bbox]).reshape(2, 4)
    x0 = max(0, math.floor(box[:, 0].min()))
    y0 = max(0, math.floor(box[:, 1].min()))
    x1 = min(width, math.ceil(box[:, 2].max()))
    y1 = min(height, math.ceil(box[:, 3].max()))
    if x1 <= x0 or y1 <= y0:
        return 0.0
    h, w = (y1 - y0) * scale, (x1 - x0) * scale
    ma = a.translated(-x0, -y0).scaled(scale).to_mask(h, w)
    mb = b.translated(-x0, -y0).scaled(scale).to_mask(h, w)
    return mask_iou(ma, mb)


def instance_count(records: Sequence[ImageRecord]) -> int:
    return sum(len(r.instances) for r in records)
