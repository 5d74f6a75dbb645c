"""Warm-started rounds against scratch, on car_parts_dsmlr with yolo_seg.

Round 0 trains from scratch on the first ``--photos`` photos; then two rounds each add
``--photos`` more. In every round, scratch trains a new model for ``--epochs`` epochs, while
warm fine-tunes the previous round's warm model one epoch at a time (``warm_start``) and is
evaluated after each epoch on a fixed held-out set, up to the same number of epochs (equal
wall time). Printed per round: scratch's and warm's held-out part mask AP50 at equal epochs,
their wall times, and the time warm took to reach scratch's final AP50 (``-`` when it did not).

    .venv/bin/python bench/bench_warm_start.py [--preset small] [--photos 100] [--epochs 6]
        [--heldout 50] [--threads 2]

Needs the real datasets (``DATASETS``; PANELBEATER_SHARED_DATASETS points elsewhere).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("YOLO_OFFLINE", "1")
from torch_threads import add_threads_option, apply_threads  # noqa: E402

DATASETS = Path(os.environ.get("PANELBEATER_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))


EVAL_CONF = 0.001


def ap50(stage, heldout) -> float:
    """Held-out part mask AP50 with detections kept down to ``EVAL_CONF`` (COCO-style AP,
    as Ultralytics' own validation does): at the serving threshold (0.25) an early
    model has no detections at all, and every figure reads 0.000."""
    serving = stage.config.conf
    stage.config.conf = EVAL_CONF
    try:
        part = stage.evaluate(heldout)["part"]["coco"] or {}
    finally:
        stage.config.conf = serving
    return float(part.get("AP50", 0.0))


def train(stage_cls, cfg, data, out: Path, parent: Path | None):
    stage = stage_cls(cfg, data.taxonomy)
    if parent is not None:
        stage.warm_start(parent)
    t0 = time.perf_counter()
    stage.train(data, cfg, out_path=out)
    return stage, time.perf_counter() - t0


def main() -> None:
    global EVAL_CONF
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--photos", type=int, default=100, help="photos added per round")
    ap.add_argument("--epochs", type=int, default=6, help="scratch's epochs per round")
    ap.add_argument("--heldout", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=2, help="rounds after round 0")
    ap.add_argument("--eval-conf", type=float, default=EVAL_CONF, help="lowest kept score")
    add_threads_option(ap)
    args = ap.parse_args()
    apply_threads(args)
    EVAL_CONF = args.eval_conf

    from models.data import TrainingSet
    from models.datasets import dsmlr_training_set
    from models.yolo_seg import YoloSegConfig, YoloSegStage

    if not DATASETS.is_dir():
        raise SystemExit(
            f"{DATASETS} does not exist: this benchmark needs the real datasets "
            "(set PANELBEATER_SHARED_DATASETS)"
        )
    full = dsmlr_training_set(DATASETS)
    heldout = TrainingSet(full.records[-args.heldout :], full.taxonomy)
    pool = full.records[: -args.heldout]

    def labelled(n_rounds: int) -> TrainingSet:
        return TrainingSet(pool[: args.photos * (n_rounds + 1)], full.taxonomy)

    one = YoloSegConfig.from_preset(args.preset, device="cpu", epochs=1)
    full_cfg = YoloSegConfig.from_preset(args.preset, device="cpu", epochs=args.epochs)
    tmp = Path(tempfile.mkdtemp(prefix="pb-warm-"))
    print(
        f"yolo_seg {args.preset}, {args.photos} photos per round, scratch {args.epochs} epochs, "
        f"{len(heldout)} held-out photos, AP50 at scores >= {EVAL_CONF}",
        flush=True,
    )
    base, t0 = train(YoloSegStage, full_cfg, labelled(0), tmp / "r0.pt", None)
    print(f"round 0: {len(labelled(0).records)} photos, AP50 {ap50(base, heldout):.3f}, {t0:.0f} s")
    warm_path = tmp / "r0.pt"
    rows = []
    for r in range(1, args.rounds + 1):
        data = labelled(r)
        scratch, t_scratch = train(YoloSegStage, full_cfg, data, tmp / f"s{r}.pt", None)
        ap_scratch = ap50(scratch, heldout)
        t_warm, reached, ap_warm = 0.0, None, 0.0
        parent = warm_path
        for e in range(1, args.epochs + 1):
            out = tmp / f"w{r}-{e}.pt"
            stage, dt = train(YoloSegStage, one, data, out, parent)
            t_warm += dt
            ap_warm = ap50(stage, heldout)
            if reached is None and ap_warm >= ap_scratch:
                reached = t_warm
            parent = out
            if e == max(1, args.epochs // 2):
                half = (ap_warm, t_warm)
        warm_path = parent
        rows.append((r, len(data.records), ap_scratch, t_scratch, ap_warm, t_warm, half, reached))
        print(
            f"round {r}: {len(data.records)} photos | scratch AP50 {ap_scratch:.3f} in "
            f"{t_scratch:.0f} s | warm AP50 {ap_warm:.3f} in {t_warm:.0f} s (equal epochs), "
            f"{half[0]:.3f} in {half[1]:.0f} s (half, the round default) | warm reached "
            f"scratch's AP50 after {'-' if reached is None else f'{reached:.0f} s'}",
            flush=True,
        )
    print("\nround  photos  scratch AP50  scratch s  warm AP50  warm s  warm@half  half s  reach s")
    for r, n, aps, ts, apw, tw, half, reached in rows:
        print(
            f"{r:5d} {n:7d} {aps:13.3f} {ts:10.0f} {apw:10.3f} {tw:7.0f} {half[0]:10.3f} "
            f"{half[1]:7.0f} {'-' if reached is None else f'{reached:7.0f}'}"
        )


if __name__ == "__main__":
    main()
