"""Review at a glance (``services.review.decisions``, ``services.labelling.rejections``), without HTTP: verdicts on
single instances, a rejection going back to its author at the head of their queue with a count,
the per-annotator rejection rates, and the migration 0007 columns in use."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import seed_workspace

from db.models import Image, ImageStatus, User
from services.accounts.projects import get_or_create_project
from services.accounts.users import create_user, get_user
from services.errors import Forbidden, Invalid, NotFound
from services.labelling import readers, rejections, saves, statuses
from services.labelling.images import queue_ids
from services.review import decisions as review

SQUARE = [{"exterior": [[10.0, 10.0], [60.0, 10.0], [60.0, 60.0], [10.0, 60.0]], "holes": []}]
OTHER = [{"exterior": [[100.0, 100.0], [160.0, 100.0], [160.0, 160.0]], "holes": []}]
OTHER_FIXED = [{"exterior": [[100.0, 100.0], [170.0, 100.0], [170.0, 170.0]], "holes": []}]


@pytest.fixture
def seeded(tmp_path: Path):
    from core.config import reset_settings
    from db.session import reset_engine

    yield seed_workspace(tmp_path / "data", n_synthetic=3, n_predictions=0)
    reset_engine()
    reset_settings()


@pytest.fixture
def session(seeded):
    from db.session import session_scope

    with session_scope() as s:
        yield s


def _label(session, user: User, image_id: int, geoms=(SQUARE, OTHER)) -> list[dict]:
    """``user`` draws ``geoms`` on the photo and marks it labelled; returns its annotations."""
    project = get_or_create_project(session)
    image = session.get(Image, image_id)
    saves.save_annotations_as(
        session,
        user,
        project=project,
        image_id=image_id,
        expected_version=image.annotation_version,
        annotations=[{"class_id": 1, "geometry": g} for g in geoms],
    )
    statuses.set_status_as(session, user, project=project, image_id=image_id, status="labelled")
    return readers.annotation_dicts(session, image_id)


def _verdict(
    session, user: User, image_id: int, instance: dict, decision: str, reason: str | None = None
) -> dict:
    """``user``'s verdict on ``instance`` (an annotation dict) of the photo, in the default
    project."""
    return review.review_instance_as(
        session,
        user,
        project=get_or_create_project(session),
        image_id=image_id,
        annotation_id=instance["id"],
        decision=decision,
        reason=reason,
    )


def test_instance_verdicts_reject_the_photo_back_to_its_author(session, seeded):
    project = get_or_create_project(session)
    author, reviewer = get_user(session, "annotator1"), get_user(session, "reviewer1")
    first, second, third = seeded.image_ids
    anns = _label(session, author, third)
    # before any rejection the photo is not at the head of anyone's queue
    assert queue_ids(session, project.id, first_for="annotator1")[0] == first

    out = _verdict(session, reviewer, third, anns[0], "accepted")
    assert out["annotation"]["review_state"] == "accepted"
    assert out["image"]["status"] == "labelled"  # accepting one instance leaves the photo be

    with pytest.raises(Invalid, match="needs a reason"):
        _verdict(session, reviewer, third, anns[1], "rejected")
    out = _verdict(session, reviewer, third, anns[1], "rejected", "outline misses the lower edge")
    assert out["annotation"]["review_state"] == "rejected"
    assert out["annotation"]["reviewed_by"] == "reviewer1"
    image = out["image"]
    assert image["status"] == "rejected" and image["rejected_for"] == "annotator1"
    assert "outline misses the lower edge" in image["review_comment"]
    assert image["review_comment"] == "Dent: outline misses the lower edge"

    # the author's queue starts with it; someone else's keeps the usual order
    assert queue_ids(session, project.id, first_for="annotator1")[0] == third
    assert queue_ids(session, project.id, first_for="reviewer1")[0] == first
    assert rejections.waiting_count(session, project.id, "annotator1") == 1
    assert rejections.waiting_count(session, project.id, "reviewer1") == 0
    waiting = review.waiting_for(session, author, project)
    assert waiting["count"] == 1 and waiting["images"][0]["id"] == third

    # approving is refused while an instance stays rejected
    with pytest.raises(Invalid, match="rejected"):
        statuses.set_status_as(
            session, reviewer, project=project, image_id=third, status="reviewed"
        )

    # the author fixes the rejected instance: its verdict goes, the accepted one stays
    row = session.get(Image, third)
    fixed = [
        {"id": anns[0]["id"], "class_id": 1, "geometry": SQUARE},
        {"id": anns[1]["id"], "class_id": 1, "geometry": OTHER_FIXED},
    ]
    saves.save_annotations_as(
        session,
        author,
        project=project,
        image_id=third,
        expected_version=row.annotation_version,
        annotations=fixed,
    )
    states = {a["id"]: a["review_state"] for a in readers.annotation_dicts(session, third)}
    assert states == {anns[0]["id"]: "accepted", anns[1]["id"]: None}
    assert rejections.waiting_count(session, project.id, "annotator1") == 1  # still rejected
    statuses.set_status_as(session, author, project=project, image_id=third, status="labelled")
    assert session.get(Image, third).rejected_for is None
    assert rejections.waiting_count(session, project.id, "annotator1") == 0
    statuses.set_status_as(session, reviewer, project=project, image_id=third, status="reviewed")
    assert session.get(Image, third).status == ImageStatus.reviewed


def test_roles_and_scope_of_instance_review(session, seeded):
    author = get_user(session, "annotator1")
    anns = _label(session, author, seeded.image_ids[0])
    for role in ("annotator", "fraud_analyst"):
        with pytest.raises(Forbidden):
            _verdict(
                session, get_user(session, f"{role}1"), seeded.image_ids[0], anns[0], "accepted"
            )
    lead = get_user(session, "lead1")
    with pytest.raises(NotFound):  # an annotation of another photo
        _verdict(session, lead, seeded.image_ids[1], anns[0], "accepted")
    with pytest.raises(Invalid, match="decision"):
        _verdict(session, lead, seeded.image_ids[0], anns[0], "maybe")


def test_whole_photo_rejection_goes_to_the_last_saver_not_the_reviewer(session, seeded):
    project = get_or_create_project(session)
    reviewer = get_user(session, "reviewer1")
    ana = create_user(session, username="ana", password="pw-ana-123456", role="annotator")
    bob = create_user(session, username="bob", password="pw-bob-123456", role="annotator")
    img = seeded.image_ids[1]
    _label(session, ana, img, geoms=(SQUARE,))
    # the reviewer touches it up before rejecting: it still goes back to ana
    row = session.get(Image, img)
    saves.save_annotations_as(
        session,
        reviewer,
        project=project,
        image_id=img,
        expected_version=row.annotation_version,
        annotations=[{"class_id": 2, "geometry": SQUARE}],
    )
    row.lease_user_id, row.lease_until = reviewer.id, 4e9  # the queue handed it to the reviewer
    statuses.set_status_as(
        session, reviewer, project=project, image_id=img, status="rejected", comment="wrong class"
    )
    assert session.get(Image, img).rejected_for == "ana"
    assert session.get(Image, img).lease_user_id is None  # the reviewer's lease let go
    assert queue_ids(session, project.id, first_for="ana")[0] == img
    assert queue_ids(session, project.id, first_for="bob")[0] != img
    # a photo-level rejection of a photo nobody annotated waits for nobody
    other = seeded.image_ids[2]
    statuses.set_status_as(
        session, reviewer, project=project, image_id=other, status="rejected", comment="blurred"
    )
    assert session.get(Image, other).rejected_for is None

    # rates: ana had one photo rejected; bob one photo approved, one instance rejected
    third = seeded.image_ids[0]
    anns = _label(session, bob, third)
    _verdict(session, reviewer, third, anns[1], "accepted")
    statuses.set_status_as(session, reviewer, project=project, image_id=third, status="reviewed")
    rates = {r["annotator"]: r for r in review.rejection_rates(session, project)}
    assert rates["ana"]["photos_reviewed"] == 1 and rates["ana"]["photo_rejection_rate"] == 1.0
    assert rates["ana"]["instance_rejection_rate"] is None
    assert rates["bob"]["photos_reviewed"] == 1 and rates["bob"]["photo_rejection_rate"] == 0.0
    assert rates["bob"]["instances_reviewed"] == 1 and rates["bob"]["instances_rejected"] == 0
    assert "reviewer1" not in rates
    first_row = review.rejection_rates(session, project)[0]
    assert first_row["annotator"] == "ana"  # highest rejection rate first
    table = review.rejection_rates_markdown(session, project)
    assert "| ana | 1 | 1 | 100% | 0 | 0 | – |" in table
    assert "| bob | 1 | 0 | 0% | 1 | 0 | 0% |" in table


def test_side_less_labels_import_as_side_unknown_and_a_lead_resolves_them(
    session, seeded, tmp_path
):
    import json

    from browser_helpers import synthetic_photo

    from core.records import LabelResolver, load_label_map
    from core.taxonomy import TaxonomyError, default_taxonomy
    from services.data_io.imports import import_coco

    project = get_or_create_project(session)
    synthetic_photo(tmp_path / "car.jpg", seed=5)
    box = [[20, 20, 120, 20, 120, 90, 20, 90]]
    coco = {
        "images": [{"id": 1, "file_name": "car.jpg", "width": 640, "height": 480}],
        "categories": [{"id": 1, "name": "mirror"}, {"id": 2, "name": "left_mirror"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": box},
            {
                "id": 2,
                "image_id": 1,
                "category_id": 2,
                "segmentation": [[300, 300, 400, 300, 350, 380]],
            },
        ],
    }
    (tmp_path / "c.json").write_text(json.dumps(coco))
    (tmp_path / "map.json").write_text(
        json.dumps({"mirror": {"class": "left_mirror", "side": "unknown"}})
    )
    report = import_coco(
        session,
        project,
        tmp_path / "c.json",
        images_dir=tmp_path,
        label_map=load_label_map(tmp_path / "map.json"),
    )
    assert report.images_added == 1
    rows = review.side_unknown(session, project)
    assert len(rows) == 1  # the sided label imported as itself, without the attribute
    row = rows[0]
    assert row["class_name"] == "left_mirror" and row["other_side"] == "right_mirror"
    assert row["annotation"]["attributes"] == {"side": "unknown"}
    assert row["image"]["file_name"] == "car.jpg"
    image_id = row["image"]["id"]
    others = [
        a for a in readers.annotation_dicts(session, image_id) if a["id"] != row["annotation"]["id"]
    ]
    assert [(a["class_id"], a["attributes"]) for a in others] == [(54, {})]

    aid = row["annotation"]["id"]
    with pytest.raises(Forbidden):
        review.resolve_side_as(
            session,
            get_user(session, "annotator1"),
            project=project,
            annotation_id=aid,
            class_name="right_mirror",
        )
    with pytest.raises(Invalid, match="must be one of"):
        review.resolve_side_as(
            session,
            get_user(session, "lead1"),
            project=project,
            annotation_id=aid,
            class_name="hood",
        )
    out = review.resolve_side_as(
        session,
        get_user(session, "lead1"),
        project=project,
        annotation_id=aid,
        class_name="right_mirror",
    )
    assert out["class_id"] == 55 and out["attributes"] == {}
    assert review.side_unknown(session, project) == []
    assert session.get(Image, image_id).annotation_version == 1  # recorded like a save

    # a class without a twin cannot have an unknown side; a bad object entry is named
    with pytest.raises(TaxonomyError, match="no left/right twin"):
        LabelResolver(default_taxonomy(), {"cap": {"class": "hood", "side": "unknown"}})
    with pytest.raises(TaxonomyError, match="object entry"):
        LabelResolver(default_taxonomy(), {"cap": {"class": "left_mirror"}})


def test_review_api_routes(tmp_path):
    from browser_helpers import api_client

    from core.config import reset_settings
    from db.session import reset_engine

    client, seeded, login = api_client(tmp_path / "api", n_synthetic=2)
    try:
        ann_h, rev_h, lead_h = login("annotator"), login("reviewer"), login("lead")
        img = seeded.image_ids[1]
        detail = client.get(f"/api/images/{img}", headers=ann_h).json()
        body = {"version": detail["version"], "annotations": [{"class_id": 1, "geometry": SQUARE}]}
        saved = client.put(f"/api/images/{img}/annotations", json=body, headers=ann_h).json()
        aid = saved["annotations"][0]["id"]
        url = f"/api/images/{img}/annotations/{aid}/review"
        verdict = {"decision": "rejected", "reason": "too loose"}
        assert client.post(url, json=verdict, headers=ann_h).status_code == 403
        r = client.post(url, json={"decision": "rejected"}, headers=rev_h)
        assert r.status_code == 422 and "reason" in r.text
        r = client.post(url, json=verdict, headers=rev_h)
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["annotation"]["review_state"] == "rejected"
        assert out["image"]["status"] == "rejected" and out["image"]["rejected_for"] == "annotator1"
        waiting = client.get("/api/review/waiting", headers=ann_h).json()
        assert waiting["count"] == 1 and waiting["images"][0]["id"] == img
        step = client.get("/api/queue/next", headers=ann_h).json()
        assert step["image"]["id"] == img and step["rejections_waiting"] == 1
        assert client.get("/api/review/rates", headers=ann_h).status_code == 403
        rates = client.get("/api/review/rates", headers=lead_h).json()
        assert rates[0]["annotator"] == "annotator1" and rates[0]["instances_rejected"] == 1
        assert client.get("/api/review/side-unknown", headers=lead_h).json() == []
        tax = client.get("/api/taxonomy", headers=ann_h).json()
        assert "windscreen" in next(c for c in tax["classes"] if c["id"] == 40)["synonyms"]
    finally:
        reset_engine()
        reset_settings()
