"""Overlap and gold photos through the REST API on a real store: who sees and saves what,
agreement and consensus once both annotators submitted, gold scores, gold never overwritten."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from sqlmodel import select

from tests.browser_helpers import PASSWORD, api_client


def box(x0: float, y0: float, x1: float, y1: float, class_id: int = 1) -> dict:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
    return {"class_id": class_id, "geometry": [{"exterior": ring, "holes": []}]}


def _photo(project, i: int, **fields):
    """A 64x64 photo row ``{i}.jpg`` with no file behind it, for service-level tests."""
    from db.models import Image

    return Image(
        project_id=project.id,
        path="/x",
        file_name=f"{i}.jpg",
        sha256=f"{i}",
        width=64,
        height=64,
        **fields,
    )


@pytest.fixture
def world(tmp_path: Path):
    from db.session import session_scope
    from services.accounts.users import create_user

    client, seeded, login = api_client(tmp_path / "data", n_synthetic=4)
    with session_scope() as session:
        create_user(session, username="annotator2", password=PASSWORD, role="annotator")
    r = client.post("/api/login", json={"username": "annotator2", "password": PASSWORD})
    heads = {
        "a1": login("annotator"),
        "a2": {"Authorization": f"Bearer {r.json()['token']}"},
        "lead": login("lead"),
        "reviewer": login("reviewer"),
    }
    return client, seeded, heads


def walk_queue(client, head) -> list[int]:
    """Every photo the queue hands this user, in order."""
    seen, after = [], None
    while True:
        url = "/api/queue/next" + (f"?after_id={after}" if after else "")
        image = client.get(url, headers=head).json()["image"]
        if image is None or image["id"] in seen:
            return seen
        seen.append(image["id"])
        after = image["id"]


def test_overlap_photo_two_annotators_agreement_and_consensus(world) -> None:
    from db.models import Image
    from db.session import session_scope

    client, seeded, h = world
    assert (
        client.put("/api/quality/settings", json={"gold_share": 0}, headers=h["a1"]).status_code
        == 403
    )
    r = client.put(
        "/api/quality/settings",
        json={"overlap_share": 0.25, "overlap_annotators": 2, "quorum": 1.0, "gold_share": 0},
        headers=h["lead"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["quorum"] == 1.0 and r.json()["overlap_annotators"] == 2
    with session_scope() as session:
        marked = session.exec(select(Image.id).where(Image.overlap_target == 2)).all()
    assert len(marked) == 1  # 25 % of 4 photos
    pid = marked[0]

    # Each annotator labels it on their own; nobody sees the other's set or changes the
    # working set.
    r = client.put(
        f"/api/images/{pid}/annotations",
        json={"version": 0, "annotations": [box(100, 100, 200, 200)]},
        headers=h["a1"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1 and len(r.json()["annotations"]) == 1
    stale = client.put(
        f"/api/images/{pid}/annotations", json={"version": 0, "annotations": []}, headers=h["a1"]
    )
    assert stale.status_code == 409
    seen_by_a2 = client.get(f"/api/images/{pid}", headers=h["a2"]).json()
    assert seen_by_a2["annotations"] == [] and seen_by_a2["version"] == 0
    lead_view = client.get(f"/api/images/{pid}", headers=h["lead"]).json()
    assert lead_view["annotations"] == [] and lead_view["status"] == "new"
    r = client.post(f"/api/images/{pid}/status", json={"status": "labelled"}, headers=h["a1"])
    assert r.status_code == 200 and r.json()["status"] == "labelled"
    assert client.get(f"/api/images/{pid}", headers=h["lead"]).json()["status"] == "new"
    # The queue no longer hands it to annotator 1, but does to annotator 2.
    assert pid not in walk_queue(client, h["a1"])
    assert pid in walk_queue(client, h["a2"])
    assert client.get("/api/quality/photos", headers=h["lead"]).json() == []

    r = client.put(
        f"/api/images/{pid}/annotations",
        json={"version": 0, "annotations": [box(100, 100, 200, 190), box(300, 300, 400, 400, 26)]},
        headers=h["a2"],
    )
    assert r.status_code == 200, r.text
    client.post(f"/api/images/{pid}/status", json={"status": "labelled"}, headers=h["a2"])

    # Agreement: one match (IoU 0.9) among 1 + 2 instances -> F1 2/3, under 0.7: review first.
    rows = client.get("/api/quality/photos", headers=h["lead"]).json()
    assert len(rows) == 1
    row = rows[0]
    assert row["image_id"] == pid and row["annotators"] == "annotator1, annotator2"
    assert row["agreement_f1"] == pytest.approx(2 / 3, abs=1e-3)
    assert row["mean_iou"] == pytest.approx(0.9, abs=1e-3)
    # Consensus with quorum 1.0: only the object both drew, as the working set, labelled.
    detail = client.get(f"/api/images/{pid}", headers=h["lead"]).json()
    assert detail["status"] == "labelled"
    assert [a["class_id"] for a in detail["annotations"]] == [1]
    xs = [p[0] for p in detail["annotations"][0]["geometry"][0]["exterior"]]
    ys = [p[1] for p in detail["annotations"][0]["geometry"][0]["exterior"]]
    assert (min(xs), min(ys), max(xs), max(ys)) == pytest.approx((100, 100, 200, 200), abs=1)
    assert detail["queue_score"] == pytest.approx(2 + 1 / 3, abs=1e-3)
    # An active-learning selection rewrites every queue score but keeps this routing.
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.training.selection import select as al_select

    with session_scope() as session:
        al_select(session, get_or_create_project(session), strategy="random", k=2)
    detail = client.get(f"/api/images/{pid}", headers=h["lead"]).json()
    assert detail["queue_score"] == pytest.approx(2 + 1 / 3, abs=1e-3)
    # Now complete, it is an ordinary labelled photo for everybody.
    assert len(client.get(f"/api/images/{pid}", headers=h["a1"]).json()["annotations"]) == 1

    other = next(i for i in seeded.image_ids if i != pid)
    one = client.get(f"/api/quality/photos/{pid}", headers=h["lead"]).json()
    assert [(p["a"], p["b"]) for p in one["pairs"]] == [("annotator1", "annotator2")]
    assert {c["class_id"]: c["f1"] for c in one["per_class"]} == {1: 1.0, 26: 0.0}
    assert client.get(f"/api/quality/photos/{other}", headers=h["lead"]).status_code == 404
    annotators = {
        r["annotator"]: r for r in client.get("/api/quality/annotators", headers=h["lead"]).json()
    }
    assert annotators["annotator1"]["agreement_f1"] == pytest.approx(2 / 3, abs=1e-3)
    assert annotators["annotator2"]["photos_per_hour"] >= 1
    classes = {
        r["class_id"]: r for r in client.get("/api/quality/classes", headers=h["lead"]).json()
    }
    assert classes[1]["agreement_f1"] == 1.0 and classes[26]["agreement_f1"] == 0.0
    csv = client.get("/api/quality/photos?format=csv", headers=h["lead"])
    assert csv.headers["content-type"].startswith("text/csv")
    header, line = csv.text.strip().splitlines()
    assert header.startswith("image_id,file_name") and line.startswith(f"{pid},")
    png = client.get("/api/quality/series.png", headers=h["lead"])
    assert png.content[:4] == b"\x89PNG"


def test_gold_hidden_scored_and_never_overwritten(world) -> None:
    from db.models import AnnotationSet
    from db.session import session_scope

    client, seeded, h = world
    gid = seeded.image_ids[1]
    r = client.put(
        f"/api/images/{gid}/annotations",
        json={"version": 0, "annotations": [box(50, 50, 150, 150)]},
        headers=h["lead"],
    )
    assert r.status_code == 200, r.text
    client.post(f"/api/images/{gid}/status", json={"status": "labelled"}, headers=h["lead"])
    r = client.post(f"/api/quality/gold/{gid}", json={"gold": True}, headers=h["lead"])
    assert r.status_code == 422 and "review it first" in r.json()["detail"]
    client.post(f"/api/images/{gid}/status", json={"status": "reviewed"}, headers=h["lead"])
    assert (
        client.post(f"/api/quality/gold/{gid}", json={}, headers=h["reviewer"]).status_code == 403
    )
    r = client.post(f"/api/quality/gold/{gid}", json={"gold": True}, headers=h["lead"])
    assert r.status_code == 200 and r.json() == {"image_id": gid, "gold": True}
    client.put(
        "/api/quality/settings", json={"gold_share": 0.5, "gold_feedback": True}, headers=h["lead"]
    )
    working = client.get(f"/api/images/{gid}", headers=h["lead"]).json()

    # The annotator is handed it as an ordinary new photo, without its labels.
    assert gid in walk_queue(client, h["a1"])
    shown = client.get(f"/api/images/{gid}", headers=h["a1"]).json()
    assert shown["annotations"] == [] and shown["status"] == "new" and shown["version"] == 0
    assert shown["review_comment"] is None
    assert client.get(f"/api/quality/feedback/{gid}", headers=h["a1"]).status_code == 404
    refused = client.post(f"/api/images/{gid}/status", json={"status": "reviewed"}, headers=h["a1"])
    assert refused.status_code == 403

    r = client.put(
        f"/api/images/{gid}/annotations",
        json={"version": 0, "annotations": [box(50, 50, 150, 130), box(400, 300, 450, 350, 26)]},
        headers=h["a1"],
    )
    assert r.status_code == 200, r.text
    r = client.post(f"/api/images/{gid}/status", json={"status": "labelled"}, headers=h["a1"])
    assert r.json()["status"] == "labelled"

    # Gold labels and the working set are untouched.
    after = client.get(f"/api/images/{gid}", headers=h["lead"]).json()
    assert after["annotations"] == working["annotations"] and after["status"] == "reviewed"
    assert after["version"] == working["version"]
    with session_scope() as session:
        ref = session.exec(
            select(AnnotationSet).where(AnnotationSet.image_id == gid, AnnotationSet.kind == "gold")
        ).one()
        assert [a["geometry"] for a in ref.annotations] == [
            a["geometry"] for a in working["annotations"]
        ]

    # Scored: the class-1 box is a hit at IoU 0.8, the class-26 box a false positive.
    rows = client.get("/api/quality/gold", headers=h["lead"]).json()
    assert [(r["annotator"], r["image_id"]) for r in rows] == [("annotator1", gid)]
    assert rows[0]["precision"] == 0.5 and rows[0]["recall"] == 1.0
    assert rows[0]["mean_iou"] == pytest.approx(0.8, abs=1e-3)
    one = next(
        r
        for r in client.get("/api/quality/classes", headers=h["lead"]).json()
        if r["class_id"] == 1
    )
    assert one["gold_precision"] == 1.0 and one["gold_mean_iou"] == pytest.approx(0.8, abs=1e-3)
    fb = client.get(f"/api/quality/feedback/{gid}", headers=h["a1"])
    assert fb.status_code == 200 and fb.json()["scores"]["overall"]["recall"] == 1.0
    assert client.get(f"/api/quality/feedback/{gid}", headers=h["a2"]).status_code == 404
    # Submitted once, it is not handed to the same annotator again; a reviewer sees gold.
    assert gid not in walk_queue(client, h["a1"])
    assert len(client.get(f"/api/images/{gid}", headers=h["reviewer"]).json()["annotations"]) == 1


def test_settings_overlap_share_gold_mixing_and_fake_flags(db_session, project) -> None:
    """Service rules without HTTP: settings are checked, the overlap share grows and shrinks,
    gold photos are mixed into an annotator's queue at the share, and an annotator cannot
    flag fake damage in a set of their own."""
    from db.models import Image, ImageStatus
    from services.accounts.users import create_user
    from services.errors import Forbidden, Invalid
    from services.labelling import routing
    from services.review import quality

    for i in range(10):
        db_session.add(_photo(project, i, import_order=i))
    db_session.flush()
    lead = create_user(db_session, username="ld", password="long enough", role="lead")
    ann = create_user(db_session, username="an", password="long enough", role="annotator")
    with pytest.raises(Forbidden):
        quality.set_quality_settings(db_session, ann, project, overlap_share=0.5)
    with pytest.raises(Invalid, match="quorum must be between"):
        quality.set_quality_settings(db_session, lead, project, quorum=1.5)
    with pytest.raises(Invalid, match="not a quality setting"):
        quality.set_quality_settings(db_session, lead, project, overlap=0.5)

    quality.set_quality_settings(db_session, lead, project, overlap_share=0.3, overlap_annotators=3)
    assert quality.count_overlap(db_session, project) == 3
    marked = db_session.exec(select(Image).where(Image.overlap_target == 3)).all()
    assert len(marked) == 3
    box_ = box(1, 1, 20, 20)
    save = functools.partial(quality.save_routed, db_session, ann, project=project)
    save(image_id=marked[0].id, expected_version=0, annotations=[box_])
    with pytest.raises(Forbidden, match="fake"):
        fake = {**box_, "attributes": {"fake": True}}
        save(image_id=marked[0].id, expected_version=1, annotations=[fake])
    quality.set_quality_settings(db_session, lead, project, overlap_share=0.0)
    # The photo someone started on stays an overlap photo; the idle ones are ordinary again.
    assert [im.id for im in db_session.exec(select(Image).where(Image.overlap_target > 0))] == [
        marked[0].id
    ]

    # Gold mixing: a quarter of the queue, one gold photo after every three ordinary ones.
    gold_ids = []
    for im in db_session.exec(select(Image).where(Image.overlap_target == 0)).all()[:2]:
        im.status, im.gold = ImageStatus.reviewed, True
        db_session.add(im)
        gold_ids.append(im.id)
    db_session.flush()
    quality.set_quality_settings(db_session, lead, project, gold_share=0.25)
    ordinary = [1001, 1002, 1003, 1004, 1005, 1006, 1007]
    mixed = routing.queue_ids_for(db_session, project.id, ann, ordinary)
    assert [mixed[k] for k in (3, 7)] == [g for g in mixed if g in gold_ids] and len(mixed) == 9
    assert routing.queue_ids_for(db_session, project.id, lead, ordinary) == ordinary
    assert (
        routing.queue_ids_for(db_session, project.id, ann, ordinary, {"split": "train"}) == ordinary
    )


def test_dashboard_quality_handlers(store) -> None:
    """The dashboard section's handlers: settings saved, a photo marked gold (and refused when
    it is not reviewed), the tables and picture refreshed, a CSV file offered."""
    from pathlib import Path

    from annotator import quality_panel
    from db.models import Image, ImageStatus
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.accounts.users import Permission, create_user

    with session_scope() as s:
        project = get_or_create_project(s)
        lead = create_user(s, username="ld", password="long enough", role="lead")
        for i, status in enumerate((ImageStatus.reviewed, ImageStatus.new)):
            s.add(_photo(project, i, status=status))
        s.flush()
        ids = [i for i in s.exec(select(Image.id).order_by(Image.id))]
        s.expunge(lead)

    def require(token: str, permission: Permission):
        assert token == "t" and permission is Permission.dashboard
        return lead

    values = [0.5, 2, 0.1, True, 0.5, 0.6, 0.7]
    assert "1 photos are overlap photos" in quality_panel.save_settings(require, "t", *values)
    assert "now gold" in quality_panel.mark_gold(require, "t", ids[0], True)
    assert "review it first" in quality_panel.mark_gold(require, "t", ids[1], True)
    out = quality_panel.refresh(require, "t")
    assert out[:7] == [0.5, 2, 0.1, True, 0.5, 0.6, 0.7]
    assert out[-1].size[0] > 100  # the time-series picture
    with session_scope() as s:
        assert s.get(Image, ids[0]).gold and s.get(Image, ids[1]).overlap_target == 2
    update = quality_panel.csv_file(require, "t", "classes")
    assert update["visible"] and Path(update["value"]).name == "quality_classes.csv"
