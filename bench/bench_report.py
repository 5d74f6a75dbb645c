"""Time the PDF damage report of one inspection: 12 real photos and 200 instances (parts,
damage with severities, fake flags with notes, part predictions with P(damaged), and a
new-damage flag per damage), in a fresh SQLite store. Target: <= 5 s.

    .venv/bin/python bench/bench_report.py [--photos 12] [--instances 200] [--runs 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--instances", type=int, default=200)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="Keep the PDF here.")
    args = ap.parse_args()

    from sqlmodel import select

    from core.config import configure
    from db.models import Annotation, DamageFlag, Image, ModelVersion, Prediction
    from db.session import init_db, reset_engine, session_scope
    from services.accounts.projects import get_or_create_project, project_taxonomy
    from services.claims.inspections import (
        BASE_SLOTS,
        assign_photo,
        create_inspection,
        create_vehicle,
    )
    from services.claims.report import render_pdf, report_data
    from services.data_io.imports import import_folder

    tmp = Path(tempfile.mkdtemp(prefix="bench_report_"))
    try:
        configure(data_dir=tmp / "data")
        reset_engine()
        init_db()
        photos = tmp / "photos"
        photos.mkdir()
        src = sorted((DATASETS / "coco_car_damage" / "train").glob("*.jpg"))[: args.photos]
        for p in src:
            shutil.copy(p, photos / p.name)
        rng = np.random.default_rng(0)
        slots = BASE_SLOTS
        with session_scope() as session:
            project = get_or_create_project(session)
            import_folder(session, project, photos)
            images = session.exec(select(Image).order_by(Image.id)).all()
            tax = project_taxonomy(project)
            parts, damages, fakes = tax.group("part"), tax.group("damage"), tax.group("fake")
            v = create_vehicle(session, project, plate="BENCH-1", make="Fiat", notes="a & <b>")
            ins = create_inspection(
                session, project, vehicle_id=v.id, kind="return", claim_number="C-1"
            )
            mv = ModelVersion(
                stage="pipeline", version=1, name="pipeline-v1", path="/x", sha256="0" * 64
            )
            session.add(mv)
            session.flush()
            for k, im in enumerate(images):
                assign_photo(
                    session,
                    project,
                    ins.id,
                    im.id,
                    slots[k % len(slots)] + ("" if k < len(slots) else f"_{k}"),
                )
            for n in range(args.instances):
                im = images[n % len(images)]
                x0, y0 = rng.uniform(0, im.width * 0.7), rng.uniform(0, im.height * 0.7)
                x1, y1 = x0 + rng.uniform(30, im.width * 0.3), y0 + rng.uniform(30, im.height * 0.3)
                ring = [
                    {
                        "exterior": [
                            [x0, y0],
                            [x1, y0],
                            [x1, y1],
                            [(x0 + x1) / 2, y1 + 10],
                            [x0, y1],
                        ],
                        "holes": [],
                    }
                ]
                kind = n % 4
                if kind <= 1:
                    cls = parts[n % len(parts)]
                    session.add(
                        Annotation(
                            image_id=im.id,
                            class_id=cls.id,
                            group="part",
                            geometry=ring,
                            author="ana",
                        )
                    )
                    session.add(
                        Prediction(
                            image_id=im.id,
                            model_version_id=mv.id,
                            class_id=cls.id,
                            group="part",
                            geometry=ring,
                            score=0.9,
                            probs={"damaged": [0.3, 0.7]},
                        )
                    )
                elif kind == 2:
                    a = Annotation(
                        image_id=im.id,
                        class_id=damages[n % len(damages)].id,
                        group="damage",
                        geometry=ring,
                        author="ana",
                        attributes={"severity": "moderate"},
                    )
                    session.add(a)
                    session.flush()
                    session.add(
                        DamageFlag(
                            project_id=project.id,
                            inspection_id=ins.id,
                            image_id=im.id,
                            source="annotation",
                            source_id=a.id,
                            class_id=a.class_id,
                            geometry=ring,
                            state="new_since_pick_up",
                            best_iou=0.0,
                            alignment={
                                "method": "sift",
                                "inliers": 50,
                                "confidence": 0.8,
                                "homography": np.eye(3).tolist(),
                            },
                        )
                    )
                else:
                    session.add(
                        Annotation(
                            image_id=im.id,
                            class_id=fakes[n % len(fakes)].id,
                            group="fake",
                            geometry=ring,
                            author="fay",
                            attributes={"fake": True, "fake_note": "glued <i>"},
                        )
                    )
            session.flush()
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                data = report_data(session, project, ins.id)
                t1 = time.perf_counter()
                pdf = render_pdf(data)
                t2 = time.perf_counter()
                times.append((t2 - t0, t1 - t0, t2 - t1))
        best = min(times)
        print(
            f"report of {len(images)} photos, {args.instances} instances: {best[0]:.2f} s "
            f"(gather {best[1]:.2f} s, render {best[2]:.2f} s; best of {args.runs}), "
            f"{len(pdf) / 1e6:.2f} MB, {len(data.parts)} part rows, {len(data.flags)} flag rows"
        )
        if args.out:
            args.out.write_bytes(pdf)
            print(f"wrote {args.out}")
    finally:
        reset_engine()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
