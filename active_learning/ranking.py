"""Ranking and validation, shared by the selection strategies."""

from __future__ import annotations

import numpy as np


def as_scores(scores: object, *, name: str = "scores") -> np.ndarray:
    """``scores`` as a finite ``(N,)`` float64 array; NaN means "no score" and ranks last."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of per-image scores, got shape {arr.shape}.")
    return arr


def top_k(scores: np.ndarray, k: int, *, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` highest scores, highest first; ties break by lower index.

    NaN scores rank after every finite score. ``exclude`` is a bool mask ``(N,)`` or an
    index array of images that must not be chosen (labelled, held out).
    Runs in O(N + k log k) with ``argpartition``.
    """
    s = as_scores(scores).copy()
    n = len(s)
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}.")
    s[np.isnan(s)] = -np.inf
    valid = np.ones(n, dtype=bool)
    if exclude is not None:
        valid[_mask(exclude, n)] = False
    idx = np.flatnonzero(valid)
    k = min(k, len(idx))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    sv = s[idx]
    if k < len(idx):
        part = np.argpartition(-sv, k - 1)[:k]
        # argpartition does not keep ties by index: take every index tied with the k-th value,
        # then sort, so the result is deterministic.
        kth = sv[part].min()
        part = np.flatnonzero(sv >= kth)
    else:
        part = np.arange(len(idx))
    order = np.lexsort((idx[part], -sv[part]))[:k]
    return idx[part][order].astype(np.int64)


def _mask(exclude: np.ndarray, n: int) -> np.ndarray:
    ex = np.asarray(exclude)
    if ex.dtype == bool:
        if ex.shape != (n,):
            raise ValueError(f"exclude mask must have shape ({n},), got {ex.shape}.")
        return ex
    out = np.zeros(n, dtype=bool)
    out[ex.astype(np.int64)] = True
    return out


def exclusion_mask(n: int, exclude: np.ndarray | None) -> np.ndarray:
    """A bool ``(N,)`` mask from a mask, an index array, or None."""
    if exclude is None:
        return np.zeros(n, dtype=bool)
    return _mask(exclude, n).copy()
