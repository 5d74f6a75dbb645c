"""Stratified noisy entropy (after ClaSP PE): uncertainty with decaying noise, plus a share of
each batch reserved for photos predicted to hold rare classes.

Plain top-k entropy piles a batch onto near-duplicates of one confusing photo and ignores
classes the model barely knows. Noise spreads the early batches (when the scores are least
trustworthy) and fades as the model improves; the reserved share keeps rare classes fed.
"""

from __future__ import annotations

import numpy as np

from active_learning.ranking import exclusion_mask, top_k

#: Share of each batch reserved for photos predicted to hold rare classes.
RARE_SHARE = 0.25
#: Rare classes: this fraction of the classes predicted in the pool, those with the fewest
#: labelled instances (at least one class).
RARE_CLASS_FRACTION = 1 / 3
#: Gumbel noise scale in round 0; it halves each round.
NOISE_TEMPERATURE = 0.5


def noise_temperature(round_index: int, start: float = NOISE_TEMPERATURE) -> float:
    """The noise scale of round ``round_index`` (0 = first): ``start / 2**round_index``."""
    return float(start) * 0.5 ** max(int(round_index), 0)


def noisy_scores(
    scores: object, round_index: int, *, seed: int = 0, temperature: float = NOISE_TEMPERATURE
) -> np.ndarray:
    """``scores + T * Gumbel(0, 1)`` with ``T = noise_temperature(round_index)``; NaN stays
    NaN (no score ranks last). ``(N,)`` float64."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    g = np.random.default_rng(seed).gumbel(0.0, 1.0, size=len(s))
    return s + noise_temperature(round_index, temperature) * g


def rare_classes(
    classes: np.ndarray, eligible: np.ndarray, labelled_counts: dict[int, int]
) -> list[int]:
    """The predicted classes of the eligible photos with the fewest labelled instances, rarest
    first (ties: fewer predicted photos first, then the lower id); -1 (no prediction) is
    never a class."""
    values, predicted = np.unique(classes[eligible & (classes >= 0)], return_counts=True)
    if len(values) == 0:
        return []
    lab = np.array([labelled_counts.get(int(v), 0) for v in values])
    order = np.lexsort((values, predicted, lab))
    n_rare = max(1, int(np.ceil(len(values) * RARE_CLASS_FRACTION)))
    return [int(v) for v in values[order][:n_rare]]


def stratified_entropy(
    scores: object,
    classes: object,
    k: int,
    *,
    labelled_counts: dict[int, int],
    round_index: int = 0,
    exclude: object | None = None,
    seed: int = 0,
    rare_share: float = RARE_SHARE,
    temperature: float = NOISE_TEMPERATURE,
) -> np.ndarray:
    """Pick ``k`` photos by noisy entropy, ``round(rare_share * k)`` of them from rare classes.

    Args:
        scores: ``(N,)`` image uncertainty (e.g. entropy); NaN = none.
        classes: ``(N,)`` int dominant predicted class per photo (-1 = none).
        labelled_counts: class id -> labelled instances of that class.
        round_index: 0 for the first round; the noise halves each round.
        exclude: indices or bool mask never picked (labelled, held out).
    The reserved slots cycle through :func:`rare_classes`, rarest first, each turn taking that
    class's highest noisy score; slots rare classes cannot fill go to the open part. Returns
    ``(k,)`` int64: the reserved picks first, then the rest by noisy score.
    """
    noisy = noisy_scores(scores, round_index, seed=seed, temperature=temperature)
    c = np.asarray(classes).reshape(-1)
    if len(c) != len(noisy):
        raise ValueError(f"classes has {len(c)} entries for {len(noisy)} scores.")
    blocked = exclusion_mask(len(c), exclude)
    reserved = _rare_picks(noisy, c, ~blocked, labelled_counts, round(rare_share * k))
    blocked[reserved] = True
    rest = top_k(noisy, k - len(reserved), exclude=blocked)
    return np.concatenate([reserved, rest]).astype(np.int64)


def _rare_picks(
    noisy: np.ndarray,
    classes: np.ndarray,
    eligible: np.ndarray,
    labelled_counts: dict[int, int],
    quota: int,
) -> np.ndarray:
    rare = rare_classes(classes, eligible, labelled_counts)
    queues = [top_k(noisy, quota, exclude=~(eligible & (classes == v))).tolist() for v in rare]
    for q in queues:
        q.reverse()  # best last, so pop() takes it
    out: list[int] = []
    while len(out) < quota and any(queues):
        for q in queues:
            if q and len(out) < quota:
                out.append(q.pop())
    return np.asarray(out, dtype=np.int64)
