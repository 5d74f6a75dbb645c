"""Label-efficiency benchmark: a simulated annotator on car_parts_dsmlr, part segmentation.

Protocol, per seed (paired: every strategy of a seed shares the start set and, round by
round, the model initialisation seed):
- the 400 photos are split once (fixed seed 12345, independent of the run seed) into a test
  split of ``test_size`` (100) photos that is never selected, and a pool (300);
- start: a random ``start_frac`` (5% -> 15 photos) of the pool, identical for every strategy
  within a seed;
- each round: train the model FROM SCRATCH on the labelled set (the same schedule rule every
  round and strategy, see below), evaluate mIoU on the test split, then the strategy picks
  ``budget`` more photos
  from the pool and the "annotator" reveals their ground truth;
- round 0 is the same for every strategy of a seed (same photos, same init seed, deterministic
  single-thread CPU training), so it is trained once per seed and shared.

Strategies (the project's ``active_learning`` functions do the picking):
- ``random``: :func:`random_selection`;
- ``entropy`` / ``margin``: per-pixel softmax entropy / margin
  (:func:`uncertainty.instance_uncertainty`), averaged per photo (:func:`uncertainty.aggregate`,
  ``how="mean"``), top-k by :func:`uncertainty_selection`;
- ``kcenter``: :func:`kcenter_greedy` on the model's embedding (global-average-pooled
  bottleneck features, 64-d);
- ``hybrid``: :func:`hybrid_selection`: top 4k by the entropy score, then k-center;
- ``committee``: a second model of the same architecture trained on the same labelled set
  with a different init/batch-order seed (``seed + 7919``); per-pixel disagreement =
  :func:`committee.vote_entropy` (mean KL of each member from the consensus), averaged per
  photo, top-k. The evaluated model is the first member, the same as the other strategies'.

The model (``bench/label_efficiency_model.py``): NOT the project's YOLO stage (far too slow to
retrain 100+ times on this CPU) but a small real U-Net trained here from scratch: stride-2
stem, encoder 16/32/64 channels, decoder with skip connections, BatchNorm, RGB + xy
coordinate channels, 19 classes (background + 18 dsmlr parts) per pixel at ``size``×``size``
(64 px: photos and label maps resized once and cached as arrays in the temp dir). AdamW, one-
cycle lr ``lr``, batch 8, weighted cross-entropy + soft Dice, brightness/contrast and zoom/
shift jitter (no flips: left/right classes). The schedule is ``steps + steps_per_image × n``
optimiser steps for ``n`` labelled photos: the same rule for every strategy and round
(cpu preset: 100 + 6·n, i.e. 190 steps at 15 photos ... 640 at 90, about 48 epochs).
A FIXED step count (400 for every round) was measured first and made the curves useless:
with more photos the net was under-trained, random's mIoU peaked at 45 photos and fell, and
"reaching random's final score" became trivially easy (inflated savings). Metric: mean IoU
over the part classes present in the test split (background excluded).

Outputs in ``--out`` (default ``bench/out/label_efficiency``, git-ignored): ``curves.csv``
(strategy, seed, round, labelled, miou), ``learning_curves.png``, ``summary.json``
(normalised area under the budget curve, label saving vs random per seed and on the mean
curves, rounds where a strategy lost to random beyond seed noise), and a printed table.

Label saving = 1 - (labels the strategy needs to reach random's final mIoU) / (random's final
labels), per seed (paired) and on the seed-mean curves; the labels needed are found by
LINEAR INTERPOLATION between the two rounds that bracket the target; "n/r" = never reached
within the run (saving <= 0 or unknown). AUBC = trapezoid area under mIoU-vs-labels divided by
the labels range (so it is a mean mIoU over the budget).

Presets: ``cpu`` (64 px, width 16, 100 + 6·n steps of 8 photos, 3 seeds, 5 rounds of 15
photos after the 15-photo start, 5 strategies, 2 worker processes of 1 torch thread each;
about 23 minutes on the shared 2-core machine), ``smoke`` (a reduced proof that it runs),
``gpu`` (96 px, 300 + 10·n steps of 16, 5 seeds, 8 rounds; for an H100-class machine, NOT
yet run). A first plan (6 rounds, 500 fixed steps) measured ~75 s per training
on the shared box, about 70 minutes in all, so the cpu preset has 5 rounds.

Run: ``.venv/bin/python bench/label_efficiency.py --preset cpu``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from active_learning import committee as cmt  # noqa: E402
from active_learning import uncertainty as unc  # noqa: E402
from active_learning.diversity import kcenter_greedy  # noqa: E402
from active_learning.strategies import hybrid_selection, random_selection, uncertainty_selection  # noqa: E402

DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "datasets" / "car_parts_dsmlr" / "trainingset"
)
N_CLASSES = 19  # background + 18 parts
COMMITTEE_SEED_OFFSET = 7919


@dataclass
class Preset:
    size: int = 64
    #: optimiser steps per training (a fixed schedule, whatever the labelled-set size)
    steps: int = 100
    #: extra steps per labelled photo (0 = a fixed number of steps every round); the schedule
    #: is then ``steps + steps_per_image * labelled``, the same rule for every strategy/round
    steps_per_image: int = 6
    width: int = 16
    batch: int = 8
    lr: float = 3e-3
    seeds: int = 3
    rounds: int = 5  # selection rounds after the start set
    budget: int = 15
    start_frac: float = 0.05
    test_size: int = 100
    strategies: tuple[str, ...] = ("random", "entropy", "kcenter", "hybrid", "committee")
    device: str = "cpu"
    #: torch threads per worker; on the shared 2-core box 1 thread per process was fastest
    threads: int = 1
    #: worker processes (each runs one strategy x seed trajectory at a time)
    workers: int = 2


PRESETS = {
    "cpu": Preset(),
    "smoke": Preset(
        steps=40,
        steps_per_image=0,
        seeds=2,
        rounds=2,
        budget=15,
        strategies=("random", "hybrid", "committee"),
    ),
    "gpu": Preset(
        size=96,
        steps=300,
        steps_per_image=10,
        batch=16,
        seeds=5,
        rounds=8,
        device="cuda",
        threads=8,
        workers=1,
    ),
}


# -- data ---------------------------------------------------------------------------


def load_dataset(size: int, data: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """``(N, 3, S, S)`` uint8 images and ``(N, S, S)`` uint8 label maps, cached on disk."""
    cache = Path(tempfile.gettempdir()) / f"panelbeater_dsmlr_{size}.npz"
    if cache.is_file():
        z = np.load(cache)
        return z["x"], z["y"]
    from PIL import Image

    from core.geometry import Shape

    meta = json.loads((data / "annotations.json").read_text())
    by_image: dict[int, list[dict]] = {}
    for a in meta["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images = sorted(meta["images"], key=lambda im: im["id"])
    parts = sorted(c["id"] for c in meta["categories"] if c["name"] != "_background_")
    label_of = {cid: i + 1 for i, cid in enumerate(parts)}  # 1..18; 0 = background
    xs, ys = [], []
    for im in images:
        with Image.open(data / "JPEGImages" / im["file_name"]) as f:
            rgb = np.asarray(f.convert("RGB").resize((size, size), Image.BILINEAR))
        sx, sy = size / im["width"], size / im["height"]
        lab = np.zeros((size, size), dtype=np.uint8)
        # larger parts first so small ones (lights, mirrors) stay visible on top
        anns = sorted(by_image.get(im["id"], []), key=lambda a: -float(a.get("area") or 0))
        for a in anns:
            rings = [
                np.asarray(s, dtype=float).reshape(-1, 2) for s in a["segmentation"] if len(s) >= 6
            ]
            if not rings:
                continue
            try:
                m = Shape.from_rings(rings).scaled(sx, sy).to_mask(size, size)
            except ValueError:
                continue
            if a["category_id"] in label_of:
                lab[m] = label_of[a["category_id"]]
        xs.append(rgb.transpose(2, 0, 1))
        ys.append(lab)
    x, y = np.stack(xs), np.stack(ys)
    np.savez_compressed(cache, x=x, y=y)
    return x, y


# -- model glue ----------------------------------------------------------------------


def _train(x: np.ndarray, y: np.ndarray, p: Preset, seed: int):
    from label_efficiency_model import train

    return train(
        x,
        y,
        steps=p.steps + p.steps_per_image * len(x),
        seed=seed,
        width=p.width,
        batch=p.batch,
        lr=p.lr,
        device=p.device,
    )


def _infer(model, x: np.ndarray, p: Preset) -> tuple[np.ndarray, np.ndarray]:
    from label_efficiency_model import infer

    return infer(model, x, p.device)


def _pixels(probs: np.ndarray, i: int, j: int) -> np.ndarray:
    """Photos ``i:j`` of ``(N, C, S, S)`` probabilities as ``((j-i)·S·S, C)`` float32 rows."""
    c = probs.shape[1]
    return probs[i:j].transpose(0, 2, 3, 1).reshape(-1, c).astype(np.float32)


def image_uncertainty(probs: np.ndarray, measure: str = "entropy") -> np.ndarray:
    """``(N,)`` per-photo score: the project's per-row measure on every pixel's softmax,
    averaged over the photo's pixels with :func:`uncertainty.aggregate`."""
    n, _, h, w = probs.shape
    out = np.empty(n)
    for i in range(0, n, 50):  # chunks keep the float32 copy small
        j = min(n, i + 50)
        s = unc.instance_uncertainty(_pixels(probs, i, j), measure)
        index = np.repeat(np.arange(j - i), h * w)
        out[i:j] = unc.aggregate(s, index, j - i, how="mean")
    return out


def committee_score(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """``(N,)`` mean per-pixel :func:`committee.vote_entropy` of two members' softmaxes."""
    n, _, h, w = pa.shape
    out = np.empty(n)
    for i in range(0, n, 50):
        j = min(n, i + 50)
        d = cmt.vote_entropy([_pixels(pa, i, j), _pixels(pb, i, j)])
        out[i:j] = d.reshape(j - i, h * w).mean(axis=1)
    return out


def select(
    strat: str, models: tuple, x_pool: np.ndarray, labelled: np.ndarray, p: Preset, seed: int
):
    """Pool positions to label next. ``models`` = (evaluated model, committee partner or None)."""
    k = p.budget
    if strat == "random":
        return random_selection(len(labelled), k, exclude=labelled, seed=seed)
    probs, feats = _infer(models[0], x_pool, p)
    if strat in ("entropy", "margin", "least_confidence"):
        return uncertainty_selection(image_uncertainty(probs, strat), k, exclude=labelled)
    if strat == "kcenter":
        return kcenter_greedy(feats, k, labelled=labelled, seed=seed)
    if strat == "hybrid":
        return hybrid_selection(image_uncertainty(probs), feats, k, labelled=labelled, seed=seed)
    if strat == "committee":
        pb, _ = _infer(models[1], x_pool, p)
        return uncertainty_selection(committee_score(probs, pb), k, exclude=labelled)
    raise ValueError(
        f"unknown strategy {strat!r}; use random, entropy, margin, kcenter, hybrid or committee."
    )


# -- the loop ------------------------------------------------------------------------


def _split(p: Preset, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    split_rng = np.random.default_rng(12345)  # the test split is the same for every run
    test = np.sort(split_rng.choice(n, size=p.test_size, replace=False))
    pool = np.setdiff1d(np.arange(n), test)
    return test, pool, max(1, round(p.start_frac * len(pool)))


def _start(seed: int, n_pool: int, n_start: int) -> np.ndarray:
    return np.random.default_rng(1000 + seed).choice(n_pool, size=n_start, replace=False)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _round0(args: tuple) -> tuple[int, int, dict, float | None]:
    """Round 0 of one seed (shared by all strategies): one member's trained state dict, and
    the test mIoU for member 0 (the evaluated model; offset != 0 = the committee partner)."""
    p, seed, offset = args
    from label_efficiency_model import miou

    x, y = load_dataset(p.size)
    test, pool, n_start = _split(p, len(x))
    idx = pool[np.sort(_start(seed, len(pool), n_start))]
    model = _train(x[idx], y[idx], p, seed * 100 + offset)
    score = None
    if offset == 0:
        pt, _ = _infer(model, x[test], p)
        score = miou(pt.argmax(1), y[test])
    return seed, offset, model.state_dict(), score


def _trajectory(args: tuple) -> list[dict]:
    """One strategy x seed: rounds 1..R after the shared round 0."""
    p, seed, strat, sd0, partner0, miou0 = args
    from label_efficiency_model import make_model, miou

    x, y = load_dataset(p.size)
    test, pool, n_start = _split(p, len(x))
    x_pool = x[pool]
    labelled = np.zeros(len(pool), dtype=bool)
    labelled[_start(seed, len(pool), n_start)] = True

    def load(sd):
        m = make_model(p.width).to(p.device)
        m.load_state_dict(sd)
        return m.eval()

    models = (load(sd0), load(partner0) if partner0 is not None else None)
    rows = [dict(strategy=strat, seed=seed, round=0, labelled=int(labelled.sum()), miou=miou0)]
    for r in range(1, p.rounds + 1):
        labelled[select(strat, models, x_pool, labelled, p, seed * 100 + r - 1)] = True
        idx = pool[labelled]
        model = _train(x[idx], y[idx], p, seed * 100 + r)
        partner = None
        if strat == "committee" and r < p.rounds:
            partner = _train(x[idx], y[idx], p, seed * 100 + r + COMMITTEE_SEED_OFFSET)
        models = (model, partner)
        pt, _ = _infer(model, x[test], p)
        rows.append(
            dict(
                strategy=strat,
                seed=seed,
                round=r,
                labelled=int(labelled.sum()),
                miou=miou(pt.argmax(1), y[test]),
            )
        )
    return rows


def _write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["strategy", "seed", "round", "labelled", "miou"])
        w.writeheader()
        w.writerows(rows)


def run(p: Preset, out: Path, log=print) -> dict:
    """Run the benchmark; writes curves.csv, summary.json, learning_curves.png into ``out``."""
    import multiprocessing as mp

    load_dataset(p.size)  # build the cache once, before the workers start
    t0 = time.time()
    log(
        f"model: SmallUNet width {p.width}, {p.size}px, "
        f"{p.steps} + {p.steps_per_image}/photo steps x batch {p.batch}, "
        f"AdamW lr {p.lr}; {p.seeds} seeds, start 5% + {p.rounds} rounds x {p.budget}; "
        f"{p.workers} workers x {p.threads} threads"
    )
    ctx = mp.get_context("spawn" if p.device != "cpu" else "fork")
    with ctx.Pool(p.workers, initializer=_init_worker, initargs=(p.threads,)) as pool:
        offsets = [0, COMMITTEE_SEED_OFFSET] if "committee" in p.strategies else [0]
        r0: dict[tuple[int, int], tuple[dict, float | None]] = {}
        for seed, off, sd, m0 in pool.imap_unordered(
            _round0, [(p, s, o) for s in range(p.seeds) for o in offsets]
        ):
            r0[(seed, off)] = (sd, m0)
            if off == 0:
                log(f"[{time.time() - t0:7.1f}s] seed {seed} round 0 (shared) mIoU {m0:.4f}")
        # seed-major, so complete seeds finish first; committee (2 trainings/round) first
        order = sorted(p.strategies, key=lambda s: s != "committee")
        jobs = [
            (p, s, st, r0[(s, 0)][0], r0.get((s, COMMITTEE_SEED_OFFSET), (None,))[0], r0[(s, 0)][1])
            for s in range(p.seeds)
            for st in order
        ]
        rows: list[dict] = []
        out.mkdir(parents=True, exist_ok=True)
        for traj in pool.imap_unordered(_trajectory, jobs):
            rows += traj
            st, sd = traj[0]["strategy"], traj[0]["seed"]
            curve = " ".join(f"{r['labelled']}:{r['miou']:.3f}" for r in traj)
            log(f"[{time.time() - t0:7.1f}s] seed {sd} {st:<10} {curve}")
            _write_csv(rows, out / "curves.partial.csv")  # survives an interrupted run
    rows.sort(key=lambda r: (p.strategies.index(r["strategy"]), r["seed"], r["round"]))
    _write_csv(rows, out / "curves.csv")
    (out / "curves.partial.csv").unlink(missing_ok=True)
    summary = summarise(rows, p)
    summary["preset"] = asdict(p)
    summary["minutes"] = round((time.time() - t0) / 60, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(rows, p, out / "learning_curves.png")
    return summary


def summarise(rows: list[dict], p: Preset) -> dict:
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    seeds = sorted({r["seed"] for r in rows})
    curves = {
        (s, seed): (
            np.array(
                [r["labelled"] for r in rows if r["strategy"] == s and r["seed"] == seed], float
            ),
            np.array([r["miou"] for r in rows if r["strategy"] == s and r["seed"] == seed], float),
        )
        for s in strategies
        for seed in seeds
    }
    out: dict = {"strategies": {}}
    for s in strategies:
        ys = np.stack([curves[(s, sd)][1] for sd in seeds])
        xs = curves[(s, seeds[0])][0]
        aubc = (
            [float(np.trapezoid(c, xs) / (xs[-1] - xs[0])) for c in ys]
            if len(xs) > 1
            else [float(ys[0, 0])]
        )
        entry = {
            "labelled": xs.tolist(),
            "miou_mean": ys.mean(0).round(4).tolist(),
            "miou_std": ys.std(0).round(4).tolist(),
            "aubc_mean": round(float(np.mean(aubc)), 4),
            "aubc_std": round(float(np.std(aubc)), 4),
        }
        if "random" in strategies and s != "random":
            rnd = np.stack([curves[("random", sd)][1] for sd in seeds])
            savings = [label_saving(xs, ys[i], xs, rnd[i]) for i in range(len(seeds))]
            entry["label_saving_per_seed"] = savings
            finite = [v for v in savings if v is not None]
            entry["label_saving_mean"] = round(float(np.mean(finite)), 3) if finite else None
            entry["label_saving_std"] = round(float(np.std(finite)), 3) if finite else None
            entry["label_saving_on_mean_curves"] = label_saving(xs, ys.mean(0), xs, rnd.mean(0))
            diff = ys - rnd
            se = (
                diff.std(0, ddof=1) / np.sqrt(len(seeds))
                if len(seeds) > 1
                else np.zeros(diff.shape[1])
            )
            entry["diff_vs_random_mean"] = diff.mean(0).round(4).tolist()
            # "worse beyond seed noise": mean paired difference below -2 standard errors
            entry["rounds_worse_than_random"] = [
                int(i) for i in np.flatnonzero(diff.mean(0) < -2 * se - 1e-9)
            ]
        out["strategies"][s] = entry
    if "random" in strategies:
        # label saving is only meaningful when random's curve still rises at the end: if its
        # mean peaks earlier, "reaching random's final score" is easy and savings inflate
        m = np.asarray(out["strategies"]["random"]["miou_mean"])
        out["random_final_below_earlier_round"] = bool(len(m) > 1 and m[-1] < m[:-1].max())
    return out


def label_saving(xs: np.ndarray, ys: np.ndarray, xr: np.ndarray, yr: np.ndarray) -> float | None:
    """1 - (labels the strategy needs to reach random's final score) / (random's final labels).

    Linear interpolation between rounds; None when the strategy never reaches it."""
    target, budget = yr[-1], xr[-1]
    if target <= yr[0]:
        return None  # random did not improve: no target to reach
    if ys[0] >= target:
        return round(float(1 - xs[0] / budget), 3)
    for i in range(1, len(xs)):
        if ys[i] >= target:
            f = (target - ys[i - 1]) / (ys[i] - ys[i - 1])
            return round(float(1 - (xs[i - 1] + f * (xs[i] - xs[i - 1])) / budget), 3)
    return None


def plot(rows: list[dict], p: Preset, path: Path) -> None:
    from active_learning.plots import learning_curve

    series = {}
    for s in dict.fromkeys(r["strategy"] for r in rows):
        rr = [r for r in rows if r["strategy"] == s]
        xs = sorted({r["labelled"] for r in rr})
        ys = [[r["miou"] for r in rr if r["labelled"] == v] for v in xs]
        series[s] = (xs, [float(np.mean(v)) for v in ys], [float(np.std(v)) for v in ys])
    title = (
        f"dsmlr parts, SmallUNet {p.size}px, "
        f"{p.steps}+{p.steps_per_image}/photo steps x {p.batch}, "
        f"{p.seeds} seeds (mean ± std)"
    )
    path.write_bytes(learning_curve(series, metric="test mIoU", title=title))


def resummarise(csv_path: Path, p: Preset, out: Path) -> dict:
    """Summary, table and plot from an existing curves CSV (e.g. of an interrupted run)."""
    with open(csv_path, newline="") as f:
        rows = [
            dict(
                r,
                seed=int(r["seed"]),
                round=int(r["round"]),
                labelled=int(r["labelled"]),
                miou=float(r["miou"]),
            )
            for r in csv.DictReader(f)
        ]
    if not rows:
        sys.exit(f"{csv_path} holds no rows; run the benchmark first.")
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows, p)
    summary["preset"] = asdict(p)
    summary["minutes"] = None
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(rows, p, out / "learning_curves.png")
    return summary


def table(summary: dict) -> str:
    """The printed result table (mIoU mean ± std per labelled count, AUBC, label saving)."""
    ss = summary["strategies"]
    xs = next(iter(ss.values()))["labelled"]
    head = (
        ["strategy"]
        + [f"n={int(v)}" for v in xs]
        + ["AUBC", "saving/seed", "saving(mean)", "lost@"]
    )
    lines = []
    for s, e in ss.items():
        cells = [s] + [
            f"{m:.3f}±{d:.3f}" for m, d in zip(e["miou_mean"], e["miou_std"], strict=False)
        ]
        cells.append(f"{e['aubc_mean']:.3f}±{e['aubc_std']:.3f}")
        if s == "random":
            cells += ["-", "-", "-"]
        else:
            per = ["n/r" if v is None else f"{v:+.2f}" for v in e["label_saving_per_seed"]]
            m = e["label_saving_on_mean_curves"]
            cells += [
                " ".join(per),
                "n/r" if m is None else f"{m:+.2f}",
                ",".join(str(int(xs[i])) for i in e["rounds_worse_than_random"]) or "none",
            ]
        lines.append(cells)
    widths = [max(len(str(r[i])) for r in [head, *lines]) for i in range(len(head))]
    fmt = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=False))  # noqa: E731
    return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, lines)])


def main() -> None:
    ap = argparse.ArgumentParser(description="Label-efficiency benchmark on car_parts_dsmlr.")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--out", type=Path, default=Path("bench/out/label_efficiency"))
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--steps-per-image", type=int, help="extra steps per labelled photo")
    ap.add_argument("--workers", type=int)
    ap.add_argument("--strategies", help="comma list, e.g. random,entropy,kcenter,hybrid,committee")
    ap.add_argument("--device")
    ap.add_argument(
        "--from-csv",
        type=Path,
        help="only summarise an existing curves.csv (or curves.partial.csv) into --out",
    )
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(
            f"dataset not found at {DATA}; this benchmark needs the real car_parts_dsmlr dataset."
        )
    changes = {
        k: v
        for k, v in {
            "seeds": args.seeds,
            "rounds": args.rounds,
            "steps": args.steps,
            "workers": args.workers,
            "steps_per_image": args.steps_per_image,
            "device": args.device,
        }.items()
        if v is not None
    }
    if args.strategies:
        changes["strategies"] = tuple(args.strategies.split(","))
    p = replace(PRESETS[args.preset], **changes)
    if p.strategies[0] != "random" and "random" in p.strategies:
        p = replace(p, strategies=("random", *(s for s in p.strategies if s != "random")))
    if args.from_csv:
        summary = resummarise(args.from_csv, p, args.out)
    else:
        summary = run(p, args.out)
    print()
    print(table(summary))
    print(
        "mIoU = test mean IoU over part classes (mean±std over paired seeds); AUBC = area under"
        " mIoU-vs-labels / labels range; saving = 1 - labels to reach random's final mIoU /"
        " random's final labels, linear interpolation between rounds, n/r = not reached;"
        " saving(mean) = on the seed-mean curves; lost@ = labelled counts where the paired"
        " mean difference to random < -2 standard errors."
    )
    if summary.get("random_final_below_earlier_round"):
        print(
            "WARNING: random's mean curve peaks before its last round (training noise exceeds"
            " the gain from more labels), so the label savings above are inflated and not"
            " evidence for the strategies; compare the mIoU columns and AUBC instead."
        )
    print(
        f"wrote {args.out}/curves.csv, learning_curves.png, summary.json"
        + (f" in {summary['minutes']} min" if summary["minutes"] is not None else "")
    )


if __name__ == "__main__":
    main()
