"""part_seg against yolo_seg, trained for the same wall time on a CPU.

car_parts_dsmlr (400 labelled photos, 512x512) is split into ``--train`` photos to train on
and the last ``--holdout`` photos, which neither model sees while training. For each budget
of ``--minutes`` (e.g. ``5,10,20``):

- part_seg (preset ``--preset``, default ``cpu``: 192 px) trains for that many minutes
  (its cosine follows the clock), then is measured on the held-out photos: mask AP/AP50
  (pycocotools), mIoU and per-class IoU, with test-time flip averaging off and on, the time
  per photo, and how the score threshold trades accepted (right class, mask IoU >= 0.5 with
  an unmatched labelled part) against deleted (the rest) pre-annotations;
- yolo_seg (preset ``--yolo-preset``) trains for about the same wall time: Ultralytics counts
  epochs, not seconds, so one timed epoch (a run of its own, before the first budget) sets
  how many fit in the budget (the figure printed is the whole run's measured time), then is measured
  on the same photos (mask AP/AP50, and mIoU with its instances painted into a label map).

Prints one table and writes every figure to ``--out`` (JSON).

    .venv/bin/python bench/bench_part_seg.py --minutes 5,10,20 [--threads 2] [--no-yolo]
    .venv/bin/python bench/bench_part_seg.py --minutes 0.2 --train 16 --holdout 8   # a smoke run
    .venv/bin/python bench/bench_part_seg.py --evaluate part_seg-10.pt   # inference variants
    .venv/bin/python bench/bench_part_seg.py --evaluate-yolo yolo-5.pt yolo-10.pt yolo-20.pt

``--evaluate`` compares inference variants of one kept checkpoint (``--keep``) on the same
held-out photos: test-time flips, a guided-filter boundary refinement, the small-part second
look at two zooms, a larger working size than the model trained at, and the score threshold.

Needs the real datasets (``DATASETS``; PANELBEATER_SHARED_DATASETS points elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from torch_threads import add_threads_option, apply_threads  # noqa: E402

from models.datasets import DSMLR_LABEL_MAP  # noqa: E402

DSMLR_PARTS = tuple(DSMLR_LABEL_MAP.values())
DATASETS = Path(os.environ.get("PANELBEATER_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))
THRESHOLDS = (0.0, 0.3, 0.5, 0.7, 0.9)


def threshold_tradeoff(stage, data) -> dict[str, dict[str, int]]:
    """Per score threshold: pre-annotations a person would accept (right class and mask IoU
    >= 0.5 with a labelled part not yet matched, best scores first) and would delete."""
    from core.geometry import mask_iou

    old = stage.config.score_threshold
    stage.config = stage.config.with_(score_threshold=0.0)
    matched: list[tuple[float, bool]] = []
    try:
        for i, rec in enumerate(data.records):
            img = data.load_image(i)
            h, w = img.shape[:2]
            pred = stage.predict([img])[0].instances
            gt_masks = [s.to_mask(h, w) for s in rec.instances.shapes]
            used = set()
            for j in np.argsort(-pred.scores):
                pm = pred.shapes[j].to_mask(h, w)
                hit = False
                for g, gm in enumerate(gt_masks):
                    if g in used or int(rec.instances.class_ids[g]) != int(pred.class_ids[j]):
                        continue
                    if mask_iou(pm, gm) >= 0.5:
                        used.add(g)
                        hit = True
                        break
                matched.append((float(pred.scores[j]), hit))
    finally:
        stage.config = stage.config.with_(score_threshold=old)
    return {
        f"{t:.1f}": {
            "accepted": sum(1 for s, ok in matched if s >= t and ok),
            "deleted": sum(1 for s, ok in matched if s >= t and not ok),
        }
        for t in THRESHOLDS
    }


def run_part_seg(train, held, minutes: float, preset: str, out_dir: Path) -> dict[str, Any]:
    from models.part_seg import PartSegConfig, PartSegStage

    cfg = PartSegConfig.from_preset(preset, device="cpu", time_budget_s=minutes * 60)
    stage = PartSegStage(cfg, train.taxonomy)
    t0 = time.perf_counter()
    res = stage.train(train, out_path=out_dir / f"part_seg-{minutes:g}.pt")
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"train_wall_s": round(wall, 1), "train": res.metrics}
    for tta in (False, True):
        stage.config = stage.config.with_(flip_tta=tta)
        t1 = time.perf_counter()
        fig = stage.evaluate(held)["part"]
        out["flip_tta" if tta else "plain"] = {
            "AP50": (fig["coco"] or {}).get("AP50"),
            "AP": (fig["coco"] or {}).get("AP"),
            "miou": fig["miou"],
            "per_class_iou": fig["per_class_iou"],
            "ms_per_photo": round(1000 * (time.perf_counter() - t1) / len(held), 1),
        }
    stage.config = stage.config.with_(flip_tta=False)
    out["threshold_tradeoff"] = threshold_tradeoff(stage, held)
    return out


def yolo_epoch_seconds(train, preset: str, out_dir: Path) -> float:
    """One timed epoch of yolo_seg (its set-up included): how many epochs fit a budget."""
    from models.yolo_seg import YoloSegConfig, YoloSegStage

    t0 = time.perf_counter()
    one = YoloSegStage(YoloSegConfig.from_preset(preset, device="cpu", epochs=1), train.taxonomy)
    one.train(train, out_path=out_dir / "yolo-1ep.pt")
    return time.perf_counter() - t0


#: inference variants ``--evaluate`` compares on one trained checkpoint: config overrides
VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "score >= 0.5": {"score_threshold": 0.5},
    "flip TTA": {"flip_tta": True},
    "guided-filter edges r4": {"refine_radius": 4, "refine_eps": 1e-2},
    "guided-filter edges r8": {"refine_radius": 8, "refine_eps": 1e-2},
    "guided-filter edges r4 eps 1e-3": {"refine_radius": 4, "refine_eps": 1e-3},
    "flip TTA + edges r4": {"flip_tta": True, "refine_radius": 4, "refine_eps": 1e-2},
    "small parts x2": {"small_part_zoom": 2.0},
    "small parts x2 + flip": {"small_part_zoom": 2.0, "flip_tta": True},
    "small parts x1.5": {"small_part_zoom": 1.5},
    "predict at 256 px": {"size": 256},
}
#: the small parts whose IoU the variants are meant to raise: dsmlr's lights and mirrors
SMALL_PARTS = tuple(name for name in DSMLR_PARTS if name.endswith(("light", "mirror")))


def evaluate_variants(checkpoint: Path, held) -> dict[str, Any]:
    """Each of :data:`VARIANTS` on the held-out photos: AP50, mIoU, the small parts' IoU
    and the time per photo."""
    from models.part_seg import PartSegStage

    stage = PartSegStage.load(checkpoint, held.taxonomy, device="cpu")
    # every variant is one change from the bare model, whatever the checkpoint's defaults
    base = stage.config.with_(
        flip_tta=False, score_threshold=0.0, refine_radius=0, small_part_zoom=0.0
    )
    out: dict[str, Any] = {}
    for name, overrides in VARIANTS.items():
        stage.config = base.with_(**overrides)
        t0 = time.perf_counter()
        fig = stage.evaluate(held)["part"]
        iou = fig["per_class_iou"]
        small = [iou[c] for c in SMALL_PARTS if c in iou]
        out[name] = {
            "AP50": (fig["coco"] or {}).get("AP50"),
            "miou": fig["miou"],
            "small_parts_iou": float(np.mean(small)) if small else None,
            "per_class_iou": iou,
            "ms_per_photo": round(1000 * (time.perf_counter() - t0) / len(held), 1),
        }
        o = out[name]
        print(
            f"{name:24s} AP50 {o['AP50']:.3f}  mIoU {o['miou']:.3f}  "
            f"small parts IoU {o['small_parts_iou']:.3f}  {o['ms_per_photo']} ms/photo",
            flush=True,
        )
    stage.config = base
    return out


def semantic_miou(stage, held) -> dict[str, Any]:
    """yolo_seg's mIoU as part_seg measures its own: its part instances painted into a label
    map at the traced size (larger first, as the labels are), against the labels' map."""
    from models.metrics import SemanticIoU
    from models.part_seg import label_map, traced_size

    iou = SemanticIoU(held.taxonomy)
    for i, rec in enumerate(held.records):
        img = held.load_image(i)
        h, w = img.shape[:2]
        th, tw = traced_size(h, w)
        pred = stage.predict([img])[0].instances
        iou.add(
            label_map(rec.instances, held.taxonomy, th, tw, tw / w, th / h),
            label_map(pred, held.taxonomy, th, tw, tw / w, th / h),
        )
    return {"miou": iou.mean(), "per_class_iou": iou.per_class()}


def yolo_figures(stage, held) -> dict[str, Any]:
    """A yolo_seg stage's mask AP/AP50 (and its time per photo) and mIoU on the held-out photos."""
    t0 = time.perf_counter()
    coco = stage.evaluate(held)["part"]["coco"] or {}
    ms = round(1000 * (time.perf_counter() - t0) / len(held), 1)
    return {
        "AP50": coco.get("AP50"),
        "AP": coco.get("AP"),
        "ms_per_photo": ms,
        **semantic_miou(stage, held),
    }


def evaluate_yolo(checkpoints: list[Path], held) -> dict[str, Any]:
    """Mask AP/AP50 and mIoU of kept yolo_seg checkpoints on the held-out photos."""
    from models.registry import load

    out = {}
    for path in checkpoints:
        out[path.name] = yolo_figures(load(path, device="cpu"), held)
        print(
            f"{path.name:<14} AP50 {out[path.name]['AP50']:.3f}  mIoU {out[path.name]['miou']:.3f}",
            flush=True,
        )
    return out


def run_yolo(
    train, held, minutes: float, preset: str, out_dir: Path, epoch_s: float
) -> dict[str, Any]:
    from models.yolo_seg import YoloSegConfig, YoloSegStage

    epochs = max(1, int(minutes * 60 // max(epoch_s, 1e-6)))
    t0 = time.perf_counter()
    cfg = YoloSegConfig.from_preset(preset, device="cpu", epochs=epochs)
    stage = YoloSegStage(cfg, train.taxonomy)
    stage.train(train, out_path=out_dir / f"yolo-{minutes:g}.pt")
    wall = time.perf_counter() - t0
    return {
        "epochs": epochs,
        "epoch_s": round(epoch_s, 1),
        "train_wall_s": round(wall, 1),
        **yolo_figures(stage, held),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", default="5,10,20", help="comma-separated training budgets")
    ap.add_argument("--train", type=int, default=300, help="photos to train on (the first ones)")
    ap.add_argument("--holdout", type=int, default=100, help="held-out photos (the last ones)")
    ap.add_argument("--preset", default="cpu", help="part_seg preset")
    ap.add_argument("--yolo-preset", default="small")
    ap.add_argument("--no-yolo", action="store_true", help="part_seg only")
    ap.add_argument("--out", type=Path, default=None, help="JSON of every figure")
    ap.add_argument(
        "--evaluate",
        type=Path,
        default=None,
        help="no training: compare the inference variants on this part_seg checkpoint",
    )
    ap.add_argument(
        "--evaluate-yolo",
        type=Path,
        nargs="+",
        default=None,
        help="no training: mask AP50 and mIoU of these kept yolo_seg checkpoints",
    )
    ap.add_argument(
        "--keep", type=Path, default=None, help="folder for the checkpoints (default: a temp one)"
    )
    add_threads_option(ap)
    args = ap.parse_args()
    apply_threads(args)
    if not DATASETS.is_dir():
        raise SystemExit(
            f"{DATASETS} does not exist: this benchmark needs the real datasets "
            "(set PANELBEATER_SHARED_DATASETS)"
        )

    from models.data import TrainingSet
    from models.datasets import dsmlr_training_set

    data = dsmlr_training_set(DATASETS)
    if args.train + args.holdout > len(data):
        raise SystemExit(f"--train + --holdout exceed the {len(data)} dsmlr photos")
    train = TrainingSet(data.records[: args.train], data.taxonomy)
    held = TrainingSet(data.records[len(data) - args.holdout :], data.taxonomy)
    if args.evaluate_yolo:
        report = {"yolo_seg": evaluate_yolo(args.evaluate_yolo, held)}
        if args.out:
            args.out.write_text(json.dumps(report, indent=2))
        return
    if args.evaluate:
        report = {
            "checkpoint": str(args.evaluate),
            "variants": evaluate_variants(args.evaluate, held),
        }
        if args.out:
            args.out.write_text(json.dumps(report, indent=2))
        return
    out_dir = args.keep or Path(tempfile.mkdtemp(prefix="pb-part-seg-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"checkpoints in {out_dir}", flush=True)
    report: dict[str, Any] = {
        "train_photos": len(train),
        "holdout_photos": len(held),
        "threads": args.threads,
        "runs": {},
    }
    epoch_s = None
    for m in [float(x) for x in args.minutes.split(",") if x.strip()]:
        run: dict[str, Any] = {"part_seg": run_part_seg(train, held, m, args.preset, out_dir)}
        if not args.no_yolo:
            if epoch_s is None:
                epoch_s = yolo_epoch_seconds(train, args.yolo_preset, out_dir)
            run["yolo_seg"] = run_yolo(train, held, m, args.yolo_preset, out_dir, epoch_s)
        report["runs"][f"{m:g}"] = run
        ps = run["part_seg"]
        line = (
            f"{m:g} min: part_seg AP50 {ps['plain']['AP50']} mIoU {ps['plain']['miou']:.3f} "
            f"(flip TTA: AP50 {ps['flip_tta']['AP50']} mIoU {ps['flip_tta']['miou']:.3f}), "
            f"{ps['plain']['ms_per_photo']} ms/photo, {ps['train']['steps']} steps"
        )
        if "yolo_seg" in run:
            y = run["yolo_seg"]
            line += (
                f" | yolo_seg AP50 {y['AP50']} mIoU {y['miou']:.3f} "
                f"({y['epochs']} epochs, {y['train_wall_s']} s)"
            )
        print(line, flush=True)
        worst = sorted(ps["plain"]["per_class_iou"].items(), key=lambda kv: kv[1])[:5]
        print("  weakest classes:", ", ".join(f"{k} {v:.2f}" for k, v in worst))
        print("  threshold -> accepted/deleted:", ps["threshold_tradeoff"])
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
        print(f"figures written to {args.out}")


if __name__ == "__main__":
    main()
