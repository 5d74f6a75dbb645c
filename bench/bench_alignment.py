"""Alignment figures per method: SIFT, ORB, patch-ssl and auto, on synthetic walk-around
pairs from real car photos, and on the real duplicate pairs of the shared datasets.

Synthetic pairs: a real photo (shrunk to --size px on its long side) warped by a random
homography within what a second walk-around produces (rotation +-15 degrees, scale 0.8-1.25,
each corner then moved by up to 6 % of the photo for perspective, a shift up to 5 %), with
photometric change (brightness +-30, contrast 0.7-1.3, Gaussian blur sigma 0-1.5, JPEG
quality 50-90). Per method: mean and median corner error of the alignments that held, the
success rate at 3, 5 and 10 px (a failed alignment counts as a miss), and seconds per pair.

Real pairs: the byte-identical photos listed in the datasets' README.md (their true
homography is the identity); each is aligned after the same photometric change, without a
warp. The patch-ssl encoder is trained first on the benchmark's own photos (self-supervised,
no labels: what ``panelbeater inspection train-aligner`` does on a project's photos).

    .venv/bin/python bench/bench_alignment.py [--photos 12] [--size 640] [--ssl-steps 150]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage

from core.alignment import corner_error
from exports.image_files import list_image_files, load_image_rgb
from models.alignment import patch_ssl
from services.claims.alignment import align

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
#: (a, b) byte-identical pairs named in the datasets' README
REAL_PAIRS = [
    ("car_damage_v0/customImages/train/image58.jpg", "car_damage_v0/customImages/val/image80.jpg"),
    ("car_damage_v0/customImages/train/image15.jpg", "car_damage_v0/customImages/val/image65.jpg"),
    ("car_damage_v0/customImages/train/image63.jpg", "car_damage_v0/customImages/val/image78.jpg"),
    ("coco_car_damage/test/66.jpg", "coco_car_damage/train/17.jpg"),
    ("coco_car_damage/train/25.jpg", "coco_car_damage/train/48.jpg"),
]


def random_homography(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    a = np.deg2rad(rng.uniform(-15, 15))
    s = rng.uniform(0.8, 1.25)
    c = np.array([w / 2, h / 2])
    r = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    shift = rng.uniform(-0.05, 0.05, 2) * (w, h)
    corners = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    moved = (corners - c) @ r.T + c + shift + rng.uniform(-0.06, 0.06, (4, 2)) * (w, h)
    return cv2.getPerspectiveTransform(corners, np.float32(moved)).astype(np.float64)


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = img.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-30, 30)
    out = np.clip(out, 0, 255).astype(np.uint8)
    sigma = rng.uniform(0, 1.5)
    if sigma > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    buf = io.BytesIO()
    PILImage.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(50, 91)))
    return np.asarray(PILImage.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def summarise(rows: list[tuple[float | None, float]]) -> dict[str, float]:
    errs = np.array([e for e, _ in rows if e is not None])
    n = len(rows)
    return {
        "pairs": n,
        "held": len(errs) / n,
        "mean_err": float(errs.mean()) if len(errs) else float("nan"),
        "median_err": float(np.median(errs)) if len(errs) else float("nan"),
        **{f"ok@{t}": float((errs <= t).sum() / n) for t in (3, 5, 10)},
        "s_per_pair": float(np.mean([t for _, t in rows])),
    }


def table(title: str, results: dict[str, list[tuple[float | None, float]]]) -> None:
    print(f"\n{title}")
    print(
        f"{'method':<10} {'pairs':>5} {'held':>6} {'mean px':>8} {'median':>7} "
        f"{'@3px':>6} {'@5px':>6} {'@10px':>6} {'s/pair':>7}"
    )
    for m, rows in results.items():
        s = summarise(rows)
        print(
            f"{m:<10} {s['pairs']:>5} {s['held']:>6.0%} {s['mean_err']:>8.2f} "
            f"{s['median_err']:>7.2f} {s['ok@3']:>6.0%} {s['ok@5']:>6.0%} {s['ok@10']:>6.0%} "
            f"{s['s_per_pair']:>7.2f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--size", type=int, default=640)
    ap.add_argument("--ssl-steps", type=int, default=150)
    ap.add_argument("--methods", default="sift,orb,patch-ssl,auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    files = list_image_files(DATASETS / "coco_car_damage") + list_image_files(
        DATASETS / "car_damage_v0"
    )
    chosen = [files[i] for i in sorted(rng.choice(len(files), args.photos, replace=False))]
    photos = [load_image_rgb(p, max_side=args.size) for p in chosen]
    methods = args.methods.split(",")
    encoder = None
    if "patch-ssl" in methods or "auto" in methods:
        cfg = patch_ssl.PatchSSLConfig.preset("cpu", steps=args.ssl_steps)
        encoder = patch_ssl.train(photos, cfg)
        print(
            f"patch-ssl (cpu preset) trained on {len(photos)} photos, {cfg.steps} steps in "
            f"{encoder.seconds:.1f} s; NT-Xent {np.mean(encoder.losses[:10]):.3f} -> "
            f"{np.mean(encoder.losses[-10:]):.3f} (means of the first and last 10 steps)"
        )
    synthetic: dict[str, list] = {m: [] for m in methods}
    for img in photos:
        h, w = img.shape[:2]
        ht = random_homography(rng, w, h)
        post = photometric(cv2.warpPerspective(img, ht, (w, h)), rng)
        for m in methods:
            t0 = time.perf_counter()
            a = align(img, post, m, encoder=encoder if m in ("patch-ssl", "auto") else None)
            dt = time.perf_counter() - t0
            synthetic[m].append((corner_error(a.homography, ht, w, h) if a.ok else None, dt))
    table(
        f"Synthetic walk-around pairs ({len(photos)} real photos at {args.size} px, seed "
        f"{args.seed})",
        synthetic,
    )
    real: dict[str, list] = {m: [] for m in methods}
    for a_name, b_name in REAL_PAIRS:
        a_img = load_image_rgb(DATASETS / a_name, max_side=args.size)
        b_img = photometric(load_image_rgb(DATASETS / b_name, max_side=args.size), rng)
        h, w = a_img.shape[:2]
        for m in methods:
            t0 = time.perf_counter()
            r = align(a_img, b_img, m, encoder=encoder if m in ("patch-ssl", "auto") else None)
            dt = time.perf_counter() - t0
            real[m].append((corner_error(r.homography, np.eye(3), w, h) if r.ok else None, dt))
    table(
        f"Real byte-identical pairs from the datasets' README ({len(REAL_PAIRS)}), "
        "with photometric change",
        real,
    )


if __name__ == "__main__":
    main()
