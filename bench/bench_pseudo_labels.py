"""A semi-supervised round of part_seg against a plain one, on a CPU.

car_parts_dsmlr (400 labelled photos, 512x512) is split as ``bench_part_seg.py`` splits it:
the last ``--holdout`` photos are measured on and never trained on. Of the first photos,
``--labelled`` keep their labels and the next ``--pool`` are an unlabelled pool (their labels
are dropped).

1. Round 1: part_seg (preset ``--preset``) trains on the labelled photos for ``--minutes1``
   and pre-annotates the pool.
2. Round 2, twice, each continuing round 1's model for ``--minutes2`` with the same seed:
   off, on the labelled photos only; on, also on the pool's confident predictions, chosen
   by the rule a round uses (``services.training.pseudo_labels.confident_instances`` with
   ``class_thresholds`` at ``--min-score``).
3. Each model's held-out mask AP50 / AP and mIoU (``PartSegStage.evaluate``).

Prints one JSON report (``--out`` writes it too).

    .venv/bin/python bench/bench_pseudo_labels.py --minutes1 2.5 --minutes2 2.5 --threads 2
    .venv/bin/python bench/bench_pseudo_labels.py --round1 run/round1.pt --min-score 0.5
    .venv/bin/python bench/bench_pseudo_labels.py --minutes1 0.1 --minutes2 0.1 \\
        --labelled 8 --pool 8 --holdout 8 --preset tiny   # a smoke run

Needs the real datasets (``DATASETS``; PANELBEATER_SHARED_DATASETS points elsewhere).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from bench_part_seg import DATASETS  # noqa: E402
from torch_threads import add_threads_option, apply_threads  # noqa: E402


def figures(stage, held) -> dict[str, Any]:
    fig = stage.evaluate(held)["part"]
    coco = fig["coco"] or {}
    return {"AP50": coco.get("AP50"), "AP": coco.get("AP"), "miou": fig["miou"]}


def train(cfg, data, out: Path, warm_from: Path | None) -> tuple[Any, float]:
    from models.part_seg import PartSegStage

    stage = PartSegStage(cfg, data.taxonomy)
    if warm_from is not None:
        stage.warm_start(warm_from)
    t0 = time.perf_counter()
    stage.train(data, out_path=out)
    return stage, round(time.perf_counter() - t0, 1)


def pseudo_labelled(stage, pool, min_score: float, scores: list[float]) -> list:
    """The pool's records with the model's confident predictions as their instances (those
    with none left out), marked as a round marks them; every prediction's score is added to
    ``scores``."""
    from services.training.pseudo_labels import class_thresholds, confident_instances

    thresholds = class_thresholds(pool.taxonomy, min_score)
    out = []
    for i, rec in enumerate(pool.records):
        res = stage.predict([pool.load_image(i)])[0]
        if res.instances.scores is not None:
            scores.extend(float(x) for x in res.instances.scores)
        inst = confident_instances(res.instances, thresholds, default=min_score)
        if len(inst):
            out.append(dataclasses.replace(rec, instances=inst, meta={**rec.meta, "pseudo": True}))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--labelled", type=int, default=60, help="labelled photos (the first)")
    ap.add_argument("--pool", type=int, default=200, help="unlabelled pool photos (the next)")
    ap.add_argument("--holdout", type=int, default=100, help="held-out photos (the last)")
    ap.add_argument("--preset", default="cpu", help="part_seg preset")
    ap.add_argument("--minutes1", type=float, default=2.5, help="round 1's training budget")
    ap.add_argument("--minutes2", type=float, default=2.5, help="round 2's budget, each arm")
    ap.add_argument("--min-score", type=float, default=0.9, help="pseudo-label threshold")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--round1",
        type=Path,
        default=None,
        help="no round 1: continue this kept part_seg checkpoint (a run's round1.pt, --keep)",
    )
    ap.add_argument("--keep", type=Path, default=None, help="folder for the checkpoints")
    ap.add_argument("--out", type=Path, default=None, help="JSON of every figure")
    add_threads_option(ap)
    args = ap.parse_args()
    apply_threads(args)
    if not DATASETS.is_dir():
        raise SystemExit(f"{DATASETS} does not exist: this benchmark needs the real datasets")

    from core.instances import Instances
    from models.data import TrainingSet
    from models.datasets import dsmlr_training_set
    from models.part_seg import PartSegConfig

    data = dsmlr_training_set(DATASETS)
    if args.labelled + args.pool + args.holdout > len(data):
        raise SystemExit(f"--labelled + --pool + --holdout exceed the {len(data)} dsmlr photos")
    tax = data.taxonomy
    labelled = TrainingSet(data.records[: args.labelled], tax)
    pool_recs = data.records[args.labelled : args.labelled + args.pool]
    pool = TrainingSet(
        [dataclasses.replace(r, instances=Instances.empty()) for r in pool_recs], tax
    )
    held = TrainingSet(data.records[len(data) - args.holdout :], tax)
    work = args.keep or Path(tempfile.mkdtemp(prefix="pb-pseudo-"))
    work.mkdir(parents=True, exist_ok=True)

    def cfg(minutes: float) -> PartSegConfig:
        return PartSegConfig.from_preset(
            args.preset, device="cpu", time_budget_s=minutes * 60, seed=args.seed
        )

    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    if args.round1 is None:
        round1 = work / "round1.pt"
        first, secs = train(cfg(args.minutes1), labelled, round1, None)
        report["round1"] = {"train_s": secs, **figures(first, held)}
    else:
        from models.part_seg import PartSegStage

        round1 = args.round1
        first = PartSegStage.load(round1, tax, device="cpu")
        report["round1"] = {"checkpoint": str(round1)}
    t0 = time.perf_counter()
    scores: list[float] = []
    pseudo = pseudo_labelled(first, pool, args.min_score, scores)
    report["pseudo"] = {
        "photos": len(pseudo),
        "instances": sum(len(r.instances) for r in pseudo),
        "predict_s": round(time.perf_counter() - t0, 1),
        # how many of the pool's predictions each threshold would keep
        "predictions_at": {f"{t:g}": sum(x >= t for x in scores) for t in (0.5, 0.7, 0.8, 0.9)},
    }
    print(json.dumps(report), flush=True)
    arms = {"off": labelled, "on": TrainingSet(labelled.records + pseudo, tax)}
    for name, train_data in arms.items():
        stage, secs = train(cfg(args.minutes2), train_data, work / f"{name}.pt", round1)
        report[f"round2_{name}"] = {
            "photos": len(train_data),
            "train_s": secs,
            **figures(stage, held),
        }
        print(json.dumps(report[f"round2_{name}"]), flush=True)
    on, off = report["round2_on"]["AP50"], report["round2_off"]["AP50"]
    if on is not None and off is not None:
        report["ap50_gain"] = round(on - off, 4)
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
