"""Low-budget selection at scale: pick 1,000 of 100,000 photos with 256-d embeddings.

Run: ``.venv/bin/python bench/bench_selection_scale.py [--n 100000 --k 1000 --d 256]``.
Times ``maxherding``, ``typiclust``, ``stratified_entropy`` and ``auto`` (in its coverage
regime) through :func:`active_learning.strategies.run_strategy`, on a 64-component Gaussian
mixture with 1% labelled. Target: each under ``TARGET_S`` on an idle machine; a loaded machine
reads slower (say so when quoting the figures).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from active_learning.strategies import PoolArrays, auto_choice, run_strategy  # noqa: E402

TARGET_S = 3.0
NAMES = ("maxherding", "typiclust", "stratified_entropy", "auto")


def make_pool(n: int, d: int, seed: int = 0) -> PoolArrays:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, size=(64, d)).astype(np.float32)
    classes = rng.integers(0, 64, n)
    x = centres[classes] + rng.normal(0, 1, size=(n, d)).astype(np.float32)
    labelled = np.zeros(n, dtype=bool)
    labelled[:: max(1, n // (n // 100 or 1))] = True  # 1% labelled
    return PoolArrays(
        n=n,
        uncertainty=rng.random(n),
        embeddings=x,
        classes=classes,
        labelled=labelled,
        exclude=np.zeros(n, dtype=bool),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=1_000)
    ap.add_argument("--d", type=int, default=256)
    a = ap.parse_args()
    pool = make_pool(a.n, a.d)
    print(f"pick {a.k} of {a.n} at {a.d}-d, {int(pool.labelled.sum())} labelled")
    for name in NAMES:
        t0 = time.perf_counter()
        picks = run_strategy(name, pool, a.k)
        dt = time.perf_counter() - t0
        extra = f" (ran {auto_choice(pool)})" if name == "auto" else ""
        ok = "ok" if dt < TARGET_S else f"over {TARGET_S:.0f} s"
        print(f"{name:<20} {dt:6.2f} s  {len(picks)} picks  {ok}{extra}")


if __name__ == "__main__":
    main()
