"""Label-efficiency benchmark: a simulated annotator on car_parts_dsmlr, part segmentation.

What it does, per seed (paired: every strategy of a seed shares the start set and the model
initialisation seed):
- the 400 photos are split once (fixed seed, independent of the run seed) into a test split of
  ``test_size`` photos that is never selected, and a pool;
- start: a random ``start_frac`` (5%) of the pool, identical for every strategy within a seed;
- each round: train the model FROM SCRATCH on the labelled set (same schedule every round),
  evaluate mIoU on the test split, then the strategy picks ``budget`` more photos from the
  pool; the "annotator" reveals their ground truth;
- strategies: random, uncertainty (mean pixel entropy per photo), kcenter (on the model's
  pooled bottleneck features), hybrid (top 4k by entropy, then k-center), committee (two
  models from different initialisations; mean per-pixel KL from their consensus).

The model: NOT the project's YOLO stage (far too slow to retrain 100+ times on this CPU) but
a small real part-segmentation network trained here: a 3-stage fully convolutional net
(``TinySegNet``, a small FCN) predicting the 18 dsmlr part classes + background per pixel at
``size``×``size`` pixels, Adam, cross-entropy, horizontal-flip augmentation. Metric: mean IoU
over the part classes present in the test split.

Outputs in ``--out``: ``curves.csv`` (strategy, seed, round, labelled, miou),
``learning_curves.png``, ``summary.json`` (normalised area under the budget curve, label
saving vs random per seed and on the mean curves, rounds where a strategy lost to random).

Presets: ``cpu`` (64 px, 250 steps of 16 photos, 3 seeds, 6 rounds of 15 photos: within 45 minutes on the
2-core machine when it is not shared), ``smoke`` (a reduced proof that it runs), ``gpu``
(128 px, wider net, 1500 steps, 5 seeds, 8 rounds; for an H100-class machine).

Run: ``.venv/bin/python bench/label_efficiency.py --preset cpu --out bench/out/label_eff``.
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
os.environ.setdefault("OMP_NUM_THREADS", "2")

import numpy as np  # noqa: E402

from active_learning import committee as cmt  # noqa: E402
from active_learning import uncertainty as unc  # noqa: E402
from active_learning.diversity import kcenter_greedy  # noqa: E402
from active_learning.strategies import hybrid_selection, random_selection, uncertainty_selection  # noqa: E402

DATA = (
    Path(__file__).resolve().parents[2] / "shared" / "datasets" / "car_parts_dsmlr" / "trainingset"
)
N_CLASSES = 19  # background + 18 parts


@dataclass
class Preset:
    size: int = 64
    #: optimiser steps per training (a fixed schedule, whatever the labelled-set size)
    steps: int = 250
    width: int = 16
    batch: int = 16
    lr: float = 3e-3
    seeds: int = 3
    rounds: int = 6  # selection rounds after the start set
    budget: int = 15
    start_frac: float = 0.05
    test_size: int = 100
    strategies: tuple[str, ...] = ("random", "uncertainty", "kcenter", "hybrid", "committee")
    device: str = "cpu"
    threads: int = 1  # on the shared 2-core box, 2 torch threads ran 15x slower per step than 1


PRESETS = {
    "cpu": Preset(),
    "smoke": Preset(
        steps=120,
        seeds=2,
        rounds=2,
        budget=15,
        strategies=("random", "hybrid", "committee"),
    ),
    "gpu": Preset(
        size=128, steps=1500, width=32, seeds=5, rounds=8, budget=15, device="cuda", threads=8
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


# -- model ---------------------------------------------------------------------------


def make_model(width: int):
    """A small FCN: three stride-2 stages (1/2, 1/4, 1/8), their features upsampled to 1/2 and
    concatenated, a 1×1 classifier, logits upsampled to the input size. About 12 M
    multiply-adds per 64-px image at width 16, so it retrains in seconds on 2 cores."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def stage(i, o):
        return nn.Sequential(
            nn.Conv2d(i, o, 3, stride=2, padding=1),
            nn.BatchNorm2d(o),
            nn.ReLU(inplace=True),
            nn.Conv2d(o, o, 3, padding=1),
            nn.BatchNorm2d(o),
            nn.ReLU(inplace=True),
        )

    class TinySegNet(nn.Module):
        def __init__(self):
            super().__init__()
            w = width
            self.s1, self.s2, self.s3 = stage(3, w), stage(w, 2 * w), stage(2 * w, 4 * w)
            self.head = nn.Sequential(
                nn.Conv2d(7 * w, 2 * w, 1), nn.ReLU(inplace=True), nn.Conv2d(2 * w, N_CLASSES, 1)
            )

        def forward(self, x):
            f1 = self.s1(x)
            f2 = self.s2(f1)
            f3 = self.s3(f2)
            size = f1.shape[-2:]
            cat = torch.cat(
                [
                    f1,
                    F.interpolate(f2, size=size, mode="bilinear", align_corners=False),
                    F.interpolate(f3, size=size, mode="bilinear", align_corners=False),
                ],
                1,
            )
            logits = F.interpolate(
                self.head(cat), size=x.shape[-2:], mode="bilinear", align_corners=False
            )
            return logits, f3.mean(dim=(2, 3))

    return TinySegNet()


def train(x: np.ndarray, y: np.ndarray, p: Preset, seed: int):
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = torch.device(p.device)
    model = make_model(p.width).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=p.lr)
    steps = p.steps
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p.lr, total_steps=steps)
    xt = torch.from_numpy(x).float().div_(255.0).to(dev)
    yt = torch.from_numpy(y).long().to(dev)
    model.train()
    order: list[int] = []
    for _ in range(steps):
        if len(order) < p.batch:  # reshuffled epochs, drawn batch by batch
            order += rng.permutation(len(x)).tolist()
        b = torch.tensor(order[: p.batch], device=dev)
        del order[: p.batch]
        xb, yb = xt[b], yt[b]
        if rng.random() < 0.5:
            xb, yb = xb.flip(-1), yb.flip(-1)
        logits, _ = model(xb)
        loss = torch.nn.functional.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return model


def infer(model, x: np.ndarray, p: Preset) -> tuple[np.ndarray, np.ndarray]:
    """Softmax ``(N, C, S, S)`` float16 and pooled features ``(N, D)`` float32."""
    import torch

    probs, feats = [], []
    with torch.no_grad():
        for i in range(0, len(x), 64):
            xb = torch.from_numpy(x[i : i + 64]).float().div_(255.0).to(p.device)
            logits, f = model(xb)
            probs.append(torch.softmax(logits, 1).half().cpu().numpy())
            feats.append(f.float().cpu().numpy())
    return np.concatenate(probs), np.concatenate(feats)


def miou(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean IoU over part classes (1..18) present in ``y``."""
    cm = np.bincount(
        y.reshape(-1).astype(np.int64) * N_CLASSES + pred.reshape(-1), minlength=N_CLASSES**2
    )
    cm = cm.reshape(N_CLASSES, N_CLASSES)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    present = cm.sum(1)[1:] > 0
    return float((inter[1:][present] / np.maximum(union[1:][present], 1)).mean())


def image_entropy(probs: np.ndarray) -> np.ndarray:
    """Mean per-pixel normalised entropy per photo, through the project's uncertainty code."""
    n, c = probs.shape[:2]
    out = np.empty(n)
    for i in range(n):
        flat = probs[i].reshape(c, -1).T.astype(np.float32)
        out[i] = unc.entropy(flat).mean()
    return out


def committee_score(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    n, c = pa.shape[:2]
    out = np.empty(n)
    for i in range(n):
        a = pa[i].reshape(c, -1).T.astype(np.float64)
        b = pb[i].reshape(c, -1).T.astype(np.float64)
        out[i] = cmt.vote_entropy([a, b]).mean()
    return out


# -- the loop ------------------------------------------------------------------------


def run(p: Preset, out: Path, log=print) -> dict:
    import torch

    torch.set_num_threads(p.threads)
    x, y = load_dataset(p.size)
    n = len(x)
    split_rng = np.random.default_rng(12345)  # the test split is the same for every run
    test = np.sort(split_rng.choice(n, size=p.test_size, replace=False))
    pool = np.setdiff1d(np.arange(n), test)
    n_start = max(1, round(p.start_frac * len(pool)))
    rows = []
    t0 = time.time()
    for seed in range(p.seeds):
        start = np.random.default_rng(1000 + seed).choice(len(pool), size=n_start, replace=False)
        for strat in p.strategies:
            labelled = np.zeros(len(pool), dtype=bool)
            labelled[start] = True
            for r in range(p.rounds + 1):
                idx = pool[labelled]
                model = train(x[idx], y[idx], p, seed=seed * 100 + r)
                pt, _ = infer(model, x[test], p)
                score = miou(pt.argmax(1), y[test])
                rows.append(
                    {
                        "strategy": strat,
                        "seed": seed,
                        "round": r,
                        "labelled": int(labelled.sum()),
                        "miou": score,
                    }
                )
                log(
                    f"[{time.time() - t0:7.1f}s] seed {seed} {strat:<11} round {r} labelled {labelled.sum():>3} mIoU {score:.4f}"
                )
                if r == p.rounds:
                    break
                labelled[select(strat, model, x, pool, labelled, p, seed * 100 + r)] = True
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "curves.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    summary = summarise(rows, p)
    summary["preset"] = asdict(p)
    summary["minutes"] = round((time.time() - t0) / 60, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot(rows, p, out / "learning_curves.png")
    return summary


def select(strat: str, model, x, pool, labelled, p: Preset, seed: int) -> np.ndarray:
    """Pool positions to label next."""
    k = p.budget
    if strat == "random":
        return random_selection(len(pool), k, exclude=labelled, seed=seed)
    probs, feats = infer(model, x[pool], p)
    if strat == "uncertainty":
        return uncertainty_selection(image_entropy(probs), k, exclude=labelled)
    if strat == "kcenter":
        return kcenter_greedy(feats, k, labelled=labelled)
    if strat == "hybrid":
        return hybrid_selection(image_entropy(probs), feats, k, labelled=labelled)
    if strat == "committee":
        idx = pool[labelled]
        other = train(x[idx], y_cache(p)[idx], p, seed=seed + 7919)
        pb, _ = infer(other, x[pool], p)
        return uncertainty_selection(committee_score(probs, pb), k, exclude=labelled)
    raise ValueError(f"unknown strategy {strat!r}")


def y_cache(p: Preset) -> np.ndarray:
    return load_dataset(p.size)[1]


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
    title = f"dsmlr parts, {p.size}px, {p.steps} steps, {p.seeds} seeds (mean ± std)"
    path.write_bytes(learning_curve(series, metric="test mIoU", title=title))


def main() -> None:
    ap = argparse.ArgumentParser(description="Label-efficiency benchmark on car_parts_dsmlr.")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--out", type=Path, default=Path("bench/out/label_efficiency"))
    ap.add_argument("--seeds", type=int)
    ap.add_argument("--rounds", type=int)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--strategies", help="comma list")
    ap.add_argument("--device")
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(
            f"dataset not found at {DATA}; this benchmark needs ../shared/datasets/car_parts_dsmlr."
        )
    p = PRESETS[args.preset]
    changes = {
        k: v
        for k, v in {
            "seeds": args.seeds,
            "rounds": args.rounds,
            "steps": args.steps,
            "device": args.device,
        }.items()
        if v is not None
    }
    if args.strategies:
        changes["strategies"] = tuple(args.strategies.split(","))
    p = replace(p, **changes)
    summary = run(p, args.out)
    print(
        json.dumps(
            {
                s: {
                    k: v
                    for k, v in e.items()
                    if k
                    in (
                        "aubc_mean",
                        "aubc_std",
                        "label_saving_mean",
                        "label_saving_std",
                        "label_saving_on_mean_curves",
                        "rounds_worse_than_random",
                    )
                }
                for s, e in summary["strategies"].items()
            },
            indent=1,
        )
    )
    print(
        f"wrote {args.out}/curves.csv, learning_curves.png, summary.json in {summary['minutes']} min"
    )


if __name__ == "__main__":
    main()
