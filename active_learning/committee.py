"""Committee disagreement: how much two stages disagree on the same photo.

Each function scores ONE image in ``[0, 1]`` (0 = full agreement). The caller collects them
into an ``(N,)`` array; :func:`combine` averages the available committees per image.
:func:`instances_disagreement` and :func:`damaged_disagreement` take two stages'
:class:`~core.instances.Instances` of one photo; the others take plain arrays.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.geometry import masks_iou_matrix
from core.instances import Instances

#: Longest side of the pixel grid on which committee masks are compared; coarse is enough
#: for IoU and keeps a pool of thousands of photos cheap.
COMMITTEE_GRID = 128
#: The head holding a part classifier's ``(N, 2)`` [undamaged, damaged] probabilities.
DAMAGED_HEAD = "damaged"


def grid_masks(inst: Instances, height: int, width: int, grid: int = COMMITTEE_GRID) -> np.ndarray:
    """``(N, h, w)`` bool masks of the shapes of a ``height`` x ``width`` photo, rasterised on
    a grid whose longest side is ``grid`` pixels."""
    scale = grid / max(height, width, 1)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    masks = np.zeros((len(inst), h, w), dtype=bool)
    for i, shape in enumerate(inst.shapes):
        masks[i] = shape.scaled(scale).to_mask(h, w)
    return masks


def instances_disagreement(
    a: Instances, b: Instances, height: int, width: int, *, grid: int = COMMITTEE_GRID
) -> float:
    """:func:`mask_disagreement` of two stages' instances of one ``height`` x ``width``
    photo (shapes in its pixels), compared on the coarse grid of :func:`grid_masks`."""
    return mask_disagreement(
        grid_masks(a, height, width, grid),
        a.class_ids,
        grid_masks(b, height, width, grid),
        b.class_ids,
    )


def damaged_disagreement(
    damage: Instances, parts: Instances, height: int, width: int, *, grid: int = COMMITTEE_GRID
) -> float:
    """How far a damage segmenter and a part classifier disagree on which parts are damaged.

    For each part, the segmenter's P(part damaged) is the score of its most confident
    ``damage`` instance overlapping the part on the coarse grid (0 when none does); the
    classifier's is ``parts.probs["damaged"][:, 1]``. Parts without that head (a NaN row, or
    no head at all) are left out. Returns :func:`probability_disagreement` (max).
    """
    p_cls = (
        parts.probs[DAMAGED_HEAD][:, 1].astype(np.float64)
        if DAMAGED_HEAD in parts.probs
        else np.full(len(parts), np.nan)
    )
    pm = grid_masks(parts, height, width, grid)
    dm = grid_masks(damage, height, width, grid)
    cells = pm.shape[1] * pm.shape[2]
    overlap = (pm.reshape(len(pm), 1, cells) & dm.reshape(1, len(dm), cells)).any(axis=2)
    best = np.where(overlap, damage.scores[None, :].astype(np.float64), -np.inf)
    p_seg = best.max(axis=1, initial=-np.inf)
    p_seg[np.isinf(p_seg)] = 0.0
    ok = ~np.isnan(p_cls)
    return probability_disagreement(p_seg[ok], p_cls[ok])


def mask_disagreement(
    masks_a: np.ndarray,
    classes_a: object,
    masks_b: np.ndarray,
    classes_b: object,
) -> float:
    """Disagreement between two instance sets on one image (e.g. ALBERT vs YOLO parts).

    Args:
        masks_a, masks_b: ``(Na, H, W)`` and ``(Nb, H, W)`` bool masks in the same pixel grid.
        classes_a, classes_b: ``(Na,)`` / ``(Nb,)`` class ids.
    Instances are matched one-to-one to maximise IoU (Hungarian). A matched pair agrees by
    its IoU when the classes are equal and by 0 otherwise; unmatched instances agree by 0.
    Returns ``1 - sum(agreement) / max(Na, Nb)``; two empty sets agree fully (0).
    """
    ca = np.asarray(classes_a, dtype=np.int64).reshape(-1)
    cb = np.asarray(classes_b, dtype=np.int64).reshape(-1)
    na, nb = len(ca), len(cb)
    if len(masks_a) != na or len(masks_b) != nb:
        raise ValueError("each mask set needs one class id per mask.")
    if na == 0 and nb == 0:
        return 0.0
    if na == 0 or nb == 0:
        return 1.0
    if masks_a.shape[1:] != masks_b.shape[1:]:
        raise ValueError(
            f"masks must share one pixel grid, got {masks_a.shape[1:]} and {masks_b.shape[1:]}."
        )
    iou = masks_iou_matrix(masks_a.astype(bool), masks_b.astype(bool))
    agree = np.where(ca[:, None] == cb[None, :], iou, 0.0)
    rows, cols = linear_sum_assignment(-iou)
    return float(1.0 - agree[rows, cols].sum() / max(na, nb))


def probability_disagreement(p_a: object, p_b: object, *, reduce: str = "max") -> float:
    """Disagreement of two stages' probabilities for the same items (e.g. per part: ALBERT's
    P(part damaged) vs the ResNet's P(damaged)): ``|p_a - p_b|`` reduced by max or mean.
    Empty input scores 0."""
    a = np.asarray(p_a, dtype=np.float64).reshape(-1)
    b = np.asarray(p_b, dtype=np.float64).reshape(-1)
    if len(a) != len(b):
        raise ValueError(
            f"need one probability per item from each stage, got {len(a)} and {len(b)}."
        )
    if len(a) == 0:
        return 0.0
    d = np.abs(a - b)
    return float(d.max() if reduce == "max" else d.mean())


def vote_entropy(member_probs: list[np.ndarray]) -> np.ndarray:
    """Consensus disagreement of C-class probability vectors from several members:
    the mean KL divergence of each member from the consensus, ``(M, C)`` each -> ``(M,)``."""
    if not member_probs:
        raise ValueError("vote_entropy needs at least one member.")
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in member_probs])
    mean = stack.mean(axis=0)
    eps = 1e-12
    kl = (stack * (np.log(stack + eps) - np.log(mean + eps)[None])).sum(axis=2)
    return kl.mean(axis=0)


def combine(*scores: object) -> np.ndarray:
    """Average several ``(N,)`` committee scores, ignoring NaN (committee not available for
    that image). An image with no committee at all gets NaN (it ranks last)."""
    if not scores:
        raise ValueError("combine needs at least one score array.")
    stack = np.stack([np.asarray(s, dtype=np.float64).reshape(-1) for s in scores])
    valid = ~np.isnan(stack)
    total = np.where(valid, stack, 0.0).sum(axis=0)
    n = valid.sum(axis=0)
    out = np.full(stack.shape[1], np.nan)
    np.divide(total, n, out=out, where=n > 0)
    return out
