"""Assistance quality and latency.

    .venv/bin/python bench/bench_assist.py [--assist-net PATH] [--parts 200] [--train-epochs 4] [--no-sam]

Quality: mean/median IoU against the labelled polygon, box prompt = the part's box, on
car_parts_dsmlr photos 301-400, which the learned net never trains on (it trains on photos
1-300 when no --assist-net file is given), for GrabCut, assist_net and box-as-mask.
Latency: p50 of predict (decoder + mask-to-polygon) with the per-image work already done,
on a 1024-px photo; and the time of SAM ViT-B's image embedding (random weights, timing only).
Timings on a shared 2-core CPU are noisy.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.base import TrainingSet, limit_cpu_threads  # noqa: E402
from models.data import dsmlr_training_set  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"


def quality(name: str, fn, held: TrainingSet, parts: int) -> dict:
    from models.assist.learned import evaluate_box_prompts

    t0 = time.perf_counter()
    r = evaluate_box_prompts(fn, held, parts)
    r["seconds"] = time.perf_counter() - t0
    print(
        f"{name:12s} parts {r['parts']}  mean IoU {r['mean_iou']:.3f}  median {r['median_iou']:.3f}  "
        f"(box-as-mask {r['box_mean_iou']:.3f})  {r['seconds']:.1f}s",
        flush=True,
    )
    return r


def full_mask(assistant, img, box):
    assistant.set_image(img)
    res = assistant.predict(box=box)
    h, w = img.shape[:2]
    return res.shape.to_mask(h, w) if res.shape is not None else np.zeros((h, w), bool)


def latency(assistant, img, boxes, repeats: int = 3) -> float:
    assistant.set_image(img)
    times = []
    for _ in range(repeats):
        for b in boxes:
            t0 = time.perf_counter()
            assistant.predict(box=b)
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--assist-net", type=Path)
    ap.add_argument("--parts", type=int, default=200)
    ap.add_argument("--train-epochs", type=int, default=4)
    ap.add_argument("--no-sam", action="store_true")
    args = ap.parse_args()
    limit_cpu_threads(2)
    from models.assist.grabcut import BoxAssistant, GrabCutAssistant
    from models.assist.learned import AssistNetConfig, AssistNetStage, LearnedAssistant

    ts = dsmlr_training_set(DATASETS)
    train, held = (
        TrainingSet(ts.records[:300], ts.taxonomy),
        TrainingSet(ts.records[300:], ts.taxonomy),
    )
    if args.assist_net:
        stage = AssistNetStage.load(args.assist_net, device="cpu")
    else:
        stage = AssistNetStage(
            AssistNetConfig.from_preset("small", epochs=args.train_epochs, device="cpu")
        )
        r = stage.train(
            train,
            progress=lambda e, n, i: print(f"train epoch {e}/{n} loss {i['loss']:.3f}", flush=True),
            out_path=Path(tempfile.gettempdir()) / "assist_net-bench.pt",
        )
        print(f"trained on {r.metrics['train_parts']} parts in {r.metrics['train_seconds']:.0f}s")
    learned = LearnedAssistant(stage)
    grab = GrabCutAssistant()
    print(f"== quality on dsmlr photos 301-400 (held out), up to {args.parts} parts ==")
    q_learned = quality("assist_net", lambda im, b: full_mask(learned, im, b), held, args.parts)
    q_grab = quality("grabcut", lambda im, b: full_mask(grab, im, b), held, args.parts)
    best = max(q_learned["mean_iou"], q_grab["mean_iou"])
    print(
        f"best weight-free minus box-as-mask: {best - q_learned['box_mean_iou']:+.3f} (need >= +0.10)"
    )

    import cv2

    print("== latency on a 1024-px photo (embedding cached / per-image work done) ==")
    rec = held.records[0]
    img = cv2.resize(held.load_image(0), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    boxes = [s.bbox * 2 for s in rec.instances.shapes][:10]
    for name, a in (("assist_net", learned), ("grabcut", grab), ("box", BoxAssistant())):
        print(f"{name:12s} p50 {latency(a, img, boxes):.1f} ms per prompt", flush=True)
    if not args.no_sam:
        from models.assist.sam import SamAssistant

        t0 = time.perf_counter()
        sam = SamAssistant("vit_b", None, cache_dir=None, device="cpu")
        print(f"sam_vit_b    build (random weights) {time.perf_counter() - t0:.1f}s")
        t0 = time.perf_counter()
        sam.set_image(img)
        print(f"sam_vit_b    image embedding {time.perf_counter() - t0:.1f}s")
        print(
            f"sam_vit_b    p50 {latency(sam, img, boxes, repeats=2):.1f} ms per prompt (decoder + polygon)"
        )


if __name__ == "__main__":
    main()
