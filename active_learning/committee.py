"""Committee disagreement: how much two stages disagree on the same photo.

Each function scores ONE image in ``[0, 1]`` (0 = full agreement). The caller collects them
into an ``(N,)`` array; :func:`combine` averages the available committees per image.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from core.geometry import masks_iou_matrix


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
