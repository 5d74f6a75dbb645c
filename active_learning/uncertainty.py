"""Uncertainty of model outputs: per-instance scores and their aggregation per image.

All functions are pure numpy. Probability inputs are ``(M, C)`` float arrays whose rows sum
to 1 (softmax heads: damage 26+1, part 61+1) or ``(M, F)`` independent sigmoid outputs
(the 7 fake flags). Higher score = more uncertain = label it sooner.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.special import xlogy


def _probs(p: object, name: str = "probs") -> np.ndarray:
    arr = np.asarray(p)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (M, C) probabilities, got shape {arr.shape}.")
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if not (lo >= -1e-6 and hi <= 1 + 1e-6):  # also catches NaN
            raise ValueError(
                f"{name} must hold probabilities in [0, 1]; got values in [{lo}, {hi}]."
            )
        if lo < 0 or hi > 1:
            arr = np.clip(arr, 0.0, 1.0)
    return arr


def least_confidence(probs: object) -> np.ndarray:
    """``1 - max_c p_c`` per row: ``(M, C)`` -> ``(M,)``."""
    p = _probs(probs)
    if p.shape[1] == 0:
        return np.zeros(len(p))
    return 1.0 - p.max(axis=1)


def margin(probs: object) -> np.ndarray:
    """``1 - (p_top1 - p_top2)`` per row, so a small margin scores high: ``(M, C)`` -> ``(M,)``."""
    p = _probs(probs)
    if p.shape[1] < 2:
        return np.zeros(len(p))
    top2 = np.partition(p, -2, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropy(probs: object, *, normalise: bool = True) -> np.ndarray:
    """Shannon entropy per row (nats), divided by ``log C`` when ``normalise`` (range 0..1)."""
    p = _probs(probs)
    if p.shape[1] < 2:
        return np.zeros(len(p))
    h = -xlogy(p, p).sum(axis=1)
    return h / np.log(p.shape[1]) if normalise else h


def binary_entropy(probs: object, *, reduce: str = "max") -> np.ndarray:
    """Entropy of independent sigmoid outputs, in bits (0..1 per flag), reduced over flags.

    ``(M, F)`` -> ``(M,)`` with ``reduce`` = ``max``, ``mean`` or ``sum``.
    """
    p = _probs(probs, "sigmoid probs")
    # xlogy gives 0·log 0 = 0 exactly, so confident flags score exactly 0.
    h = -(xlogy(p, p) + xlogy(1 - p, 1 - p)) / np.log(2)
    if h.shape[1] == 0:
        return np.zeros(len(h))
    return _reduce(h, reduce, axis=1)


def _reduce(x: np.ndarray, how: str, axis: int) -> np.ndarray:
    if how == "max":
        return x.max(axis=axis)
    if how == "mean":
        return x.mean(axis=axis)
    if how == "sum":
        return x.sum(axis=axis)
    raise ValueError(f"unknown reduction {how!r}; use 'max', 'mean' or 'sum'.")


#: name -> instance-level function, for softmax heads
SOFTMAX_MEASURES = {"least_confidence": least_confidence, "margin": margin, "entropy": entropy}


def instance_uncertainty(probs: object, measure: str, *, sigmoid: bool = False) -> np.ndarray:
    """Per-instance uncertainty under ``measure``; sigmoid heads always use binary entropy."""
    if sigmoid:
        return binary_entropy(probs)
    try:
        fn = SOFTMAX_MEASURES[measure]
    except KeyError:
        raise ValueError(
            f"unknown uncertainty measure {measure!r}; choose one of {sorted(SOFTMAX_MEASURES)}."
        ) from None
    return fn(probs)


def aggregate(
    instance_scores: object,
    image_index: object,
    n_images: int,
    *,
    how: str = "max",
    class_ids: object | None = None,
    class_weights: Mapping[int, float] | None = None,
    empty: float = 0.0,
) -> np.ndarray:
    """Instance scores -> one score per image.

    Args:
        instance_scores: ``(M,)`` per-instance uncertainty.
        image_index: ``(M,)`` int, the image (0..n_images-1) each instance belongs to.
        n_images: N.
        how: ``max``, ``mean`` or ``sum`` over an image's instances.
        class_ids / class_weights: multiply an instance's score by the weight of its
            (predicted) class, so rare or hard classes such as fake damage count more;
            classes not in the mapping weigh 1.
        empty: score of an image with no instances.
    Returns ``(N,)`` float64.
    """
    s = np.asarray(instance_scores, dtype=np.float64).reshape(-1)
    idx = np.asarray(image_index, dtype=np.int64).reshape(-1)
    if len(s) != len(idx):
        raise ValueError(
            f"instance_scores ({len(s)}) and image_index ({len(idx)}) differ in length."
        )
    if len(idx) and (idx.min() < 0 or idx.max() >= n_images):
        raise ValueError(f"image_index values must lie in 0..{n_images - 1}.")
    if class_weights:
        if class_ids is None:
            raise ValueError("class_weights needs class_ids, the class of each instance.")
        cid = np.asarray(class_ids, dtype=np.int64).reshape(-1)
        keys = np.fromiter(class_weights.keys(), dtype=np.int64)
        vals = np.fromiter(class_weights.values(), dtype=np.float64)
        w = np.ones(len(cid))
        order = np.argsort(keys)
        pos = np.searchsorted(keys[order], cid)
        pos = np.clip(pos, 0, len(keys) - 1)
        hit = keys[order][pos] == cid
        w[hit] = vals[order][pos[hit]]
        s = s * w
    counts = np.bincount(idx, minlength=n_images)
    if how == "max":
        out = np.full(n_images, -np.inf)
        np.maximum.at(out, idx, s)
    elif how in ("sum", "mean"):
        out = np.bincount(idx, weights=s, minlength=n_images).astype(np.float64)
        if how == "mean":
            out = out / np.maximum(counts, 1)
    else:
        raise ValueError(f"unknown aggregation {how!r}; use 'max', 'mean' or 'sum'.")
    out[counts == 0] = empty
    return out


def image_uncertainty(
    heads: Mapping[str, tuple[object, object]],
    n_images: int,
    *,
    measure: str = "entropy",
    how: str = "max",
    sigmoid_heads: tuple[str, ...] = ("fake",),
    head_weights: Mapping[str, float] | None = None,
    class_ids: Mapping[str, object] | None = None,
    class_weights: Mapping[int, float] | None = None,
) -> np.ndarray:
    """Combine several heads into one image score: weighted sum of per-head image scores.

    ``heads`` maps a head name to ``(probs (M_h, C_h), image_index (M_h,))``.
    """
    total = np.zeros(n_images)
    for head, (probs, index) in heads.items():
        inst = instance_uncertainty(probs, measure, sigmoid=head in sigmoid_heads)
        cids = None if class_ids is None else class_ids.get(head)
        img = aggregate(
            inst,
            index,
            n_images,
            how=how,
            class_ids=cids,
            class_weights=class_weights if cids is not None else None,
        )
        total += (head_weights or {}).get(head, 1.0) * img
    return total
