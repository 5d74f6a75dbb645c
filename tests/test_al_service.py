"""Selection through the store: scores stored, the queue reordered, held-out never picked."""

from __future__ import annotations

import numpy as np
import pytest
from browser_helpers import image_rows
from sqlmodel import select

from db.models import Image, ImagePrediction, ImageScore, ImageStatus, ModelVersion, Prediction

BOX = [{"exterior": [[1, 1], [30, 1], [30, 30], [1, 30]], "holes": []}]


def make_images(session, project, n=8):
    ims = image_rows(project.id, n, path="/nowhere/{i}.jpg")
    session.add_all(ims)
    session.flush()
    return ims


def add_version(session, stage="yolo_seg", promoted=True):
    mv = ModelVersion(
        stage=stage, version=1, name=f"{stage}-v1", path="/x", sha256="0", promoted=promoted
    )
    session.add(mv)
    session.flush()
    return mv


def predict(session, mv, image, probs, emb=None, class_id=40):
    session.add(
        Prediction(
            image_id=image.id,
            model_version_id=mv.id,
            class_id=class_id,
            group="part",
            geometry=BOX,
            score=float(max(probs)),
            probs={"part": list(map(float, probs))},
        )
    )
    session.add(
        ImagePrediction(
            image_id=image.id,
            model_version_id=mv.id,
            embedding=None if emb is None else np.asarray(emb, np.float16).tobytes(),
        )
    )


def test_uncertainty_select_orders_queue_and_stores_scores(db_session, project):
    from services.labelling.images import queue_ids
    from services.training.selection import select as al_select

    ims = make_images(db_session, project)
    mv = add_version(db_session)
    conf = [0.95, 0.9, 0.6, 0.4, 0.99, 0.8, 0.35, 0.97]
    for im, c in zip(ims, conf, strict=True):
        rest = (1 - c) / 3
        predict(db_session, mv, im, [c, rest, rest, rest])
    ims[6].status = ImageStatus.labelled  # most uncertain, but already labelled
    ims[3].split = "test"  # next most uncertain, but held out
    db_session.add_all([ims[6], ims[3]])
    db_session.flush()
    before = queue_ids(db_session, project.id)
    picks = al_select(db_session, project, strategy="uncertainty", k=2)
    assert [p[0] for p in picks] == [ims[2].id, ims[5].id]
    assert picks[0][1] > picks[1][1]
    after = queue_ids(db_session, project.id)
    assert after != before and after[:2] == [ims[2].id, ims[5].id]
    # the other open images follow by uncertainty: 1 (0.9) before 0 (0.95) before 4 (0.99)
    assert after.index(ims[1].id) < after.index(ims[0].id) < after.index(ims[4].id)
    rows = db_session.exec(select(ImageScore).order_by(ImageScore.rank)).all()
    assert [(r.image_id, r.rank, r.model_version_id) for r in rows] == [
        (ims[2].id, 0, mv.id),
        (ims[5].id, 1, mv.id),
    ]


def test_hybrid_and_kcenter_use_stage_embeddings(db_session, project):
    from services.training.selection import select as al_select

    ims = make_images(db_session, project, 10)
    mv = add_version(db_session)
    for i, im in enumerate(ims):
        # images 0-7 sit together; 8 and 9 far away; 9 more uncertain than 8
        emb = [0.0, 0.0] if i < 8 else [50.0, 50.0 + i]
        c = 0.9 if i < 8 else (0.7 if i == 8 else 0.5)
        predict(db_session, mv, im, [c, 1 - c], emb=emb)
    ims[0].status = ImageStatus.labelled
    db_session.add(ims[0])
    db_session.flush()
    info: dict = {}
    kc = al_select(db_session, project, strategy="kcenter", k=1, info=info)
    assert kc[0][0] in (ims[8].id, ims[9].id)
    assert info["has_embeddings"] and "yolo_seg-v1" in info["notes"][0]
    hy = al_select(db_session, project, strategy="hybrid", k=2)
    assert {p[0] for p in hy} == {ims[8].id, ims[9].id}


def test_random_works_without_models_and_uncertainty_explains(db_session, project):
    from services.errors import Invalid
    from services.training.selection import select as al_select

    ims = make_images(db_session, project, 5)
    ims[1].split = "test"
    db_session.add(ims[1])
    picks = al_select(db_session, project, strategy="random", k=10, seed=1)
    assert len(picks) == 4 and ims[1].id not in {p[0] for p in picks}
    with pytest.raises(Invalid, match="run pre-annotation first"):
        al_select(db_session, project, strategy="uncertainty", k=2)
    with pytest.raises(Invalid, match="choose one of"):
        al_select(db_session, project, strategy="vibes", k=2)


def test_cli_select_prints_json_and_explains_errors(tmp_path):
    import json

    from typer.testing import CliRunner

    from cli.main import app
    from core.config import reset_settings
    from db.session import reset_engine

    data = tmp_path / "data"
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image as PILImage

    for i in range(4):
        PILImage.new("RGB", (32, 24), (60 * i, 20, 200 - 40 * i)).save(photos / f"p{i}.jpg")
    runner = CliRunner()
    try:
        r = runner.invoke(app, ["--data-dir", str(data), "import", "folder", str(photos)])
        assert r.exit_code == 0, r.output
        r = runner.invoke(
            app,
            ["--data-dir", str(data), "select", "--strategy", "cold_start", "--k", "2", "--json"],
        )
        assert r.exit_code == 0, r.output
        out = json.loads(r.output)
        assert len(out["selected"]) == 2 and out["pool"]["has_descriptors"]
        r = runner.invoke(
            app, ["--data-dir", str(data), "select", "--strategy", "uncertainty", "--k", "2"]
        )
        assert r.exit_code == 1 and "run pre-annotation first" in r.output
    finally:
        reset_engine()
        reset_settings()


def test_committee_reads_p_damaged_from_the_probs_head(db_session, project):
    """ALBERT's damage against the pipeline's P(damaged) per part, both read as Instances:
    the photo where they disagree most leads."""
    from services.training.selection import select as al_select

    ims = make_images(db_session, project, 3)
    albert, pipe = add_version(db_session, "albert"), add_version(db_session, "pipeline")
    damage = [{"exterior": [[5, 5], [20, 5], [20, 20], [5, 20]], "holes": []}]
    for im, p_damaged in zip(ims, (0.2, 0.85, 0.5), strict=True):
        # ALBERT sees damage (0.9) on every photo's part; the pipeline rates the part
        db_session.add(
            Prediction(image_id=im.id, model_version_id=albert.id, class_id=1, group="damage",
                       geometry=damage, score=0.9, probs={"damage": [0.9, 0.1]})
        )  # fmt: skip
        db_session.add(
            Prediction(image_id=im.id, model_version_id=pipe.id, class_id=40, group="part",
                       geometry=BOX, score=0.99, probs={"damaged": [1 - p_damaged, p_damaged]})
        )  # fmt: skip
        for mv in (albert, pipe):
            db_session.add(ImagePrediction(image_id=im.id, model_version_id=mv.id))
    db_session.flush()
    info: dict = {}
    picks = al_select(db_session, project, strategy="committee", k=3, info=info)
    assert info["has_committee"]
    assert [p[0] for p in picks] == [ims[0].id, ims[2].id, ims[1].id]
    assert [p[1] for p in picks] == pytest.approx([0.7, 0.4, 0.05], abs=1e-5)


def test_two_workers_describing_the_same_photos_at_once(store, monkeypatch):
    """Descriptors are written under unique temporary names: two workers computing the same
    photos at the same moment both succeed and leave whole files, no temporary ones."""
    import threading

    from services.training import descriptors

    ims = [Image(sha256=f"{i:064x}", path="/x", file_name="x", width=4, height=4, project_id=1)
           for i in range(6)]  # fmt: skip
    barrier = threading.Barrier(2)

    def compute(image):
        barrier.wait(timeout=10)  # both writers reach the same photo's write together
        return np.full(8, int(image.sha256, 16), dtype=np.float32)

    monkeypatch.setattr(descriptors, "compute_descriptor", compute)
    errors: list[BaseException] = []

    def work():
        try:
            for _ in range(3):  # a collision is a race: give it several chances
                descriptors.ensure_descriptors(ims, force=True)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    got = descriptors.load_descriptors(ims)
    np.testing.assert_array_equal(got[:, 0], np.arange(6))
    folder = descriptors.descriptor_path(ims[0].sha256).parent.parent
    assert not [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".npy"]
    assert sorted(p.name for p in folder.rglob("*.npy")) == sorted(f"{im.sha256}.npy" for im in ims)
