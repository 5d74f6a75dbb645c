"""part_seg's target, as a team meets it: a fresh CPU-only store imports ``--photos``
labelled car_parts_dsmlr photos, and nobody asks for anything after that.

The script starts the job worker exactly as ``panelbeater serve`` does (its own process, the
default settings: part_seg auto-training on, preset ``cpu``, ``part_seg_time_budget_s``
seconds of training), imports the photos as ``panelbeater import`` does, then only watches
the store.
Printed: when the auto-training job was queued, started and finished, when a part_seg version
was promoted (minutes after the import began), its held-out mask AP50 and mIoU on the project's
held-out photos (which it never trained on), and how many photos the same job then
pre-annotated with it.

    .venv/bin/python bench/bench_part_seg_target.py [--photos 400] [--limit-min 30]

The target: promoted within 15 minutes, held-out mask AP50 >= 0.5. Needs the real datasets
(``DATASETS``; PANELBEATER_SHARED_DATASETS points elsewhere).
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
from bench_assist_autotrain import DATASETS, import_dsmlr  # noqa: E402

TARGET_MIN = 15.0
TARGET_AP50 = 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=400)
    ap.add_argument("--limit-min", type=float, default=30.0, help="give up after this long")
    args = ap.parse_args()
    if not DATASETS.is_dir():
        raise SystemExit(
            f"{DATASETS} does not exist: this benchmark needs the real datasets "
            "(set PANELBEATER_SHARED_DATASETS)"
        )

    tmp = Path(tempfile.mkdtemp(prefix="pb-part-seg-target-"))
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # a CPU-only install, whatever this machine has

    from sqlmodel import func, select

    from core.config import configure, env_name
    from db.models import Image, Job
    from db.session import init_db, reset_engine, session_scope
    from jobs.worker import start_worker_process
    from services.accounts.projects import get_or_create_project
    from services.training.part_seg_training import JOB_KIND, autotrain_summary
    from services.training.registry import HOLDOUT_SPLIT, current

    os.environ[env_name("data_dir")] = str(tmp / "data")
    settings = configure()
    reset_engine()
    init_db()
    worker = start_worker_process(settings, log_file=tmp / "worker.log")
    print(f"store and worker log in {tmp}", flush=True)
    t0 = time.perf_counter()
    seen: dict[str, float] = {}

    def mark(event: str) -> None:
        if event not in seen:
            seen[event] = (time.perf_counter() - t0) / 60
            print(f"{seen[event]:6.2f} min  {event}", flush=True)

    try:
        with session_scope() as session:
            project = get_or_create_project(session)
            report = import_dsmlr(session, project, args.photos, tmp)
        mark(f"imported {report.images_added} labelled photos ({report.instances_added} polygons)")
        promoted, held = None, 0
        while (time.perf_counter() - t0) / 60 < args.limit_min:
            with session_scope() as s:
                project = get_or_create_project(s)
                jobs = s.exec(select(Job).where(Job.project_id == project.id)).all()
                for job in jobs:
                    mark(f"job {job.id} {job.kind} {job.status.value}")
                train = next((j for j in jobs if j.kind == JOB_KIND), None)
                mv = current(s, "part_seg")
                if mv is not None and promoted is None:
                    promoted = mv.metrics["holdout"]["part"]
                    held = s.exec(
                        select(func.count(Image.id)).where(
                            Image.project_id == project.id, Image.split == HOLDOUT_SPLIT
                        )
                    ).one()
                    mark(f"{mv.name} promoted (trained on {mv.metrics['train_photos']} photos)")
                if train is not None and train.status.value == "completed":
                    summary = autotrain_summary(s, project)
                    summary += f"; {train.result.get('preannotated', 0)} photos pre-annotated"
                    break
                if train is not None and train.status.value in ("failed", "cancelled"):
                    summary = f"the auto-training job {train.status.value}: {train.error}"
                    break
            time.sleep(2)
        else:
            summary = f"gave up after {args.limit_min} minutes"
    finally:
        worker.terminate()
        worker.wait(30)
    print(summary)
    key = next((k for k in seen if " promoted (" in k), None)
    if promoted is None or key is None:
        print("TARGET NOT MET: no part_seg was promoted")
        return
    minutes, ap50 = seen[key], (promoted["coco"] or {}).get("AP50") or 0.0
    print(
        f"promoted {minutes:.1f} min after the import began (target <= {TARGET_MIN:g}); on the "
        f"{held} held-out photos: mask AP50 {ap50:.3f} (target >= {TARGET_AP50}), "
        f"mIoU {promoted['miou']:.3f}"
    )
    met = minutes <= TARGET_MIN and ap50 >= TARGET_AP50
    print("TARGET MET" if met else "TARGET NOT MET")


if __name__ == "__main__":
    main()
