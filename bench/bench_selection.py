"""Selection speed and memory: pick k of N images with D-d embeddings.

Run: ``.venv/bin/python bench/bench_selection.py`` (defaults: N=100,000, k=1,000, D=256, plus
the 10k..1M scaling table). Each measurement runs in its own subprocess so peak memory
(``ru_maxrss``, whole process, including the input arrays) is not polluted by the previous one.
Inputs are synthetic: embeddings from a 64-component Gaussian mixture (clustered, like real
image embeddings), and per-instance part-head softmax outputs (62 classes, 3 instances per
image) from which the uncertainty strategies compute their scores.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

TARGETS_S = {"kcenter": 10.0, "hybrid": 3.0, "entropy": 0.5, "margin": 0.5, "least_confidence": 0.5}


def make_pool(
    n: int, d: int, seed: int = 0, structure: str = "mixture"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if structure == "gaussian":  # no cluster structure at all: the worst case for pruning
        x = rng.normal(0, 1, size=(n, d)).astype(np.float32)
    else:
        centres = rng.normal(0, 4, size=(64, d)).astype(np.float32)
        x = centres[rng.integers(0, 64, n)]
        x += rng.normal(0, 1, size=(n, d)).astype(np.float32)
    m = 3 * n
    logits = rng.normal(0, 2, size=(m, 62)).astype(np.float32)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    idx = np.repeat(np.arange(n), 3)
    return x, p, idx


def measure(strategy: str, n: int, k: int, d: int, structure: str = "mixture") -> dict:
    from active_learning import uncertainty as unc
    from active_learning.diversity import kcenter_greedy
    from active_learning.strategies import hybrid_selection, uncertainty_selection

    x, p, idx = make_pool(n, d, structure=structure)
    labelled = np.arange(0, n, max(1, n // 100))  # 1% already labelled
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    if strategy == "kcenter":
        picks = kcenter_greedy(x, k, labelled=labelled)
    else:
        measure_name = "entropy" if strategy == "hybrid" else strategy
        inst = unc.instance_uncertainty(p, measure_name)
        scores = unc.aggregate(inst, idx, n, how="max")
        if strategy == "hybrid":
            picks = hybrid_selection(scores, x, k, labelled=labelled)
        else:
            picks = uncertainty_selection(scores, k, exclude=labelled)
    dt = time.perf_counter() - t0
    assert len(picks) == k and len(set(picks.tolist())) == k
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    inputs_mb = (x.nbytes + p.nbytes + idx.nbytes) / 2**20
    return {
        "strategy": strategy,
        "n": n,
        "k": k,
        "d": d,
        "structure": structure,
        "seconds": round(dt, 3),
        "peak_rss_mb": round(rss, 1),
        "rss_before_mb": round(base_rss, 1),
        "inputs_mb": round(inputs_mb, 1),
    }


def run_child(strategy: str, n: int, k: int, d: int, structure: str = "mixture") -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", strategy, str(n), str(k), str(d), structure],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=5, metavar=("STRATEGY", "N", "K", "D", "STRUCTURE"))
    ap.add_argument(
        "--structure",
        choices=["mixture", "gaussian"],
        default="mixture",
        help="embeddings from a 64-component mixture (clustered) or one isotropic Gaussian",
    )
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=1000)
    ap.add_argument("--d", type=int, default=256)
    ap.add_argument(
        "--scaling", default="10000,100000,1000000", help="comma list of N ('' to skip)"
    )
    ap.add_argument("--json", type=Path, help="also write all rows here")
    args = ap.parse_args()
    if args.child:
        s, n, k, d, structure = args.child
        print(json.dumps(measure(s, int(n), int(k), int(d), structure)))
        return
    rows = []
    print(
        f"# select k={args.k} of N={args.n:,}, D={args.d}, {args.structure} embeddings "
        "(2-core CPU, shared: timings are noisy)"
    )
    print(f"{'strategy':<18}{'seconds':>9}{'target':>8}{'peak RSS MB':>13}{'inputs MB':>11}  ok")
    for s in ["least_confidence", "margin", "entropy", "hybrid", "kcenter"]:
        r = run_child(s, args.n, args.k, args.d, args.structure)
        rows.append(r)
        ok = r["seconds"] <= TARGETS_S[s] and r["peak_rss_mb"] <= 1024
        print(
            f"{s:<18}{r['seconds']:>9.3f}{TARGETS_S[s]:>8.1f}{r['peak_rss_mb']:>13.1f}{r['inputs_mb']:>11.1f}  {'yes' if ok else 'NO'}"
        )
    if args.scaling:
        print("\n# scaling (k=1000, D=256)")
        print(f"{'N':>10}{'strategy':>10}{'seconds':>9}{'peak RSS MB':>13}{'inputs MB':>11}")
        for n in [int(v) for v in args.scaling.split(",") if v]:
            for s in ["entropy", "hybrid", "kcenter"]:
                r = run_child(s, n, args.k, args.d, args.structure)
                rows.append(r)
                print(
                    f"{n:>10,}{s:>10}{r['seconds']:>9.3f}{r['peak_rss_mb']:>13.1f}{r['inputs_mb']:>11.1f}"
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
