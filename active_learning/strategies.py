"""Selection strategies: pure functions over numpy arrays that return ranked image indices.

Every strategy returns ``(k,)`` int64 indices into the pool, best first. Images in
``exclude`` (labelled, held out) are never returned. :data:`STRATEGIES` maps the names used
by the CLI, the API and the benchmark to the functions, and :func:`run_strategy` dispatches on
a :class:`PoolArrays` bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from active_learning.coverage import maxherding, typiclust
from active_learning.diversity import kcenter_greedy
from active_learning.ranking import exclusion_mask, top_k
from active_learning.stratified import stratified_entropy

#: ``auto`` picks by coverage while labelled photos < this x the classes seen. PROVISIONAL:
#: a guess until the label-efficiency simulation runs measure where uncertainty overtakes
#: coverage; that is why ``auto`` is nobody's default yet.
AUTO_LABELLED_PER_CLASS = 2
#: The coverage strategy ``auto`` uses in the small-label regime.
AUTO_COVERAGE = "typiclust"
#: The strategy ``auto`` switches to once enough is labelled.
AUTO_UNCERTAINTY = "stratified_entropy"


def random_selection(n: int, k: int, *, exclude: object | None = None, seed: int = 0) -> np.ndarray:
    """``k`` eligible indices in a random order (the baseline)."""
    ok = np.flatnonzero(~exclusion_mask(n, exclude))
    rng = np.random.default_rng(seed)
    return rng.permutation(ok)[: min(k, len(ok))].astype(np.int64)


def stratified_random(
    classes: object, k: int, *, exclude: object | None = None, seed: int = 0
) -> np.ndarray:
    """Random picks that cycle through classes, rarest first: each class gets an equal turn.

    ``classes`` is ``(N,)`` int, e.g. each image's dominant predicted class (-1 = none).
    """
    c = np.asarray(classes).reshape(-1)
    ok = ~exclusion_mask(len(c), exclude)
    rng = np.random.default_rng(seed)
    values, counts = np.unique(c[ok], return_counts=True)
    queues = [
        list(rng.permutation(np.flatnonzero(ok & (c == v))))
        for v in values[np.argsort(counts, kind="stable")]
    ]
    out: list[int] = []
    while len(out) < k and any(queues):
        for q in queues:
            if q and len(out) < k:
                out.append(int(q.pop()))
    return np.asarray(out, dtype=np.int64)


def uncertainty_selection(scores: object, k: int, *, exclude: object | None = None) -> np.ndarray:
    """The ``k`` highest image scores (most uncertain first)."""
    return top_k(np.asarray(scores, dtype=np.float64), k, exclude=exclude)


def hybrid_selection(
    scores: object,
    embeddings: object,
    k: int,
    *,
    labelled: object | None = None,
    exclude: object | None = None,
    pool_factor: int = 4,
    groups: object | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Top ``pool_factor·k`` by uncertainty, then ``k`` of those by k-center diversity.

    The labelled images still act as centres, so the picks avoid what is already known.
    ``groups`` (``(N,)`` predicted class) adds the class-balance constraint of
    :func:`kcenter_greedy`. Picks are returned in k-center order.
    """
    x = np.asarray(embeddings)
    n = len(x)
    ex = exclusion_mask(n, exclude)
    lab = exclusion_mask(n, labelled)
    s = np.asarray(scores, dtype=np.float64)
    cand = top_k(s, pool_factor * k, exclude=ex | lab)
    if groups is not None:
        # Class balance must reach the candidate pool too: each group adds its own most
        # uncertain images, so a rare class is never filtered out before k-center.
        g_all = np.asarray(groups).reshape(-1)
        values = np.unique(g_all[~(ex | lab)])
        per = pool_factor * max(1, -(-k // max(len(values), 1)))
        extra = [
            top_k(np.where(g_all == v, s, np.nan), per, exclude=ex | lab | (g_all != v))
            for v in values
        ]
        cand = np.unique(np.concatenate([cand, *extra]))
    if len(cand) <= k:
        return cand
    lab_idx = np.flatnonzero(lab)
    sub = np.concatenate([cand, lab_idx])
    sub_lab = np.zeros(len(sub), dtype=bool)
    sub_lab[len(cand) :] = True
    g = None if groups is None else np.asarray(groups).reshape(-1)[sub]
    picked = kcenter_greedy(x[sub], k, labelled=sub_lab, groups=g, seed=seed)
    return sub[picked]


def kcenter_selection(
    embeddings: object,
    k: int,
    *,
    labelled: object | None = None,
    exclude: object | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Core-set selection on image embeddings (see :func:`kcenter_greedy`)."""
    return kcenter_greedy(embeddings, k, labelled=labelled, exclude=exclude, seed=seed)


def cold_start(
    n: int,
    k: int,
    *,
    descriptors: object | None = None,
    exclude: object | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Before any model exists: k-center on cheap image descriptors, or random without them."""
    if descriptors is None:
        return random_selection(n, k, exclude=exclude, seed=seed)
    return kcenter_greedy(descriptors, k, exclude=exclude, seed=seed)


@dataclass
class PoolArrays:
    """What a strategy may use about a pool of N images (any field may be None).

    uncertainty: ``(N,)`` image uncertainty; committee: ``(N,)`` disagreement;
    embeddings: ``(N, D)``; descriptors: ``(N, D')`` cheap descriptors;
    classes: ``(N,)`` dominant predicted class; labelled / exclude: ``(N,)`` bool;
    labelled_counts: class id -> labelled instances (None: counted from ``classes`` of the
    labelled photos); round_index: retraining rounds completed before this selection.
    """

    n: int
    uncertainty: np.ndarray | None = None
    committee: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    descriptors: np.ndarray | None = None
    classes: np.ndarray | None = None
    labelled: np.ndarray | None = None
    exclude: np.ndarray | None = None
    labelled_counts: dict[int, int] | None = None
    round_index: int = 0


def _need(value: object, what: str, strategy: str) -> np.ndarray:
    if value is None:
        raise ValueError(
            f"strategy {strategy!r} needs {what}, which no promoted model has produced yet; "
            "run pre-annotation first, or use 'random' or 'cold_start'."
        )
    return np.asarray(value)


def _blocked(p: PoolArrays) -> np.ndarray:
    return exclusion_mask(p.n, p.exclude) | exclusion_mask(p.n, p.labelled)


def _run_random(p: PoolArrays, k: int, seed: int, balance: bool) -> np.ndarray:
    return random_selection(p.n, k, exclude=_blocked(p), seed=seed)


def _run_stratified(p: PoolArrays, k: int, seed: int, balance: bool) -> np.ndarray:
    return stratified_random(
        _need(p.classes, "predicted classes", "stratified"), k, exclude=_blocked(p), seed=seed
    )


def _run_uncertainty(p: PoolArrays, k: int, seed: int, balance: bool) -> np.ndarray:
    return uncertainty_selection(
        _need(p.uncertainty, "uncertainty scores", "uncertainty"), k, exclude=_blocked(p)
    )


def _run_committee(p: PoolArrays, k: int, seed: int, balance: bool) -> np.ndarray:
    return uncertainty_selection(
        _need(p.committee, "two stages' predictions", "committee"), k, exclude=_blocked(p)
    )


def _run_kcenter(p: PoolArrays, k: int, seed: int, balance: bool) -> np.ndarray:
    x = _need(p.embeddings, "image embeddings", "kcenter")
    return kcenter_greedy(x, k, labelled=p.labelled, exclude=p.exclude, seed=seed)


def _run_hybrid(p: PoolArrays, k: int, seed: int, balance: bool) -> np.ndarray:
    s = p.uncertainty if p.uncertainty is not None else p.committee
    return hybrid_selection(
        _need(s, "uncertainty scores", "hybrid"),
        _need(p.embeddings, "image embeddings", "hybrid"),
        k,
        labelled=p.labelled,
        exclude=p.exclude,
        groups=p.classes if balance else None,
        seed=seed,
    )


def _run_cold(p: PoolArrays, k: int, seed: int, balance: bool) -> np.ndarray:
    return cold_start(p.n, k, descriptors=p.descriptors, exclude=_blocked(p), seed=seed)


def _run_maxherding(p: PoolArrays, k: int, seed: int, balance: bool) -> np.ndarray:
    x = _need(p.embeddings, "image embeddings", "maxherding")
    return maxherding(x, k, labelled=p.labelled, exclude=p.exclude, seed=seed)


def _run_typiclust(p: PoolArrays, k: int, seed: int, balance: bool) -> np.ndarray:
    x = _need(p.embeddings, "image embeddings", "typiclust")
    return typiclust(x, k, labelled=p.labelled, exclude=p.exclude, seed=seed)


def labelled_class_counts(p: PoolArrays) -> dict[int, int]:
    """Class id -> labelled instances: ``p.labelled_counts``, else the dominant predicted
    class of each labelled photo counted once (a stand-in when annotations were not read)."""
    if p.labelled_counts is not None:
        return dict(p.labelled_counts)
    if p.classes is None or p.labelled is None:
        return {}
    values, counts = np.unique(np.asarray(p.classes)[p.labelled], return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True) if v >= 0}


def _run_stratified_entropy(p: PoolArrays, k: int, seed: int, balance: bool) -> np.ndarray:
    return stratified_entropy(
        _need(p.uncertainty, "uncertainty scores", "stratified_entropy"),
        _need(p.classes, "predicted classes", "stratified_entropy"),
        k,
        labelled_counts=labelled_class_counts(p),
        round_index=p.round_index,
        exclude=_blocked(p),
        seed=seed,
    )


def auto_choice(p: PoolArrays) -> str:
    """The strategy ``auto`` runs: :data:`AUTO_COVERAGE` while labelled photos <
    :data:`AUTO_LABELLED_PER_CLASS` x classes seen (classes with a labelled instance or
    predicted for some photo), else :data:`AUTO_UNCERTAINTY`.

    Why: with a few labels per class the model's uncertainty is noise and covering the data
    labels more per photo; past that, uncertainty wins. The threshold is provisional until the
    label-efficiency runs measure the crossover.
    """
    counts = labelled_class_counts(p)
    seen = {c for c, m in counts.items() if m > 0}
    if p.classes is not None:
        seen |= {int(c) for c in np.unique(p.classes) if c >= 0}
    n_labelled = int(np.sum(p.labelled)) if p.labelled is not None else 0
    if n_labelled < AUTO_LABELLED_PER_CLASS * len(seen) or not seen:
        return AUTO_COVERAGE
    return AUTO_UNCERTAINTY


def _run_auto(p: PoolArrays, k: int, seed: int, balance: bool) -> np.ndarray:
    return STRATEGIES[auto_choice(p)](p, k, seed, balance)


STRATEGIES: dict[str, Callable[[PoolArrays, int, int, bool], np.ndarray]] = {
    "random": _run_random,
    "stratified": _run_stratified,
    "uncertainty": _run_uncertainty,
    "committee": _run_committee,
    "kcenter": _run_kcenter,
    "hybrid": _run_hybrid,
    "cold_start": _run_cold,
    "maxherding": _run_maxherding,
    "typiclust": _run_typiclust,
    "stratified_entropy": _run_stratified_entropy,
    "auto": _run_auto,
}


def run_strategy(
    name: str, pool: PoolArrays, k: int, *, seed: int = 0, balance: bool = False
) -> np.ndarray:
    """Dispatch by name; an unknown name raises ``ValueError`` listing the valid ones."""
    try:
        fn = STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}."
        ) from None
    return fn(pool, int(k), seed, balance)
