"""int8 vs fp32 ResNet34 part classifier on real part crops (CPU, noisy).

    .venv/bin/python bench/bench_int8.py [--epochs 6] [--crop 224] [--model FILE]

Trains the part classifier (``base`` preset settings, ``--epochs`` epochs, from scratch: no
ImageNet weights can be downloaded here) on the part crops of
``coco_car_damage/train/COCO_merged_annos.json`` (a part is damaged when damage covers 5% of
it), or loads a trained ``part_classifier`` file with ``--model``. Then it classifies the
held-out ``val`` crops both ways and prints accuracy, argmax agreement, the difference in
P(damaged), the cosine between embeddings, and the time for 8 crops at one thread. The
int8 copy uses the activation ranges stored at training time, as pre-annotation does.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from torch_threads import add_threads_option, apply_threads  # noqa: E402


def per_8_crops(stage, crops: list[np.ndarray], reps: int = 5) -> float:
    """Best-of-``reps`` seconds to classify 8 crops (inference copy already built)."""
    batch = (crops * 8)[:8]
    stage.classify_crops(batch)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        stage.classify_crops(batch)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--crop", type=int, default=224)
    ap.add_argument("--model", help="a trained part_classifier file instead of training here")
    add_threads_option(ap)
    args = ap.parse_args()
    import torch
    from bench_albert_priors import load_split

    from models.part_classifier import PartClassifierConfig, PartClassifierStage

    apply_threads(args)
    train, val = load_split("train"), load_split("val")
    if args.model:
        int8 = PartClassifierStage.load(args.model, device="cpu")
    else:
        cfg = PartClassifierConfig.from_preset(
            "base", device="cpu", epochs=args.epochs, crop_size=args.crop, batch_size=16
        )
        int8 = PartClassifierStage(cfg)
        t0 = time.perf_counter()
        int8.train(train, cfg, out_path=Path("/tmp/panelbeater-bench-part-classifier.pt"))
        print(
            f"trained {args.epochs} epochs on {len(train)} photos in {time.perf_counter() - t0:.0f} s"
        )
    fp32 = PartClassifierStage(
        PartClassifierConfig.from_dict({**int8.config.to_dict(), "int8": False, "device": "cpu"})
    )
    fp32.net.load_state_dict(int8.net.state_dict())
    crops, labels = int8.training_crops(val)
    pq, fq = int8.classify_crops_with_embeddings(crops)
    pf, ff = fp32.classify_crops_with_embeddings(crops)
    dp = np.abs(pq[:, 1] - pf[:, 1])
    cos = (fq * ff).sum(1) / np.linalg.norm(fq, axis=1) / np.linalg.norm(ff, axis=1)
    print(
        f"val: {len(crops)} part crops, {labels.mean():.0%} damaged; "
        f"P(damaged) fp32 spans {pf[:, 1].min():.3f}-{pf[:, 1].max():.3f}"
    )
    print(
        f"accuracy fp32 {(pf.argmax(1) == labels).mean():.3f}, int8 {(pq.argmax(1) == labels).mean():.3f}; "
        f"argmax agreement {(pq.argmax(1) == pf.argmax(1)).mean():.3f}; "
        f"|dP(damaged)| mean {dp.mean():.4f} max {dp.max():.4f}; embedding cosine min {cos.min():.4f}"
    )
    torch.set_num_threads(1)
    t8, t32 = per_8_crops(int8, crops), per_8_crops(fp32, crops)
    print(
        f"8 crops of {int8.config.crop_size} px at 1 thread: int8 {t8 * 1000:.0f} ms, "
        f"fp32 {t32 * 1000:.0f} ms ({t32 / t8:.1f}x)"
    )


if __name__ == "__main__":
    main()
