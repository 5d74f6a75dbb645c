"""Coverage selection for low budgets: MaxHerding (kernel coverage) and TypiClust.

Both pick points that *represent* the pool rather than points the model is unsure of, which is
what works while the labelled set is tiny (a few photos per class). Both are pure numpy and
approximate on large pools so that 1,000 of 100,000 photos at 256-d take seconds:

* :func:`maxherding` runs greedy kernel herding over a random sample of candidates and of
  coverage points (not all N), with lazy greedy evaluation (the gain is submodular).
* :func:`typiclust` clusters a random sample with mini-batch k-means and picks only from that
  sample; typicality uses exact neighbours within each (small) cluster.
"""

from __future__ import annotations

import heapq

import numpy as np

from active_learning.diversity import as_embeddings, min_sq_dist_to
from active_learning.ranking import exclusion_mask

#: Candidate points MaxHerding scores (sampled from the eligible pool) and coverage points it
#: sums over (sampled from the whole pool): the kernel matrix is at most this squared.
HERDING_SAMPLE = 2000
#: Points whose pairwise distances set the RBF bandwidth (their median).
BANDWIDTH_SAMPLE = 1000
#: Labelled points MaxHerding counts as already covering (a random sample beyond that).
HERDING_MAX_LABELLED = 10_000
#: Points TypiClust clusters (all labelled points up to this, then a random sample of the rest).
TYPICLUST_SAMPLE = 10_000
#: At most this many clusters (K = labelled + budget, capped): bounds k-means time.
TYPICLUST_MAX_CLUSTERS = 1_000
#: Clusters smaller than this are skipped: a cluster of 2 is noise, not a mode of the data.
TYPICLUST_MIN_CLUSTER = 5
#: Neighbours whose mean distance defines typicality (fewer in a smaller cluster).
TYPICALITY_NEIGHBOURS = 20
#: In a cluster larger than this, only this many random members are scored, against this
#: many random members as neighbours: a big cluster needs only its few most typical points.
TYPICALITY_SAMPLE = 1000
#: Up to this many pairs, a cluster's distances are computed without BLAS.
SMALL_PAIRS = 16_384
#: Up to this many clusters k-means is seeded by k-means++; beyond, by random rows.
KMEANSPP_MAX = 256


def _pool(
    embeddings: object, k: int, labelled: object, exclude: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """What both coverage strategies start from: the embeddings, the excluded and labelled
    masks (labelled never excluded), the eligible indices, and ``k`` capped at their count."""
    x = as_embeddings(embeddings)
    ex = exclusion_mask(len(x), exclude)
    lab = exclusion_mask(len(x), labelled) & ~ex
    eligible = np.flatnonzero(~ex & ~lab)
    return x, ex, lab, eligible, min(int(k), len(eligible))


def rbf_bandwidth(x: np.ndarray, rng: np.random.Generator, sample: int = BANDWIDTH_SAMPLE) -> float:
    """Median pairwise Euclidean distance of a random sample of rows of ``x`` (the usual
    median heuristic); 1.0 when every sampled point coincides."""
    s = x[rng.choice(len(x), size=min(len(x), sample), replace=False)]
    sq = (s * s).sum(axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (s @ s.T)
    iu = np.triu_indices(len(s), k=1)
    d = np.sqrt(np.maximum(d2[iu], 0.0))
    med = float(np.median(d)) if len(d) else 0.0
    return med if med > 0 else 1.0


def _rbf(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    """``(len(a), len(b))`` float32 RBF kernel ``exp(-|a-b|^2 / (2 sigma^2))``."""
    d2 = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    np.maximum(d2, 0.0, out=d2)
    d2 *= -1.0 / (2.0 * sigma * sigma)
    return np.exp(d2, out=d2)


def maxherding(
    embeddings: object,
    k: int,
    *,
    labelled: object | None = None,
    exclude: object | None = None,
    seed: int = 0,
    sample: int = HERDING_SAMPLE,
) -> np.ndarray:
    """MaxHerding: greedily pick the point that most increases
    ``sum_j max_{s in selected+labelled} K(x_j, x_s)`` with an RBF kernel ``K``.

    Args:
        embeddings: ``(N, D)`` float (cast to float32).
        k: how many to pick (fewer if fewer are eligible).
        labelled: indices or bool mask already labelled: they cover from the start.
        exclude: indices or bool mask neither picked nor counted as coverage points.
        seed: seeds the samples.
        sample: candidates and coverage points are random samples of this size (all points
            when fewer); the candidates number at least ``2 k``.
    Bandwidth: the median pairwise distance of a sample of the pool (:func:`rbf_bandwidth`).
    Returns ``(k,)`` int64 indices in pick order.
    """
    x, ex, lab, eligible, k = _pool(embeddings, k, labelled, exclude)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    pool = np.flatnonzero(~ex)
    cand = _sample(eligible, max(sample, 2 * k), rng)
    cover = _sample(pool, sample, rng)
    sigma = rbf_bandwidth(x[pool], rng)
    kern = _rbf(x[cand], x[cover], sigma)  # (C, M)
    best = _labelled_cover(x, x[cover], np.flatnonzero(lab), sigma, rng)
    return cand[_lazy_greedy(kern, best, k)]


def _sample(idx: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if len(idx) <= size:
        return idx
    return np.sort(rng.choice(idx, size=size, replace=False))


def _labelled_cover(
    x: np.ndarray, cover: np.ndarray, lab: np.ndarray, sigma: float, rng: np.random.Generator
) -> np.ndarray:
    """``(M,)`` float32: each coverage point's largest kernel value to a labelled point (0 when
    none is labelled). The max kernel is the kernel of the nearest one, so one nearest-distance
    pass suffices; a huge labelled set is sampled, which only matters past the low budgets."""
    if len(lab) == 0:
        return np.zeros(len(cover), dtype=np.float32)
    lab = _sample(lab, HERDING_MAX_LABELLED, rng)
    d2 = min_sq_dist_to(cover, (cover * cover).sum(axis=1), x[lab])
    return np.exp(-d2 / (2.0 * sigma * sigma)).astype(np.float32)


def _lazy_greedy(kern: np.ndarray, best: np.ndarray, k: int) -> np.ndarray:
    """Greedy maximisation of ``sum_j max(best_j, kern[i, j])`` over picks ``i``.

    The gain of a candidate only shrinks as ``best`` grows (submodularity), so a stale gain is
    an upper bound: re-evaluate only the top of a max-heap until its fresh gain stays on top.
    Ties break by the lower candidate row, so the result is deterministic.
    """
    best = best.copy()
    gains = np.maximum(kern - best[None, :], 0.0).sum(axis=1)
    heap = [(-float(g), i) for i, g in enumerate(gains)]
    heapq.heapify(heap)
    picks: list[int] = []
    while heap and len(picks) < k:
        _, i = heapq.heappop(heap)
        fresh = float(np.maximum(kern[i] - best, 0.0).sum())
        if heap and -heap[0][0] > fresh + 1e-9:
            heapq.heappush(heap, (-fresh, i))
            continue
        picks.append(i)
        np.maximum(best, kern[i], out=best)
    return np.asarray(picks, dtype=np.int64)


# -- TypiClust -----------------------------------------------------------------------------


def minibatch_kmeans(
    x: np.ndarray,
    n_clusters: int,
    *,
    seed: int = 0,
    batch: int = 2048,
    iters: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Mini-batch k-means (Sculley 2010) on ``(N, D)`` float32 rows.

    Centres start by k-means++ seeding on a random subsample of ``3 K`` rows when
    ``K <= KMEANSPP_MAX`` (seeding costs K passes), else at random distinct rows; each step moves the centres of a random batch's
    points towards them with a per-centre rate ``1 / count``. Returns ``(centres (K, D),
    labels (N,))``, labels from one final full assignment.
    """
    rng = np.random.default_rng(seed)
    n = len(x)
    n_clusters = max(1, min(int(n_clusters), n))
    if n_clusters <= KMEANSPP_MAX:
        centres = kmeanspp(x[_sample(np.arange(n), 3 * n_clusters, rng)], n_clusters, rng)
    else:  # many centres: random rows already follow the density, at no cost
        centres = x[rng.choice(n, size=n_clusters, replace=False)].copy()
    counts = np.zeros(n_clusters, dtype=np.float32)
    for _ in range(iters):
        b = x[rng.choice(n, size=min(batch, n), replace=False)]
        near = _assign(b, centres)
        order = np.argsort(near, kind="stable")
        hit, starts, size = np.unique(near[order], return_index=True, return_counts=True)
        sums = np.add.reduceat(b[order], starts, axis=0)
        counts[hit] += size
        rate = (size / counts[hit])[:, None]
        centres[hit] += rate * (sums / size[:, None] - centres[hit])
    return centres, _assign(x, centres)


def kmeanspp(x: np.ndarray, n_clusters: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: ``(K, D)`` rows of ``x``, each next one drawn with probability
    proportional to its squared distance to the nearest already chosen."""
    sqn = (x * x).sum(axis=1)
    chosen = [int(rng.integers(len(x)))]
    mind = min_sq_dist_to(x, sqn, x[chosen])
    for _ in range(1, n_clusters):
        total = float(mind.sum())
        j = int(rng.choice(len(x), p=mind / total)) if total > 0 else int(rng.integers(len(x)))
        chosen.append(j)
        diff = x - x[j]
        # einsum, not a BLAS matvec: one small BLAS call per centre costs a thread wake-up
        # each, which dominates on a busy machine
        np.minimum(mind, np.einsum("ij,ij->i", diff, diff), out=mind)
    return x[chosen].copy()


def _assign(x: np.ndarray, centres: np.ndarray, chunk: int = 8192) -> np.ndarray:
    csq = (centres * centres).sum(axis=1)
    out = np.empty(len(x), dtype=np.int64)
    for i in range(0, len(x), chunk):
        # |x - c|^2 up to the row's own |x|^2, which does not change the argmin
        out[i : i + chunk] = np.argmin(csq[None, :] - 2.0 * (x[i : i + chunk] @ centres.T), axis=1)
    return out


def _groups(labels: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``[(label, member indices), ...]`` for every label present, in label order."""
    order = np.argsort(labels, kind="stable")
    values, starts = np.unique(labels[order], return_index=True)
    return list(zip(values.tolist(), np.split(order, starts[1:]), strict=True))


def typicality(x: np.ndarray, neighbours: int = TYPICALITY_NEIGHBOURS) -> np.ndarray:
    """``(N,)``: inverse mean distance of each row to its ``min(neighbours, N-1)`` nearest other
    rows (exact; meant for the rows of one cluster). A lone row scores 0."""
    return _typicality_against(x, x, neighbours, same=True)


def _typicality_against(
    q: np.ndarray, ref: np.ndarray, neighbours: int, *, same: bool
) -> np.ndarray:
    kk = min(neighbours, len(ref) - 1 if same else len(ref))
    if kk < 1:
        return np.zeros(len(q))
    if len(q) * len(ref) <= SMALL_PAIRS:
        # small clusters (most of them): no BLAS call, whose thread wake-up costs more here
        diff = q[:, None, :] - ref[None, :, :]
        d2 = np.einsum("ijk,ijk->ij", diff, diff)
    else:
        d2 = (q * q).sum(axis=1)[:, None] + (ref * ref).sum(axis=1)[None, :] - 2.0 * (q @ ref.T)
    if same:
        np.fill_diagonal(d2, np.inf)
    near = np.sqrt(np.maximum(np.partition(d2, kk - 1, axis=1)[:, :kk], 0.0))
    return 1.0 / (near.mean(axis=1) + 1e-8)


def _cluster_typicality(
    x: np.ndarray, members: np.ndarray, free: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``(scored, typicality)`` for the unlabelled ``free`` members of one cluster: all of them
    exactly in a small cluster; in a big one a random ``TYPICALITY_SAMPLE`` of them against a
    random ``TYPICALITY_SAMPLE`` of the members (a sparser reference set stretches every
    neighbour distance alike, so the order is roughly kept)."""
    if len(members) <= TYPICALITY_SAMPLE:
        typ = typicality(x[members])
        return free, typ[np.isin(members, free)]
    scored = _sample(free, TYPICALITY_SAMPLE, rng)
    ref = _sample(members, TYPICALITY_SAMPLE, rng)
    # a scored point may sit in ref: its zero self-distance then counts, slightly, for all alike
    return scored, _typicality_against(x[scored], x[ref], TYPICALITY_NEIGHBOURS, same=False)


def typiclust(
    embeddings: object,
    k: int,
    *,
    labelled: object | None = None,
    exclude: object | None = None,
    seed: int = 0,
    sample: int = TYPICLUST_SAMPLE,
    min_cluster: int = TYPICLUST_MIN_CLUSTER,
) -> np.ndarray:
    """TypiClust: cluster into ``K = labelled + k`` clusters (capped at
    ``TYPICLUST_MAX_CLUSTERS``), then repeatedly take the most typical unpicked point of the
    least covered cluster: clusters holding fewer labelled/picked points first, larger first,
    clusters under ``min_cluster`` points skipped (until nothing else is left).

    Approximation: mini-batch k-means on a sample of ``sample`` points (every labelled point
    up to that size, then random eligible ones); picks come from that sample only.
    Returns ``(k,)`` int64 indices in pick order.
    """
    x, ex, lab, eligible, k = _pool(embeddings, k, labelled, exclude)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    lab_idx = _sample(np.flatnonzero(lab), sample // 2, rng)
    sub = np.concatenate([lab_idx, _sample(eligible, max(sample - len(lab_idx), k), rng)])
    n_clusters = min(len(lab_idx) + k, TYPICLUST_MAX_CLUSTERS, len(sub))
    _, labels = minibatch_kmeans(x[sub], n_clusters, seed=seed)
    is_lab = np.zeros(len(sub), dtype=bool)
    is_lab[: len(lab_idx)] = True
    return sub[_typical_picks(x[sub], labels, is_lab, k, min_cluster, rng)]


def _typical_picks(
    x: np.ndarray,
    labels: np.ndarray,
    is_lab: np.ndarray,
    k: int,
    min_cluster: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Rows of ``x`` picked cluster by cluster (see :func:`typiclust`)."""
    queues: dict[int, list[int]] = {}
    covered: dict[int, int] = {}
    size: dict[int, int] = {}
    for c, members in _groups(labels):
        size[c] = len(members)
        covered[c] = int(is_lab[members].sum())
        free = members[~is_lab[members]]
        if len(free):
            scored, typ = _cluster_typicality(x, members, free, rng)
            # most typical last, so pop() takes it; ties by the lower row
            queues[c] = scored[np.lexsort((-scored, typ))].tolist()
    # (small?, times covered, -size, cluster): small clusters only once nothing else is left
    heap = [(size[c] < min_cluster, covered[c], -size[c], c) for c in queues]
    heapq.heapify(heap)
    picks: list[int] = []
    while len(picks) < k and heap:
        small, cov, neg_size, c = heapq.heappop(heap)
        picks.append(queues[c].pop())
        if queues[c]:
            heapq.heappush(heap, (small, cov + 1, neg_size, c))
    return np.asarray(picks, dtype=np.int64)
