"""Store-level import/export figures on a synthetic project.

A project of 10,000 images and 100,000 polygons, through the real service layer and a
real SQLite store: ``export coco``, ``export yolo`` (labels only), and importing the COCO
export back into a fresh store (images hashed and decoded). Each phase runs in its own
process so its peak memory is its own. Also times the real car_parts_dsmlr import.

    .venv/bin/python bench/bench_store.py [--images 10000] [--polygons 100000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DSMLR = (
    Path(__file__).resolve().parents[2] / "shared" / "datasets" / "car_parts_dsmlr" / "trainingset"
)
DSMLR_MAP = Path(__file__).resolve().parents[1] / "tests" / "data" / "dsmlr_map.json"


def _open(data_dir: Path) -> None:
    from core.config import configure
    from db.session import init_db, reset_engine

    configure(data_dir=data_dir)
    reset_engine()
    init_db()


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_seed(work: Path, n_images: int, n_polygons: int, q) -> None:
    """Write tiny image files and a COCO file for them, then import it (the seed)."""
    import numpy as np
    from PIL import Image as PILImage

    from core.taxonomy import default_taxonomy
    from db.session import session_scope
    from exports import coco
    from exports.synthetic import random_records
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_coco

    tax = default_taxonomy()
    records = random_records(tax, n_images, n_polygons, width=160, height=120, seed=0)
    images = work / "images"
    images.mkdir()
    base = np.tile(np.linspace(0, 255, 160, dtype=np.uint8)[None, :, None], (120, 1, 3))
    for i, rec in enumerate(records):
        px = base.copy()
        px[0, :4, 0] = np.frombuffer(i.to_bytes(4, "little"), dtype=np.uint8)  # unique bytes
        rec.file_name = rec.file_name.replace(".jpg", ".png")
        PILImage.fromarray(px).save(images / rec.file_name)
    (work / "seed.json").write_text(json.dumps(coco.build(records, tax)))
    _open(work / "store")
    t = time.perf_counter()
    with session_scope() as s:
        report = import_coco(s, get_or_create_project(s), work / "seed.json", images_dir=images)
    q.put(
        {
            "phase": "seed import",
            "seconds": time.perf_counter() - t,
            "peak_mb": _peak_mb(),
            "detail": report.summary(),
        }
    )


def phase_export(work: Path, kind: str, q) -> None:
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io import exports

    _open(work / "store")
    t = time.perf_counter()
    with session_scope() as s:
        project = get_or_create_project(s)
        if kind == "coco":
            counts = exports.export_coco(s, project, work / "export.json")
        else:
            counts = exports.export_yolo(s, project, work / "yolo", copy_images=False)
    q.put(
        {
            "phase": f"export {kind}",
            "seconds": time.perf_counter() - t,
            "peak_mb": _peak_mb(),
            "detail": counts,
        }
    )


def phase_reimport(work: Path, q) -> None:
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_coco

    _open(work / "store2")
    t = time.perf_counter()
    with session_scope() as s:
        report = import_coco(
            s, get_or_create_project(s), work / "export.json", images_dir=work / "images"
        )
    q.put(
        {
            "phase": "import coco export back",
            "seconds": time.perf_counter() - t,
            "peak_mb": _peak_mb(),
            "detail": report.summary(),
        }
    )


def phase_dsmlr(work: Path, q) -> None:
    from core.records import load_label_map
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_coco

    _open(work / "store3")
    t = time.perf_counter()
    with session_scope() as s:
        report = import_coco(
            s,
            get_or_create_project(s),
            DSMLR / "annotations.json",
            images_dir=DSMLR / "JPEGImages",
            label_map=load_label_map(DSMLR_MAP),
        )
    q.put(
        {
            "phase": "import car_parts_dsmlr",
            "seconds": time.perf_counter() - t,
            "peak_mb": _peak_mb(),
            "detail": report.summary(),
        }
    )


def run(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    result = q.get()
    p.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--polygons", type=int, default=100_000)
    args = ap.parse_args()
    targets = {
        "export coco": 5,
        "export yolo": 5,
        "import coco export back": 15,
        "import car_parts_dsmlr": 10,
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        results = [run(phase_seed, work, args.images, args.polygons)]
        results.append(run(phase_export, work, "coco"))
        results.append(run(phase_export, work, "yolo"))
        results.append(run(phase_reimport, work))
        if DSMLR.is_dir():
            results.append(run(phase_dsmlr, work))
    print(
        f"\nsynthetic project: {args.images} images, {args.polygons} polygons (SQLite, this machine)"
    )
    print(f"{'phase':28s} {'seconds':>8s} {'target':>7s} {'peak MB':>8s}")
    for r in results:
        target = targets.get(r["phase"])
        print(
            f"{r['phase']:28s} {r['seconds']:8.2f} {f'≤ {target}s' if target else '':>7s} {r['peak_mb']:8.0f}   {r['detail']}"
        )


if __name__ == "__main__":
    main()
