"""Model registry (versions, promotion, rollback, held-out split), plots, and the jobs/models API."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import image_rows
from sqlmodel import select

from db.models import Image, ImageStatus, ModelVersion


def make_images(session, project, n):
    ims = image_rows(project.id, n, path="/p/{i}.jpg", width=10, height=10)
    for i, im in enumerate(ims):
        im.sha256 = f"{(i * 7919) % 97:064x}"
        im.status = ImageStatus.labelled if i < n - 2 else ImageStatus.new
    session.add_all(ims)
    session.flush()
    return ims


def trained_artifact(stage: str, payload: bytes = b"weights") -> Path:
    from services.training.registry import artifact_tmp_path

    p = artifact_tmp_path(stage)
    p.write_bytes(payload)
    return p


def test_register_promote_rollback(db_session, project, bar_off):
    from services.errors import Invalid
    from services.training import registry

    tmp = trained_artifact("yolo_seg", b"v1")
    v1 = registry.register_version(
        db_session, stage="yolo_seg", artifact_path=tmp, metrics={"f1": 0.5}, promote=True
    )
    assert not tmp.exists() and Path(v1.path).read_bytes() == b"v1" and v1.name == "yolo_seg-v1"
    v2 = registry.register_version(
        db_session,
        stage="yolo_seg",
        artifact_path=trained_artifact("yolo_seg", b"v2"),
        metrics={"primary_metric": "f1", "f1": 0.7},
    )
    assert v2.parent_id == v1.id and v2.version == 2 and not v2.promoted
    assert registry.is_better(v2, v1)[0] and not registry.is_better(v1, v2)[0]
    registry.promote(db_session, "yolo_seg-v2")
    assert registry.current(db_session, "yolo_seg").id == v2.id
    assert sum(m.promoted for m in registry.versions(db_session, "yolo_seg")) == 1
    assert registry.rollback(db_session, "yolo_seg").id == v1.id
    with pytest.raises(Invalid, match="nothing to roll back"):
        registry.rollback(db_session, "yolo_seg")
    with pytest.raises(Invalid, match="did not finish"):
        registry.register_version(db_session, stage="yolo_seg", artifact_path="/nope/missing.pt")
    assert len(registry.versions(db_session)) == 2
    # half-written temporaries are swept, registered artifacts are not
    left = trained_artifact("albert")
    assert registry.cleanup_tmp_artifacts() == [left] and Path(v1.path).exists()


def test_holdout_chosen_once_and_excluded_from_snapshots(db_session, project):
    from services.training import registry

    ims = make_images(db_session, project, 22)  # 20 labelled
    held = registry.ensure_holdout(db_session, project, fraction=0.1)
    assert len(held) == 2
    # more labels later do not move the split
    ims[21].status = ImageStatus.labelled
    db_session.add(ims[21])
    assert registry.ensure_holdout(db_session, project, fraction=0.5) == held
    snap = registry.training_snapshot(db_session, project)
    assert snap["count"] == 19 and not set(snap["image_ids"]) & set(held)
    grown = registry.grow_holdout(db_session, project, [ims[20].id])
    assert set(grown) == {*held, ims[20].id}
    splits = {im.id: im.split for im in db_session.exec(select(Image)).all()}
    assert sorted(i for i, s in splits.items() if s == "test") == sorted(grown)


def test_plots_are_pngs():
    from active_learning.plots import learning_curve, metrics_across_versions

    png = metrics_across_versions(
        [("albert-v1", {"accuracy": 0.5, "f1": 0.4}), ("albert-v2", {"part_f1": 0.6})],
        promoted="albert-v2",
    )
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    lc = learning_curve(
        {"random": ([20, 40], [0.3, 0.4], [0.01, 0.02]), "hybrid": ([20, 40], [0.3, 0.5])}
    )
    assert lc[:4] == b"\x89PNG"
    assert metrics_across_versions([])[:4] == b"\x89PNG"


@pytest.fixture
def api(tmp_path):
    from browser_helpers import api_client

    client, _, login = api_client(tmp_path / "data", n_synthetic=2)
    return client, login


def test_jobs_and_models_api(api, bar_off):
    from db.session import session_scope
    from services.training import registry

    client, login = api
    lead, annot = login("lead"), login("annotator")
    assert client.get("/api/jobs").status_code == 401
    assert (
        client.post(
            "/api/jobs", json={"kind": "select", "params": {"k": 2}}, headers=annot
        ).status_code
        == 403
    )
    bad = client.post("/api/jobs", json={"kind": "train", "params": {}}, headers=lead)
    assert bad.status_code == 422 and "params.stage" in bad.json()["detail"]
    r = client.post(
        "/api/jobs", json={"kind": "select", "params": {"strategy": "random", "k": 2}}, headers=lead
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "queued" and job["created_by"]
    got = client.get(f"/api/jobs/{job['id']}", headers=annot).json()
    assert got["id"] == job["id"] and got["progress"] == 0.0
    assert client.delete(f"/api/jobs/{job['id']}", headers=lead).json()["status"] == "cancelled"
    assert client.post(f"/api/jobs/{job['id']}/retry", headers=lead).json()["status"] == "queued"
    assert client.get("/api/jobs/99999", headers=lead).status_code == 404
    assert [j["id"] for j in client.get("/api/jobs", headers=lead).json()] == [job["id"]]

    with session_scope() as s:
        art = registry.artifact_tmp_path("albert")
        art.write_bytes(b"x")
        registry.register_version(
            s,
            stage="albert",
            artifact_path=art,
            metrics={"f1": 0.9, "accuracy": 0.8},
            train_snapshot={"count": 30},
        )
    models = client.get("/api/models?stage=albert", headers=annot).json()
    assert [m["name"] for m in models] == ["albert-v1", "albert-v2"]
    assert models[1]["primary_metric"] == {"name": "f1", "value": 0.9}
    assert client.post("/api/models/albert-v2/promote", headers=annot).status_code == 403
    assert client.post("/api/models/albert-v2/promote", headers=lead).json()["promoted"] is True
    assert client.get("/api/models/albert/current", headers=lead).json()["name"] == "albert-v2"
    rb = client.post("/api/models/albert/rollback", json={}, headers=lead)
    assert rb.status_code == 200 and rb.json()["name"] == "albert-v1"
    png = client.get("/api/models/plots/metrics.png?stage=albert", headers=lead)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert (
        client.get("/api/models/plots/learning_curve.png", headers=lead).content[:4] == b"\x89PNG"
    )
    with session_scope() as s:
        assert (
            s.exec(select(ModelVersion).where(ModelVersion.promoted.is_(True))).one().name
            == "albert-v1"
        )
