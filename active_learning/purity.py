"""Is an embedding worth trusting for selection? Nearest-neighbour purity against chance.

Coverage strategies (k-center, MaxHerding, TypiClust) assume that photos close in the
embedding look alike. If a photo's nearest neighbour shares its dominant class no more often
than a random photo does, the embedding carries no class signal and coverage in it is random
selection with extra steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from active_learning.diversity import CHUNK, as_embeddings


@dataclass(frozen=True)
class Purity:
    """``neighbour``: share of photos whose nearest other photo has the same dominant class;
    ``random``: the same share for random pairs (chance level); ``n``: photos counted."""

    neighbour: float
    random: float
    n: int


def neighbour_purity(
    embeddings: object, dominant_class: object, *, seed: int = 0, chunk: int = CHUNK
) -> Purity:
    """Nearest-neighbour purity of ``(N, D)`` embeddings against ``(N,)`` int dominant classes.

    Photos with class -1 (none) are left out entirely. The nearest neighbour is exact
    (Euclidean, computed in row chunks: O(N^2 D) time, O(chunk * N) memory). The random share
    pairs each photo with a random other photo (seeded). An embedding is useful when
    ``neighbour`` clearly exceeds ``random``.
    """
    x = as_embeddings(embeddings)
    c = np.asarray(dominant_class).reshape(-1)
    if len(c) != len(x):
        raise ValueError(f"dominant_class has {len(c)} entries for {len(x)} embeddings.")
    keep = c >= 0
    x, c = x[keep], c[keep]
    n = len(x)
    if n < 2:
        return Purity(float("nan"), float("nan"), n)
    sq = (x * x).sum(axis=1)
    nearest = np.empty(n, dtype=np.int64)
    for i in range(0, n, chunk):
        d = sq[None, :] - 2.0 * (x[i : i + chunk] @ x.T)  # |x_i|^2 dropped: same argmin
        d[np.arange(len(d)), np.arange(i, i + len(d))] = np.inf  # not its own neighbour
        nearest[i : i + chunk] = np.argmin(d, axis=1)
    rng = np.random.default_rng(seed)
    # a random *other* photo: shift by 1..n-1 so a photo is never paired with itself
    other = (np.arange(n) + rng.integers(1, n, size=n)) % n
    return Purity(float((c[nearest] == c).mean()), float((c[other] == c).mean()), n)
