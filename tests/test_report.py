"""The PDF damage report: it renders (pdftoppm), its part table is text (pdftotext), and
notes users wrote come out literally."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlmodel import select

NOTE = "<b>painted on</b> & glued"


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is missing: apt-get install -y poppler-utils (.ci/run installs it)")
    return path


def _pdf_words(pdf: Path) -> str:
    """The PDF's text (pdftotext, in layout), its white space folded to single spaces."""
    text = subprocess.run(
        [_require("pdftotext"), "-layout", str(pdf), "-"],
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    return " ".join(text.split())


def _inspection_with_labels(db_session, project, datasets_dir: Path, tmp_path: Path) -> int:
    from db.models import Annotation, DamageFlag, Image, ModelVersion, Prediction
    from services.accounts.projects import project_taxonomy
    from services.claims.inspections import assign_photo, create_inspection, create_vehicle
    from services.data_io.imports import import_folder

    photos = tmp_path / "ph"
    photos.mkdir()
    for name in ("10.jpg", "13.jpg"):
        shutil.copy(datasets_dir / "coco_car_damage" / "train" / name, photos / name)
    import_folder(db_session, project, photos)
    images = db_session.exec(select(Image).order_by(Image.id)).all()
    tax = project_taxonomy(project)
    hood = tax.by_name("hood")
    door = tax.group("part")[0]
    dent = tax.group("damage")[0]
    fake = tax.group("fake")[0]
    v = create_vehicle(
        db_session, project, plate="PB-77", make="Fiat", vehicle_model="Panda", notes=NOTE
    )
    ret = create_inspection(
        db_session,
        project,
        vehicle_id=v.id,
        kind="return",
        claim_number="CLM-0042",
        inspected_on="2026-11-05",
    )
    mv = ModelVersion(stage="pipeline", version=3, name="pipeline-v3", path="/x", sha256="0" * 64)
    db_session.add(mv)
    db_session.flush()

    def ring(x0, y0, x1, y1):
        return [{"exterior": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "holes": []}]

    labels = (  # class, group, box, author, attributes
        (hood, "part", (50, 50, 300, 250), "ana", {}),
        (door, "part", (320, 60, 500, 300), "ana", {}),
        (dent, "damage", (100, 100, 180, 160), "ana", {"severity": "severe", "part_id": hood.id}),
        (fake, "fake", (360, 100, 420, 150), "fay", {"fake": True, "fake_note": NOTE}),
    )
    for slot, im in zip(("front", "left"), images, strict=True):
        assign_photo(db_session, project, ret.id, im.id, slot)
        for cls, group, box, author, attributes in labels:
            db_session.add(
                Annotation(
                    image_id=im.id,
                    class_id=cls.id,
                    group=group,
                    geometry=ring(*box),
                    author=author,
                    attributes=dict(attributes),
                )
            )
        db_session.add(
            Prediction(
                image_id=im.id,
                model_version_id=mv.id,
                class_id=hood.id,
                group="part",
                geometry=ring(52, 48, 302, 252),
                score=0.9,
                probs={"damaged": [0.13, 0.87]},
            )
        )
    db_session.flush()
    dmg = db_session.exec(select(Annotation).where(Annotation.group == "damage")).first()
    db_session.add(
        DamageFlag(
            project_id=project.id,
            inspection_id=ret.id,
            image_id=dmg.image_id,
            source="annotation",
            source_id=dmg.id,
            class_id=dent.id,
            geometry=dmg.geometry,
            state="new_since_pick_up",
            best_iou=0.0,
            alignment={
                "method": "sift",
                "inliers": 80,
                "confidence": 0.9,
                "homography": [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
            },
            decision="confirmed",
            note=NOTE,
            decided_by="fay",
        )
    )
    db_session.flush()
    return ret.id


def test_report_renders_with_text_tables_and_literal_notes(
    db_session, project, datasets_dir, tmp_path
) -> None:
    from services.claims.report import build_report

    pdftoppm = _require("pdftoppm")
    _require("pdftotext")
    iid = _inspection_with_labels(db_session, project, datasets_dir, tmp_path)
    out = tmp_path / "r.pdf"
    pdf = build_report(db_session, project, iid, out)
    assert pdf.startswith(b"%PDF") and out.read_bytes() == pdf

    subprocess.run(
        [pdftoppm, "-r", "40", "-png", "-f", "1", "-l", "1", str(out), str(tmp_path / "page")],
        check=True,
        timeout=60,
    )
    page = next(tmp_path.glob("page*.png"))
    arr = np.asarray(PILImage.open(page).convert("L"))
    assert arr.shape[0] > 300 and arr.std() > 5  # a rendered page, not a blank one

    flat = _pdf_words(out)
    # the part table: part, its damage, severity, P(damaged), the model version
    assert "hood" in flat and "severe" in flat and "0.87" in flat and "pipeline-v3" in flat
    assert flat.count("pipeline-v3") == 2  # one row per photo's hood
    assert "PB-77" in flat and "CLM-0042" in flat and "new_since_pick_up" in flat
    # user text comes out as written, not interpreted as markup
    assert flat.count("<b>painted on</b> & glued") >= 3, flat  # vehicle note, fake, flag
    assert "Page 1 of" in flat


def _jpeg(seed: int) -> bytes:
    import io

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_damage_per_part_uses_predicted_parts_when_only_damage_is_labelled(
    db_session, project, tmp_path
) -> None:
    """A return photo with two labelled damage polygons and no part labels: its parts come
    from the part model's pending predictions, in "Damage per part" and in the PDF."""
    from db.models import Annotation, ModelVersion, Prediction
    from services.accounts.projects import project_taxonomy
    from services.claims.inspections import create_inspection, create_vehicle, upload_into_slot
    from services.claims.report import build_report, report_data

    _require("pdftotext")
    tax = project_taxonomy(project)
    hood, door = tax.by_name("hood"), tax.group("part")[0]
    dent, scratch = tax.group("damage")[0], tax.group("damage")[1]
    v = create_vehicle(db_session, project, plate="PB-12")
    ret = create_inspection(db_session, project, vehicle_id=v.id, kind="return")
    out = upload_into_slot(db_session, project, ret.id, "front", [("front.jpg", _jpeg(1))])
    image_id = out.placed[0][2]
    mv = ModelVersion(stage="yolo_seg", version=2, name="yolo_seg-v2", path="/x", sha256="0" * 64)
    db_session.add(mv)
    db_session.flush()

    def ring(x0, y0, x1, y1):
        return [{"exterior": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "holes": []}]

    for cls, box, severity in (
        (dent, (20, 20, 80, 80), "severe"),
        (scratch, (200, 40, 260, 90), "minor"),
    ):
        db_session.add(
            Annotation(
                image_id=image_id,
                class_id=cls.id,
                group="damage",
                geometry=ring(*box),
                author="ana",
                attributes={"severity": severity},
            )
        )
    for cls, box, p in ((hood, (10, 10, 100, 100), 0.91), (door, (190, 30, 300, 120), 0.66)):
        db_session.add(
            Prediction(
                image_id=image_id,
                model_version_id=mv.id,
                class_id=cls.id,
                group="part",
                geometry=ring(*box),
                score=0.9,
                probs={"damaged": [1 - p, p]},
            )
        )
    db_session.flush()

    parts = report_data(db_session, project, ret.id).parts
    assert sorted(parts) == sorted(
        [
            ("front", "hood", dent.name, "severe", "0.91", "yolo_seg-v2"),
            ("front", door.name, scratch.name, "minor", "0.66", "yolo_seg-v2"),
        ]
    )
    pdf = tmp_path / "r.pdf"
    build_report(db_session, project, ret.id, pdf)
    flat = _pdf_words(pdf)
    assert "No parts are labelled" not in flat
    assert "hood" in flat and "0.91" in flat and "0.66" in flat and "yolo_seg-v2" in flat


def test_predicted_damage_counts_on_the_part_its_mask_sits_on(db_session, project, tmp_path):
    """Two damage_seg pre-annotations, each half over the hood's box and half over the door's,
    but each saying which part its mask sits on (``extra["part"]``): the part table (and the
    PDF, read by pdftotext) counts each on that part only, answering "which parts are
    damaged" from the masks."""
    import re

    from db.models import ModelVersion, Prediction
    from services.accounts.projects import project_taxonomy
    from services.claims.inspections import create_inspection, create_vehicle, upload_into_slot
    from services.claims.report import build_report, report_data

    _require("pdftotext")
    tax = project_taxonomy(project)
    hood, door = tax.by_name("hood"), tax.by_name("front_left_door")
    dent, scratch = tax.by_name("dent"), tax.by_name("scratch")
    v = create_vehicle(db_session, project, plate="PB-13")
    ret = create_inspection(db_session, project, vehicle_id=v.id, kind="return")
    out = upload_into_slot(db_session, project, ret.id, "front", [("front.jpg", _jpeg(2))])
    image_id = out.placed[0][2]
    parts_mv = ModelVersion(
        stage="part_seg", version=1, name="part_seg-v1", path="/x", sha256="0" * 64
    )
    damage_mv = ModelVersion(
        stage="damage_seg", version=1, name="damage_seg-v1", path="/y", sha256="1" * 64
    )
    db_session.add_all([parts_mv, damage_mv])
    db_session.flush()

    def ring(x0, y0, x1, y1):
        return [{"exterior": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "holes": []}]

    for cls, box in ((hood, (10, 10, 150, 150)), (door, (150, 10, 300, 150))):
        db_session.add(
            Prediction(
                image_id=image_id,
                model_version_id=parts_mv.id,
                class_id=cls.id,
                group="part",
                geometry=ring(*box),
                score=0.9,
            )
        )
    for cls, box, on in ((dent, (100, 40, 200, 90), door), (scratch, (100, 100, 200, 140), hood)):
        db_session.add(
            Prediction(
                image_id=image_id,
                model_version_id=damage_mv.id,
                class_id=cls.id,
                group="damage",
                geometry=ring(*box),
                score=0.8,
                extra={"part": {"class_id": on.id, "name": on.name, "share": 0.6}},
            )
        )
    db_session.flush()

    rows = {
        (slot, part): classes
        for slot, part, classes, *_ in report_data(db_session, project, ret.id).parts
    }
    assert rows == {("front", "hood"): "scratch", ("front", "front_left_door"): "dent"}
    pdf = tmp_path / "r.pdf"
    build_report(db_session, project, ret.id, pdf)
    flat = _pdf_words(pdf)
    assert re.search(r"front hood scratch\b", flat), flat
    assert re.search(r"front front_left_door dent\b", flat), flat
