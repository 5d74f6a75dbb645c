"""Diversity selection: k-center greedy (core-set) and cheap image descriptors for cold start.

k-center greedy keeps one running minimum squared distance per point, so a pick costs one
pass over the embeddings: O(N·k·D) time and O(N) extra memory, never an N×N matrix.
Distances to an initial labelled set are computed in row chunks to bound memory.
"""

from __future__ import annotations

import numpy as np

from active_learning.ranking import exclusion_mask

#: From this pool size on, k-center prunes whole blocks of points per pick.
BLOCKED_MIN_N = 8192
#: Rows per block when computing distances to many centres at once (bounds temporaries).
CHUNK = 8192


def as_embeddings(x: object) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {arr.shape}.")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError("embeddings contain NaN or infinite values; recompute them.")
    return arr


def min_sq_dist_to(
    x: np.ndarray, sqn: np.ndarray, centers: np.ndarray, chunk: int = CHUNK
) -> np.ndarray:
    """``(N,)`` float32: squared distance from each row of ``x`` to its nearest centre row."""
    out = np.full(len(x), np.inf, dtype=np.float32)
    if len(centers) == 0:
        return out
    c = np.ascontiguousarray(centers, dtype=np.float32)
    csq = (c * c).sum(axis=1)
    # Blocks of rows × blocks of centres: temporaries at most chunk × chunk floats.
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        best = out[i : i + chunk]
        for j in range(0, len(c), chunk):
            d = xb @ c[j : j + chunk].T
            d *= -2.0
            d += sqn[i : i + chunk, None]
            d += csq[None, j : j + chunk]
            np.minimum(best, d.min(axis=1), out=best)
    np.maximum(out, 0.0, out=out)
    return out


def kcenter_greedy(
    embeddings: object,
    k: int,
    *,
    labelled: object | None = None,
    exclude: object | None = None,
    groups: object | None = None,
    seed: int = 0,
    blocked_search: bool | None = None,
) -> np.ndarray:
    """Pick ``k`` indices, each the point farthest from everything picked or labelled so far.

    Args:
        embeddings: ``(N, D)`` float (cast to float32).
        k: how many to pick (fewer if fewer are eligible).
        labelled: indices (or bool mask) already labelled: they act as centres, never picked.
        exclude: indices (or bool mask) that are neither centres nor picked (held-out split).
        groups: optional ``(N,)`` int group per point (e.g. predicted class). When given, picks
            cycle through the groups, rarest first, each turn taking the farthest point of that
            group: a class-balance constraint that always reaches rare classes.
        seed: when nothing is labelled, the first pick is random with this seed.
        blocked_search: prune with the triangle inequality over blocks of nearby points
            (exact, same picks up to float rounding); default on for N >= ``BLOCKED_MIN_N``.
    Returns ``(k,)`` int64 indices in pick order.
    """
    x = as_embeddings(embeddings)
    n = len(x)
    sqn = (x * x).sum(axis=1)
    blocked = exclusion_mask(n, exclude)
    lab = exclusion_mask(n, labelled)
    mind = min_sq_dist_to(x, sqn, x[lab]) if lab.any() else np.full(n, np.inf, np.float32)
    # -1 marks points that can never be picked; argmax then skips them.
    mind[blocked | lab] = -1.0
    eligible = int((mind >= 0).sum())
    k = min(int(k), eligible)
    picks = np.empty(k, dtype=np.int64)
    if k == 0:
        return picks
    rng = np.random.default_rng(seed)
    if groups is not None:
        g = np.asarray(groups).reshape(-1)
        if len(g) != n:
            raise ValueError(f"groups has {len(g)} entries for {n} embeddings.")
        return _kcenter_grouped(x, sqn, mind, k, g, rng)
    if blocked_search is None:
        blocked_search = n >= BLOCKED_MIN_N
    if blocked_search:
        first = None if lab.any() else int(rng.choice(np.flatnonzero(mind >= 0)))
        return _kcenter_blocked(x, mind, k, first, rng)
    d = np.empty(n, dtype=np.float32)
    for t in range(k):
        if t == 0 and not lab.any():
            j = int(rng.choice(np.flatnonzero(mind >= 0)))
        else:
            j = int(np.argmax(mind))
        picks[t] = j
        c = x[j]
        np.dot(x, c, out=d)
        d *= -2.0
        d += sqn
        d += sqn[j]
        np.maximum(d, 0.0, out=d)
        np.minimum(mind, d, out=mind)
        mind[j] = -1.0
    return picks


def _kcenter_grouped(
    x: np.ndarray, sqn: np.ndarray, mind: np.ndarray, k: int, g: np.ndarray, rng
) -> np.ndarray:
    values, counts = np.unique(g[mind >= 0], return_counts=True)
    order = values[np.argsort(counts, kind="stable")]  # rarest group first
    members = {v: np.flatnonzero((g == v) & (mind >= 0)) for v in order}
    picks: list[int] = []
    d = np.empty(len(x), dtype=np.float32)
    first_random = bool(np.isinf(mind[mind >= 0]).all())
    while len(picks) < k:
        progressed = False
        for v in order:
            if len(picks) >= k:
                break
            idx = members[v]
            m = mind[idx]
            if len(idx) == 0 or m.max() < 0:
                continue
            if first_random:
                j = int(rng.choice(idx[m >= 0]))
                first_random = False
            else:
                j = int(idx[np.argmax(m)])
            picks.append(j)
            np.dot(x, x[j], out=d)
            d *= -2.0
            d += sqn
            d += sqn[j]
            np.minimum(mind, d, out=mind)
            mind[j] = -1.0
            progressed = True
        if not progressed:
            break
    return np.asarray(picks, dtype=np.int64)


def image_descriptor(rgb: np.ndarray, *, thumb: int = 8, bins: int = 8) -> np.ndarray:
    """A cheap, model-free descriptor of an ``HWC uint8 RGB`` image for cold-start diversity.

    Concatenates a ``thumb×thumb`` grey thumbnail (layout) and a per-channel ``bins``
    histogram (colour), each L2-normalised: ``(thumb² + 3·bins,)`` float32.
    """
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] < 3:
        raise ValueError(f"image must be HWC RGB, got shape {a.shape}.")
    a = a[..., :3].astype(np.float32)
    h, w = a.shape[:2]
    grey = a.mean(axis=2)
    ys = (np.arange(thumb + 1) * h // thumb).clip(0, h)
    xs = (np.arange(thumb + 1) * w // thumb).clip(0, w)
    t = np.array(
        [
            [
                grey[ys[i] : max(ys[i + 1], ys[i] + 1), xs[j] : max(xs[j + 1], xs[j] + 1)].mean()
                for j in range(thumb)
            ]
            for i in range(thumb)
        ],
        dtype=np.float32,
    ).reshape(-1)
    t -= t.mean()
    hist = np.concatenate(
        [np.histogram(a[..., c], bins=bins, range=(0, 256))[0] for c in range(3)]
    ).astype(np.float32)
    parts = [t / (np.linalg.norm(t) + 1e-6), hist / (np.linalg.norm(hist) + 1e-6)]
    return np.concatenate(parts).astype(np.float32)


def _kcenter_blocked(
    x: np.ndarray, mind: np.ndarray, k: int, first: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Exact k-center greedy that skips blocks no new centre can affect.

    Points are grouped around B anchors (a k-center spread of a subsample) and stored block by
    block. For block b with anchor a_b and radius R_b, every member x satisfies
    ``|x - c| >= |a_b - c| - R_b``; if that bound already exceeds the block's largest running
    minimum distance, no member's minimum can shrink, so the block is skipped. On clustered
    embeddings most blocks are skipped after the first picks; on structureless data the cost
    falls back to one full pass per pick. Memory: one reordered copy of the embeddings
    plus O(N) vectors.
    """
    n = len(x)
    xc = x - x.mean(axis=0, dtype=np.float64).astype(np.float32)  # smaller norms, less rounding
    sample = rng.choice(n, size=min(n, 4096), replace=False)
    n_blocks = int(min(256, max(16, n // 512)))
    anchors = xc[sample[kcenter_greedy(xc[sample], n_blocks, seed=0, blocked_search=False)]]
    asq = (anchors * anchors).sum(axis=1)
    sqn = (xc * xc).sum(axis=1)
    assign = np.empty(n, dtype=np.int64)
    adist = np.empty(n, dtype=np.float32)
    for i in range(0, n, CHUNK):
        d = xc[i : i + CHUNK] @ anchors.T
        d *= -2.0
        d += asq[None, :]
        a = d.argmin(axis=1)
        assign[i : i + CHUNK] = a
        adist[i : i + CHUNK] = d[np.arange(len(a)), a] + sqn[i : i + CHUNK]
    order = np.argsort(assign, kind="stable")
    xs = xc[order]
    del xc
    sq = sqn[order]
    md = mind[order]
    counts = np.bincount(assign, minlength=len(anchors))
    starts = np.concatenate([[0], np.cumsum(counts)])
    radius = np.zeros(len(anchors), dtype=np.float64)
    np.maximum.at(radius, assign, np.sqrt(np.maximum(adist, 0.0)))
    # empty blocks: -1 so they are never chosen; reduceat needs non-empty segments
    nonempty = counts > 0
    bmax = np.full(len(anchors), -1.0)
    bmax[nonempty] = np.maximum.reduceat(md, starts[:-1][nonempty])
    inv = np.empty(n, dtype=np.int64)
    inv[order] = np.arange(n)
    picks = np.empty(k, dtype=np.int64)
    for t in range(k):
        if t == 0 and first is not None:
            j = int(inv[first])
        else:
            b = int(np.argmax(bmax))
            j = int(starts[b] + np.argmax(md[starts[b] : starts[b + 1]]))
        picks[t] = order[j]
        c = xs[j]
        dc = np.sqrt(np.maximum(asq - 2.0 * (anchors @ c) + sq[j], 0.0))
        lb = np.maximum(dc - radius, 0.0)
        # slack covers float32 rounding of the squared distances
        active = (lb * lb) * (1 - 1e-4) - 1e-3 <= bmax
        active[assign[order[j]]] = True  # j's own block must refresh its maximum
        active &= nonempty
        md[j] = -1.0
        for b0, b1 in _runs(np.flatnonzero(active)):
            s0, s1 = starts[b0], starts[b1 + 1]
            d = xs[s0:s1] @ c
            d *= -2.0
            d += sq[s0:s1]
            d += sq[j]
            np.maximum(d, 0.0, out=d)  # rounding can go below 0; -1 marks stay below
            seg = md[s0:s1]
            np.minimum(seg, d, out=seg)
            nz = nonempty[b0 : b1 + 1]
            bmax[b0 : b1 + 1][nz] = np.maximum.reduceat(seg, starts[b0 : b1 + 1][nz] - s0)
    return picks


def _runs(blocks: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive block numbers merged into inclusive (first, last) runs."""
    if len(blocks) == 0:
        return []
    cut = np.flatnonzero(np.diff(blocks) != 1)
    firsts = np.concatenate([[blocks[0]], blocks[cut + 1]])
    lasts = np.concatenate([blocks[cut], [blocks[-1]]])
    return list(zip(firsts.tolist(), lasts.tolist(), strict=True))
