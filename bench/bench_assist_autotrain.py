"""assist_net's self-training on a CPU, as a project sees it.

Imports ``--photos`` labelled car_parts_dsmlr photos into a fresh store (they arrive
``labelled``), lets the project draw its held-out split as it would, then runs the same
call the ``assist_autotrain`` job makes (``services.training.assist_training.train_and_compare``,
the ``assist_autotrain_config`` setting's preset). Printed: the training time, and the
held-out box-prompt mean IoU of the new assist_net against GrabCut (the weight-free
incumbent it has to beat) on the parts of the held-out photos, which it never trains on.

    .venv/bin/python bench/bench_assist_autotrain.py [--photos 400] [--epochs N] [--threads 2]

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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from torch_threads import add_threads_option, apply_threads  # noqa: E402

DATASETS = Path(os.environ.get("PANELBEATER_SHARED_DATASETS", ROOT.parent / "shared" / "datasets"))


def subset(annotations: Path, n: int, out: Path) -> Path:
    data = json.loads(annotations.read_text())
    annotated = {a["image_id"] for a in data["annotations"]}
    keep = [im for im in data["images"] if im["id"] in annotated][:n]
    ids = {im["id"] for im in keep}
    data["images"] = keep
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    out.write_text(json.dumps(data))
    return out


def import_dsmlr(session, project, photos: int, tmp: Path):
    """The first ``photos`` labelled dsmlr photos into ``project``, as ``panelbeater import``
    brings them (they arrive ``labelled``); the import's report."""
    from models.datasets import DSMLR_LABEL_MAP
    from services.data_io.imports import import_coco

    root = DATASETS / "car_parts_dsmlr" / "trainingset"
    return import_coco(
        session,
        project,
        subset(root / "annotations.json", photos, tmp / "sub.json"),
        images_dir=root / "JPEGImages",
        label_map={**DSMLR_LABEL_MAP, "_background_": "hood"},  # an empty category
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=None, help="unset: the preset's")
    ap.add_argument("--config", default=None, help="unset: the autotrain setting's preset")
    add_threads_option(ap)
    args = ap.parse_args()
    apply_threads(args)
    if not DATASETS.is_dir():
        raise SystemExit(
            f"{DATASETS} does not exist: this benchmark needs the real datasets "
            "(set PANELBEATER_SHARED_DATASETS)"
        )

    from core.config import configure, env_name
    from db.session import init_db, reset_engine, session_scope
    from services.accounts.projects import get_or_create_project
    from services.training.assist_training import labelled_polygons, train_and_compare

    tmp = Path(tempfile.mkdtemp(prefix="pb-autotrain-"))
    os.environ[env_name("data_dir")] = str(tmp / "data")
    os.environ[env_name("assist_autotrain")] = "0"  # the bench calls the job's work itself
    configure()
    reset_engine()
    init_db()
    t0 = time.perf_counter()
    with session_scope() as session:
        project = get_or_create_project(session)
        report = import_dsmlr(session, project, args.photos, tmp)
        polygons = labelled_polygons(session, project)
    print(
        f"imported {report.images_added} labelled photos, {polygons} polygons, in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    t0 = time.perf_counter()
    with session_scope() as session:
        project = get_or_create_project(session)
        out = train_and_compare(session, project, config=args.config, epochs=args.epochs)
    total = time.perf_counter() - t0
    print(
        f"assist_net autotrain: training {out['train_seconds']:.0f} s, whole job {total:.0f} s "
        f"(with both held-out measurements)\n"
        f"held-out box prompts on {out['parts']} parts: assist_net mean IoU "
        f"{out['mean_iou']:.3f} vs {out['incumbent']} {out['incumbent_mean_iou']:.3f} "
        f"(gain {out['mean_iou'] - out['incumbent_mean_iou']:+.3f}); "
        f"{'promoted' if out['promoted'] else 'not kept'}",
        flush=True,
    )


if __name__ == "__main__":
    main()
