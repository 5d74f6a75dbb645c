"""The dashboard's effort per round (``services.dashboard.effort``): photos grouped by the
versions they were shown, counted with the real GrabCut assistance, the sentence, the cache,
and the plot."""

from __future__ import annotations

import numpy as np
import pytest

BOX = (60, 40, 140, 100)
SQUARE = [
    {
        "exterior": [[BOX[0], BOX[1]], [BOX[2], BOX[1]], [BOX[2], BOX[3]], [BOX[0], BOX[3]]],
        "holes": [],
    }
]
PART = 40  # a part class of the default taxonomy


def _photos(folder, n: int) -> None:
    from PIL import Image as PILImage

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        px = rng.integers(100, 140, size=(160, 200, 3)).astype(np.uint8)
        px[BOX[1] : BOX[3], BOX[0] : BOX[2]] = (200, 30, 40)
        PILImage.fromarray(px).save(folder / f"p{i}.png")


@pytest.fixture
def labelled(store, tmp_path):
    """Five photos of one red panel: two labelled by ana with no model, then a version
    pre-annotates two more with the panel itself and ana labels them; one arrives labelled
    by an import. Returns the image ids in that order."""
    from sqlmodel import select

    from db.models import Image, ImagePrediction, ModelVersion, Prediction
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_folder
    from services.labelling.saves import save_annotations
    from services.labelling.statuses import set_status

    _photos(tmp_path / "photos", 5)

    def label(s, image_id: int, author: str = "ana") -> None:
        ann = {"class_id": PART, "geometry": SQUARE}
        save_annotations(s, image_id=image_id, expected_version=0, annotations=[ann], author=author)
        set_status(s, image_id=image_id, status="labelled", author=author)

    with session_scope() as s:
        project = get_or_create_project(s)
        import_folder(s, project, tmp_path / "photos")
        ids = [im.id for im in s.exec(select(Image).order_by(Image.file_name)).all()]
        label(s, ids[0])
        label(s, ids[1])
    with session_scope() as s:
        mv = ModelVersion(
            stage="yolo_seg",
            version=1,
            name="yolo_seg-v1",
            path="-",
            sha256="0",
            metrics={"holdout": {"part": {"coco": {"AP50": 0.42}}}},
            promoted=True,
        )
        s.add(mv)
        s.flush()
        for image_id in ids[2:4]:
            s.add(ImagePrediction(image_id=image_id, model_version_id=mv.id))
            s.add(
                Prediction(
                    image_id=image_id,
                    model_version_id=mv.id,
                    class_id=PART,
                    group="part",
                    geometry=SQUARE,
                    score=0.9,
                )
            )
    with session_scope() as s:
        label(s, ids[2])
        label(s, ids[3])
        label(s, ids[4], author="import:labels.json")
    return ids


def test_effort_per_round_and_the_sentence(labelled, monkeypatch):
    from core.config import get_settings
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.dashboard import effort
    from services.dashboard.plots import PLOTS, render

    # no time to count: nothing is counted, and the sentence says the photos wait
    monkeypatch.setattr(get_settings(), "effort_count_budget_s", 0.0)
    with session_scope() as s:
        table = effort.effort_table(s, get_or_create_project(s))
    assert [r[3] for r in table["rows"]] == [0, 0] and table["waiting"] == 4
    assert table["sentence"].endswith("4 more photos will be counted on the next refresh.")
    monkeypatch.setattr(get_settings(), "effort_count_budget_s", 60.0)

    with session_scope() as s:
        table = effort.effort_table(s, get_or_create_project(s))
    first, second = table["rows"]
    # round 0: nothing shown, the panel drawn with GrabCut from a box (and maybe a click)
    assert first[:4] == [0, "no model", 2, 2]
    assert 2 <= first[4] <= 4 and first[5] == 4 and first[6] == ""
    # round 1: the prediction is the panel: one accept per photo; the import is left out
    assert second == [1, "yolo_seg-v1", 2, 2, 1.0, 4.0, "yolo_seg AP50 0.420"]
    assert table["curve"] == {"yolo_seg (AP50)": [(1, 0.42)]}
    assert table["backend"] == "grabcut"
    assert table["sentence"] == (
        f"Each photo now costs 1 action, down from {first[4]:g} in round 0 (no model). "
        "Counted on 2 photos of round 1 (yolo_seg-v1) with grabcut assistance; too few to be "
        "sure yet."
    )
    # counted once: a refresh reads the cache
    monkeypatch.setattr(effort, "stored_photo_effort", pytest.fail)
    with session_scope() as s:
        assert effort.effort_table(s, get_or_create_project(s))["rows"] == table["rows"]
    assert "effort" in PLOTS and render("effort", table)[:4] == b"\x89PNG"


def test_not_enough_data_is_said_plainly(store):
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.dashboard import effort

    with session_scope() as s:
        table = effort.effort_table(s, get_or_create_project(s))
    assert table["rows"] == []
    assert table["sentence"].startswith("Not enough data for the cost per photo yet")
    assert effort.effort_png(table)[:4] == b"\x89PNG"


def test_one_round_is_compared_with_drawing_by_hand():
    from services.dashboard.effort import effort_sentence

    table = {"rows": [[0, "no model", 9, 1, 12.0, 30.0, ""]], "backend": "grabcut"}
    assert effort_sentence(table) == (
        "Each photo now costs 12 actions, down from 30 drawing every vertex by hand. Counted "
        "on 1 photo of round 0 (no model) with grabcut assistance; too few to be sure yet."
    )
