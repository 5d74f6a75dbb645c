"""Per-class bars: a class whose held-out AP50 is below its stage's bar is not pre-annotated,
even when the model as a whole clears it, and the dashboard names those classes."""

from __future__ import annotations

import numpy as np
import pytest
from sqlmodel import select

from core.geometry import Shape
from core.instances import Instances
from core.taxonomy import default_taxonomy
from db.models import Prediction

TAX = default_taxonomy()
A, B, C = (c.id for c in TAX.group("part")[:3])


def _square(x0: int, y0: int, side: int = 6) -> Shape:
    x1, y1 = x0 + side, y0 + side
    return Shape.from_json([{"exterior": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]], "holes": []}])


def _inst(items: list[tuple[int, Shape, float]]) -> Instances:
    return Instances(
        shapes=[s for _, s, _ in items],
        class_ids=np.array([c for c, _, _ in items], dtype=np.int64),
        scores=np.array([p for _, _, p in items], dtype=np.float32),
    )


def test_per_class_ap50_on_a_hand_made_case():
    from models.metrics import coco_mask_ap

    gt = _inst([(A, _square(2, 2), 1.0), (B, _square(20, 2), 1.0)])
    gt2 = _inst([(C, _square(2, 20), 1.0), (C, _square(20, 20), 1.0)])
    pred = _inst([(A, _square(2, 2), 0.9), (B, _square(30, 30), 0.8)])  # A right, B elsewhere
    pred2 = _inst([(C, _square(2, 20), 0.7)])  # one of the two C found
    figures = coco_mask_ap([(pred, gt, 40, 40), (pred2, gt2, 40, 40)], TAX, "part")
    per_class = figures["per_class_AP50"]
    assert set(per_class) == {str(A), str(B), str(C)}  # classes without ground truth left out
    assert per_class[str(A)] == pytest.approx(1.0)
    assert per_class[str(B)] == pytest.approx(0.0)
    # precision 1 up to recall 0.5, then nothing: 51 of COCO's 101 recall points
    assert per_class[str(C)] == pytest.approx(51 / 101)
    # the overall AP50 is their mean, as COCOeval averages classes
    assert figures["AP50"] == pytest.approx(np.mean([1.0, 0.0, 51 / 101]))
    # no detections at all: every class with ground truth at 0
    empty = coco_mask_ap([(Instances.empty(), gt, 40, 40)], TAX, "part")
    assert empty["per_class_AP50"] == {str(A): 0.0, str(B): 0.0}


def _register(session, tmp_path, metrics):
    from models.registry import build
    from services.training.registry import register_version

    # random weights, every pixel a candidate: it draws many part classes on any photo
    stage = build(
        "part_seg",
        {"preset": "tiny", "device": "cpu", "score_threshold": 0.0, "min_area_frac": 0.0},
        taxonomy=TAX,
    )
    path = stage.save(tmp_path / "part_seg-random.pt")
    return register_version(
        session,
        stage="part_seg",
        artifact_path=path,
        metrics=metrics,
        promote=True,
    )


def _photo(project, session, tmp_path):
    from browser_helpers import synthetic_photo

    from services.data_io.imports import import_folder

    for seed in range(3):
        synthetic_photo(tmp_path / "photos" / f"car{seed}.jpg", width=320, height=240, seed=seed)
    import_folder(session, project, tmp_path / "photos")


def test_predict_stage_leaves_out_the_classes_below_the_bar(db_session, project, tmp_path):
    from services.dashboard.summary import model_state
    from services.training.bar import withheld_classes
    from services.training.model_runs import predict_stage

    _photo(project, db_session, tmp_path)
    # measured first with no per-class figures: everything it draws is stored
    whole = {"holdout": {"part": {"coco": {"AP": 0.3, "AP50": 0.5}}}}
    mv = _register(db_session, tmp_path, whole)
    assert predict_stage(db_session, project, "part_seg", device="cpu") == 3
    drawn = {
        p.class_id
        for p in db_session.exec(
            select(Prediction).where(Prediction.model_version_id == mv.id)
        ).all()
    }
    assert drawn, "the random model draws at least one part class"
    low = min(drawn)
    kept = drawn - {low}

    # measured per class: ``low`` below the bar, a class it never drew above it
    per_class = {str(c): 0.6 for c in kept | {A}} | {str(low): 0.05}
    figures = {"holdout": {"part": {"coco": {"AP": 0.3, "AP50": 0.5, "per_class_AP50": per_class}}}}
    mv2 = _register(db_session, tmp_path, figures)
    assert withheld_classes(mv2) == {low: 0.05}
    assert predict_stage(db_session, project, "part_seg", device="cpu") == 3
    stored = {
        p.class_id
        for p in db_session.exec(
            select(Prediction).where(Prediction.model_version_id == mv2.id)
        ).all()
    }
    # the same weights draw the same classes; the one below the bar is not stored
    assert stored == kept and low not in stored

    sentences = model_state(db_session, project)
    (said,) = [s for s in sentences if "does not pre-annotate" in s]
    assert said == (
        f"{mv2.name} does not pre-annotate 1 class below the bar (AP50 < 0.20 on held-out "
        f"photos): {TAX.by_id(low).display_name} (0.05)"
    )


def test_a_version_below_the_bar_as_a_whole_withholds_no_class_by_itself(db_session, tmp_path):
    from services.training.bar import withheld_classes
    from services.training.registry import register_version

    path = tmp_path / "m.pt"
    path.write_bytes(b"a model file")
    low = {"holdout": {"part": {"coco": {"AP50": 0.1, "per_class_AP50": {str(A): 0.05}}}}}
    mv = register_version(db_session, stage="part_seg", artifact_path=path, metrics=low)
    assert withheld_classes(mv) == {}  # it pre-annotates nothing unless a lead confirms it
