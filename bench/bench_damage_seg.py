"""damage_seg on car_damage_bilgi: train on the train split for each time budget, measure on
the valid split (which it never trains on).

Printed per budget: damage mask AP50 / AP (pycocotools, over the damage classes present),
the class-agnostic AP50 (every damage class as one: "damage here"), the share of labelled
damage instances a prediction of the right class covers at mask IoU 0.5 and 0.75, mIoU, the
time per photo to pre-annotate (polygon tracing included), and a per-class table (IoU, AP50,
instances found at IoU 0.5 and 0.75).

    .venv/bin/python bench/bench_damage_seg.py --minutes 10 [--set crop=320 --set focus_p=0.9]
    .venv/bin/python bench/bench_damage_seg.py --evaluate CKPT [--variants]
    .venv/bin/python bench/bench_damage_seg.py --minutes 10 --peers yolo_seg,mask_rcnn

``--set key=value`` overrides the ``cpu`` preset (the recipe choices the issue asks to measure);
``--evaluate`` measures a kept checkpoint, and ``--variants`` its post-processing variants
(instance merging, flip averaging, thresholds) on the same weights. Peers train for the same
wall time: yolo_seg for the epochs one timed epoch says fit, mask_rcnn for the steps one timed
step says fit. Needs the real datasets (``../shared/datasets`` or PANELBEATER_SHARED_DATASETS).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from torch_threads import add_threads_option, apply_threads  # noqa: E402

DATASETS = Path(os.environ.get("PANELBEATER_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))

#: post-processing variants ``--variants`` compares on one checkpoint: config overrides
VARIANTS: dict[str, dict[str, Any]] = {
    "as trained": {},
    "no flip averaging": {"flip_tta": False},
    "score >= 0.3": {"score_threshold": 0.3},
    "score >= 0.0": {"score_threshold": 0.0},
    "merge within 8 px": {"merge_px": 8},
    "merge within 16 px": {"merge_px": 16},
    "merge within 32 px": {"merge_px": 32},
    "predict at 640 px": {"size": 640},
}


def parse_sets(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def figures(stage, valid) -> dict[str, Any]:
    """The damage figures of ``stage`` on ``valid`` and its time per photo."""
    t0 = time.perf_counter()
    ev = stage.evaluate(valid)
    seconds = time.perf_counter() - t0
    d = ev["damage"]
    # pre-annotation proper (probabilities, tracing, polygons), without the metrics' work
    n = min(40, len(valid))
    imgs = [valid.load_image(i) for i in range(n)]
    t1 = time.perf_counter()
    for im in imgs:
        stage.predict([im])
    ms = 1000 * (time.perf_counter() - t1) / n
    found = d["found"]
    tax = valid.taxonomy
    per_ap = (d["coco"] or {}).get("per_class_AP50", {})
    table = {}
    for cid, row in found["per_class"].items():
        name = tax.by_id(int(cid)).name
        table[name] = {
            "labelled": row["labelled"],
            "iou": d["per_class_iou"].get(name),
            "AP50": per_ap.get(cid),
            "found@0.5": row["found@0.5"],
            "found@0.75": row["found@0.75"],
        }
    return {
        "AP50": (d["coco"] or {}).get("AP50", 0.0),
        "AP": (d["coco"] or {}).get("AP", 0.0),
        "agnostic_AP50": (d["agnostic_coco"] or {}).get("AP50", 0.0),
        "found@0.5": found["share@0.5"],
        "found@0.75": found["share@0.75"],
        "labelled": found["labelled"],
        "miou": d["miou"],
        "ms_per_photo": round(ms, 1),
        "evaluate_s": round(seconds, 1),
        "per_class": table,
    }


def print_figures(title: str, f: dict[str, Any]) -> None:
    print(
        f"{title:<28} AP50 {f['AP50']:.3f}  AP {f['AP']:.3f}  agnostic AP50 "
        f"{f['agnostic_AP50']:.3f}  found@0.5 {f['found@0.5']:.1%}  found@0.75 "
        f"{f['found@0.75']:.1%}  mIoU {f['miou']:.3f}  {f['ms_per_photo']:.0f} ms/photo",
        flush=True,
    )


def print_table(f: dict[str, Any]) -> None:
    print(f"  {'class':<14}{'n':>6}{'IoU':>7}{'AP50':>7}{'@0.5':>7}{'@0.75':>7}")
    for name, row in f["per_class"].items():
        iou = "-" if row["iou"] is None else f"{row['iou']:.2f}"
        ap = "-" if row["AP50"] is None else f"{row['AP50']:.2f}"
        print(
            f"  {name:<14}{row['labelled']:>6}{iou:>7}{ap:>7}{row['found@0.5']:>7}"
            f"{row['found@0.75']:>7}",
            flush=True,
        )


def run_damage_seg(train, valid, minutes: float, sets: dict[str, Any], out: Path) -> dict:
    from models.damage_seg import DamageSegConfig, DamageSegStage

    cfg = DamageSegConfig.from_preset("cpu", device="cpu", time_budget_s=minutes * 60, **sets)
    stage = DamageSegStage(cfg, train.taxonomy)
    t0 = time.perf_counter()
    res = stage.train(train, out_path=out / f"damage_seg-{minutes:g}.pt")
    train_s = time.perf_counter() - t0
    m = res.metrics
    f = figures(stage, valid)
    f |= {
        "train_wall_s": round(train_s, 1),
        "steps": m["steps"],
        "first_loss": m["first_loss"],
        "last_loss": m["last_loss"],
        "checkpoint": str(res.artifact_path),
    }
    return f


def run_peer(name: str, train, valid, minutes: float, out: Path) -> dict:
    """A peer stage trained for ``minutes`` of wall time, measured the same way."""
    from models.registry import build

    if name == "yolo_seg":
        t0 = time.perf_counter()
        one = build(name, {"preset": "small", "device": "cpu", "epochs": 1}, train.taxonomy)
        one.train(train, out_path=out / f"{name}-1ep.pt")
        epoch_s = time.perf_counter() - t0
        params = {"preset": "small", "epochs": max(1, int(minutes * 60 // epoch_s))}
    else:
        params = {"preset": "small", "time_budget_s": minutes * 60}
    stage = build(name, {"device": "cpu", **params}, train.taxonomy)
    t0 = time.perf_counter()
    stage.train(train, out_path=out / f"{name}-{minutes:g}.pt")
    train_s = time.perf_counter() - t0
    ev = stage.evaluate(valid)["damage"]
    return {
        "AP50": (ev["coco"] or {}).get("AP50", 0.0),
        "AP": (ev["coco"] or {}).get("AP", 0.0),
        "train_wall_s": round(train_s, 1),
        **params,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", default="10", help="comma-separated training budgets")
    ap.add_argument("--train", type=int, default=None, help="train photos (default all 1491)")
    ap.add_argument("--valid", type=int, default=None, help="valid photos (default all 492)")
    ap.add_argument("--set", action="append", default=[], help="config override key=value")
    ap.add_argument("--evaluate", type=Path, default=None, help="measure this checkpoint only")
    ap.add_argument("--variants", action="store_true", help="with --evaluate: post-processing")
    ap.add_argument("--peers", default="", help="comma-separated: yolo_seg, mask_rcnn")
    ap.add_argument("--out", type=Path, default=None, help="JSON of every figure")
    ap.add_argument("--keep", type=Path, default=None, help="folder for the checkpoints")
    add_threads_option(ap)
    args = ap.parse_args()
    apply_threads(args)
    if not (DATASETS / "car_damage_bilgi").is_dir():
        raise SystemExit(
            f"{DATASETS / 'car_damage_bilgi'} does not exist: set PANELBEATER_SHARED_DATASETS"
        )

    from models.datasets import bilgi_training_set

    valid = bilgi_training_set(DATASETS, "valid", limit=args.valid)
    sets = parse_sets(args.set)
    results: dict[str, Any] = {"sets": sets, "valid_photos": len(valid)}
    if args.evaluate:
        from models.registry import load

        names = VARIANTS if args.variants else {"as trained": {}}
        for title, over in names.items():
            stage = load(args.evaluate, device="cpu")
            stage.config = stage.config.with_(**(sets | over))
            f = results[title] = figures(stage, valid)
            print_figures(title, f)
        print_table(results["as trained"])
    else:
        train = bilgi_training_set(DATASETS, "train", limit=args.train)
        results["train_photos"] = len(train)
        out = args.keep or Path(tempfile.mkdtemp(prefix="pb-damage-seg-"))
        out.mkdir(parents=True, exist_ok=True)
        for minutes in [float(m) for m in args.minutes.split(",")]:
            f = results[f"damage_seg {minutes:g} min"] = run_damage_seg(
                train, valid, minutes, sets, out
            )
            print_figures(f"damage_seg {minutes:g} min ({f['steps']} steps)", f)
            print_table(f)
            for peer in filter(None, args.peers.split(",")):
                p = results[f"{peer} {minutes:g} min"] = run_peer(peer, train, valid, minutes, out)
                print(f"{peer} {minutes:g} min: AP50 {p['AP50']:.3f}  AP {p['AP']:.3f}", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
