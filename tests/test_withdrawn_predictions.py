"""Pending predictions of a version that is rolled back, replaced, or found below its bar to
pre-annotate leave the workspace and the exports, and stay in the database as history."""

from __future__ import annotations

from pathlib import Path

from browser_helpers import api_client
from sqlmodel import select

from db.models import Image, Prediction

GOOD = {"holdout": {"part": {"coco": {"AP": 0.2, "AP50": 0.45}, "miou": 0.4}}}
ZERO = {"holdout": {"part": {"coco": {"AP": 0.0, "AP50": 0.0}, "miou": 0.06}}}
SQUARE = [{"exterior": [[10, 10], [90, 10], [90, 90], [10, 90]], "holes": []}]


def _version_with_predictions(session, tmp_path: Path, metrics: dict, image_id: int, n: int):
    """A yolo_seg version and ``n`` pending part predictions of it on ``image_id``."""
    from services.training.registry import register_version

    path = tmp_path / f"yolo_seg-{len(list(tmp_path.glob('*.pt')))}.pt"
    path.write_bytes(b"a model file")
    mv = register_version(session, stage="yolo_seg", artifact_path=path, metrics=metrics)
    for i in range(n):
        session.add(
            Prediction(
                image_id=image_id,
                model_version_id=mv.id,
                class_id=30 + i,
                group="part",
                geometry=SQUARE,
                score=0.9,
            )
        )
    session.flush()
    return mv


def _shown(client, headers, image_id: int) -> dict[str, int]:
    """Model name -> predictions of it the workspace shows on the photo."""
    r = client.get(f"/api/images/{image_id}", headers=headers)
    assert r.status_code == 200, r.text
    out: dict[str, int] = {}
    for p in r.json()["predictions"]:
        out[p["model"]] = out.get(p["model"], 0) + 1
    return out


def _states(version_id: int) -> list[str]:
    from db.session import session_scope

    with session_scope() as s:
        rows = s.exec(select(Prediction).where(Prediction.model_version_id == version_id)).all()
        return sorted(p.state.value for p in rows)


def test_a_replaced_or_rolled_back_version_leaves_the_workspace_and_stays_in_history(tmp_path):
    from db.session import session_scope

    client, seeded, login = api_client(tmp_path / "data")
    photo = seeded.image_ids[1]
    with session_scope() as s:
        v1 = _version_with_predictions(s, tmp_path, GOOD, photo, 2)
        v2 = _version_with_predictions(s, tmp_path, GOOD, photo, 1)
    lead, annotator = login("lead"), login("annotator")

    r = client.post("/api/models/yolo_seg-v1/promote", headers=lead)
    assert r.status_code == 200, r.text
    assert _shown(client, annotator, photo) == {"yolo_seg-v1": 2}

    # a lead promotes v2 by hand: v1's pending predictions are withdrawn, not deleted
    assert client.post("/api/models/yolo_seg-v2/promote", headers=lead).status_code == 200
    assert _shown(client, annotator, photo) == {"yolo_seg-v2": 1}
    assert _states(v1.id) == ["withdrawn", "withdrawn"]
    # an annotator cannot bring one back by hand
    with session_scope() as s:
        withdrawn_id = s.exec(select(Prediction.id).where(Prediction.model_version_id == v1.id))
        withdrawn_id = withdrawn_id.first()
    r = client.post(
        f"/api/predictions/{withdrawn_id}/state", json={"state": "pending"}, headers=annotator
    )
    assert r.status_code == 422 and "was withdrawn" in r.json()["detail"]

    # the rollback returns v1's suggestions and withdraws v2's
    r = client.post("/api/models/yolo_seg/rollback", headers=lead)
    assert r.status_code == 200 and r.json()["name"] == "yolo_seg-v1"
    assert _shown(client, annotator, photo) == {"yolo_seg-v1": 2}
    assert _states(v2.id) == ["withdrawn"] and _states(v1.id) == ["pending", "pending"]
    # another stage's suggestions are untouched
    assert _shown(client, annotator, seeded.image_ids[0]) == {"albert-v1": 3}


def test_a_version_found_below_the_bar_leaves_the_workspace_and_the_exports(tmp_path, monkeypatch):
    from app import create_app
    from core.config import get_settings
    from db.session import session_scope

    client, seeded, login = api_client(tmp_path / "data")
    photo = seeded.image_ids[1]
    with session_scope() as s:
        v1 = _version_with_predictions(s, tmp_path, GOOD, photo, 2)
    lead, annotator = login("lead"), login("annotator")
    assert client.post("/api/models/yolo_seg-v1/promote", headers=lead).status_code == 200
    assert _shown(client, annotator, photo) == {"yolo_seg-v1": 2}
    assert _exported_predictions(photo) == 2

    # the lead raises the bar above what v1 measured; the next start withdraws its suggestions
    monkeypatch.setattr(get_settings(), "pre_annotate_minimum", {"yolo_seg": 0.5})
    create_app()
    assert _shown(client, annotator, photo) == {}
    assert _exported_predictions(photo) == 0
    assert _states(v1.id) == ["withdrawn", "withdrawn"]
    r = client.get("/api/models/yolo_seg/current", headers=lead)
    assert r.status_code == 200 and r.json()["name"] == "yolo_seg-v1"  # still promoted

    # confirming it below the bar by hand offers its suggestions again
    monkeypatch.setattr(get_settings(), "pre_annotate_minimum", {})
    create_app()
    assert _shown(client, annotator, photo) == {"yolo_seg-v1": 2}


def test_an_unconfirmed_rollback_to_a_version_below_the_bar_offers_nothing(tmp_path):
    from db.session import session_scope

    client, seeded, login = api_client(tmp_path / "data")
    photo = seeded.image_ids[1]
    with session_scope() as s:
        low = _version_with_predictions(s, tmp_path, ZERO, photo, 1)
        _version_with_predictions(s, tmp_path, GOOD, photo, 1)
    lead, annotator = login("lead"), login("annotator")
    assert client.post("/api/models/yolo_seg-v2/promote", headers=lead).status_code == 200
    assert _shown(client, annotator, photo) == {"yolo_seg-v2": 1}
    r = client.post("/api/models/yolo_seg/rollback", json={"to": low.name}, headers=lead)
    assert r.status_code == 200, r.text
    assert _shown(client, annotator, photo) == {}
    assert _states(low.id) == ["withdrawn"]


def _exported_predictions(image_id: int) -> int:
    """Pending predictions an export with predictions carries for the photo (Label Studio's
    reads them from these records)."""
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.training.records import collect_records

    with session_scope() as s:
        records = collect_records(s, get_or_create_project(s), include_predictions=True)
    (record,) = [r for r in records if r.meta["image_id"] == image_id]
    preds = record.meta.get("predictions")
    return 0 if preds is None else len(preds)


def test_withdrawing_and_restoring_works_on_every_database(any_store, tmp_path):
    from browser_helpers import synthetic_photo

    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_folder
    from services.training.registry import rollback, set_promoted

    synthetic_photo(tmp_path / "photos" / "a.jpg")
    with session_scope() as s:
        project = get_or_create_project(s)
        import_folder(s, project, tmp_path / "photos")
        (photo,) = [im.id for im in s.exec(select(Image)).all()]
        v1 = _version_with_predictions(s, tmp_path, GOOD, photo, 2)
        v2 = _version_with_predictions(s, tmp_path, GOOD, photo, 1)
        set_promoted(s, v1)
        set_promoted(s, v2)
    assert _states(v1.id) == ["withdrawn", "withdrawn"] and _states(v2.id) == ["pending"]
    with session_scope() as s:
        rollback(s, "yolo_seg")
    assert _states(v1.id) == ["pending", "pending"] and _states(v2.id) == ["withdrawn"]
