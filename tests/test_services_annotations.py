"""The rules of an image save and a status change, without HTTP: who may change the
fake-damage verdict, who may set which status, and how predictions follow their annotations."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import seed_workspace

from db.models import Image, ImageStatus, Prediction, PredictionState, Role, User
from services import annotations as ann
from services.errors import Forbidden, Invalid
from services.projects import get_or_create_project

SQUARE = [{"exterior": [[10.0, 10.0], [60.0, 10.0], [60.0, 60.0], [10.0, 60.0]], "holes": []}]
MOVED = [{"exterior": [[0.0, 0.0], [70.0, 0.0], [70.0, 70.0]], "holes": []}]


@pytest.fixture
def seeded(tmp_path: Path):
    from core.config import reset_settings
    from db.session import reset_engine

    yield seed_workspace(tmp_path / "data", n_synthetic=1)
    reset_engine()
    reset_settings()


def _user(session, role: str) -> User:
    from services.users import get_user

    return get_user(session, f"{role}1")


def _store(session, image_id: int, attributes: dict) -> dict:
    """One annotation with ``attributes`` saved on the image; returns it as the API shows it."""
    image = session.get(Image, image_id)
    ann.save_annotations(
        session,
        image_id=image_id,
        expected_version=image.annotation_version,
        annotations=[{"class_id": 26, "geometry": SQUARE, "attributes": attributes}],
        author="setup",
    )
    return ann.annotation_dicts(session, image_id)[0]


NOTE = {"fake": True, "fake_note": "paint on a sticker"}


@pytest.mark.parametrize(
    "role,before,after,allowed",
    [
        # (role, attributes saved before, what the save sends (None: deletes it), allowed)
        ("annotator", {}, NOTE, False),
        ("annotator", NOTE, {}, False),
        ("annotator", NOTE, {"fake": True, "fake_note": "other"}, False),
        ("annotator", NOTE, {**NOTE, "severity": "severe"}, True),  # verdict kept
        ("annotator", NOTE, None, True),  # deleting a flagged annotation whole
        ("annotator", {"fake": False}, {}, True),  # false and absent are the same verdict
        ("annotator", {"severity": "minor"}, {"severity": "severe"}, True),
        ("reviewer", {}, NOTE, False),
        ("fraud_analyst", {}, NOTE, True),
        ("fraud_analyst", NOTE, {}, True),
        ("lead", NOTE, {}, True),
    ],
)
def test_fake_verdict_changes_need_the_fraud_role(seeded, role, before, after, allowed) -> None:
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        old = _store(s, image_id, before)
        incoming = [] if after is None else [{**old, "geometry": MOVED, "attributes": after}]
        user = _user(s, role)
        if allowed:
            ann.check_fake_edits(s, image_id, incoming, user)
        else:
            with pytest.raises(Forbidden, match="annotation 1: only fraud analysts"):
                ann.check_fake_edits(s, image_id, incoming, user)


def test_a_new_annotation_with_a_flag_needs_the_fraud_role(seeded) -> None:
    from db.session import session_scope

    new = {"class_id": 26, "geometry": SQUARE, "attributes": {"fake": True}}
    with session_scope() as s:
        with pytest.raises(Forbidden):
            ann.check_fake_edits(s, seeded.image_ids[0], [new], _user(s, "annotator"))
        ann.check_fake_edits(s, seeded.image_ids[0], [new], _user(s, "fraud_analyst"))


def test_a_refused_save_writes_nothing(seeded) -> None:
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        with pytest.raises(Forbidden):
            ann.save_annotations_as(
                s,
                _user(s, "annotator"),
                project=get_or_create_project(s),
                image_id=image_id,
                expected_version=0,
                annotations=[{"class_id": 26, "geometry": SQUARE, "attributes": NOTE}],
            )
        assert s.get(Image, image_id).annotation_version == 0
        assert ann.annotation_dicts(s, image_id) == []


@pytest.mark.parametrize(
    "geometry,needle",
    [
        ("square", "'geometry' must be a list of polygons"),
        ([{"exterior": [[0, 0], [float("nan"), 5], [5, 9]], "holes": []}], "NaN or infinite"),
        ([{"exterior": [[0, 0], [float("inf"), 5], [5, 9]], "holes": []}], "NaN or infinite"),
    ],
)
def test_malformed_geometry_is_invalid_before_any_rule(seeded, geometry, needle) -> None:
    from db.session import session_scope

    with session_scope() as s:
        with pytest.raises(Invalid, match=needle):
            ann.save_annotations_as(
                s,
                _user(s, "annotator"),
                project=get_or_create_project(s),
                image_id=seeded.image_ids[0],
                expected_version=0,
                annotations=[{"class_id": 26, "geometry": geometry, "attributes": NOTE}],
            )


def test_predictions_follow_the_annotations_made_from_them(seeded) -> None:
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    used, rejected, _ = seeded.prediction_ids
    from_pred = {
        "class_id": 26,
        "geometry": SQUARE,
        "source": "accepted_prediction",
        "prediction_id": used,
    }
    with session_scope() as s:
        ann.set_prediction_state(s, prediction_id=rejected, state="rejected")
        user, project = _user(s, "annotator"), get_or_create_project(s)
        detail = ann.save_annotations_as(
            s, user, project=project, image_id=image_id, expected_version=0, annotations=[from_pred]
        )
        assert detail["version"] == 1 and detail["status"] == "in_progress"
        states = {p["id"]: p["state"] for p in detail["predictions"]}
        assert states[used] == "accepted" and states[rejected] == "rejected"
        # an undo removes the annotation: the prediction is pending again, not lost
        ann.save_annotations_as(
            s, user, project=project, image_id=image_id, expected_version=1, annotations=[]
        )
        assert s.get(Prediction, used).state == PredictionState.pending
        assert s.get(Prediction, rejected).state == PredictionState.rejected


_ALL = set(ImageStatus)
_WORK = {ImageStatus.in_progress, ImageStatus.labelled}


@pytest.mark.parametrize(
    "role,may_set",
    [
        (Role.annotator, _WORK),
        (Role.fraud_analyst, _WORK),
        (Role.reviewer, _ALL),
        (Role.lead, _ALL),
        (Role.admin, _ALL),
    ],
)
def test_who_may_set_which_status(role: Role, may_set: set[ImageStatus]) -> None:
    user = User(username="someone", password_hash="-", role=role)
    for status in ImageStatus:
        if status in may_set:
            ann.check_status_permission(user, status)
            ann.check_status_permission(user, status.value)
        else:
            with pytest.raises(Forbidden, match=f"may not set status {status.value}"):
                ann.check_status_permission(user, status)


def test_an_unknown_status_is_invalid_not_forbidden() -> None:
    user = User(username="someone", password_hash="-", role=Role.annotator)
    with pytest.raises(Invalid, match="must be one of new, in_progress"):
        ann.check_status_permission(user, "done")


def test_set_status_as_checks_the_role_then_records_who(seeded) -> None:
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        project = get_or_create_project(s)
        with pytest.raises(Forbidden):
            ann.set_status_as(
                s, _user(s, "annotator"), project=project, image_id=image_id, status="reviewed"
            )
        assert s.get(Image, image_id).status == ImageStatus.new
        image = ann.set_status_as(
            s,
            _user(s, "reviewer"),
            project=project,
            image_id=image_id,
            status="rejected",
            comment="missed a dent",
        )
        assert image.status == ImageStatus.rejected and image.meta["status_by"] == "reviewer1"
        assert ann.image_summary(image)["review_comment"] == "missed a dent"
