"""The rules of an image save and a status change, without HTTP: who may change the
fake-damage verdict, who may set which status, and how predictions follow their annotations."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_helpers import seed_workspace

from db.models import Image, ImageStatus, Prediction, PredictionState, Role, User
from services.accounts.projects import get_or_create_project
from services.errors import Forbidden, Invalid
from services.labelling import fake_edits, predictions, readers, saves, statuses

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
    from services.accounts.users import get_user

    return get_user(session, f"{role}1")


def _store(session, image_id: int, attributes: dict) -> dict:
    """One annotation with ``attributes`` saved on the image; returns it as the API shows it."""
    image = session.get(Image, image_id)
    saves.save_annotations(
        session,
        image_id=image_id,
        expected_version=image.annotation_version,
        annotations=[{"class_id": 26, "geometry": SQUARE, "attributes": attributes}],
        author="setup",
    )
    return readers.annotation_dicts(session, image_id)[0]


NOTE = {"fake": True, "fake_note": "paint on a sticker"}


@pytest.mark.parametrize(
    "role,before,after,allowed",
    [
        # (role, attributes saved before, what the save sends (None: deletes it), allowed)
        ("annotator", {}, NOTE, False),
        ("annotator", NOTE, {}, False),
        ("annotator", NOTE, {"fake": True, "fake_note": "other"}, False),
        ("annotator", NOTE, {**NOTE, "severity": "severe"}, True),  # verdict kept
        ("annotator", NOTE, None, False),  # deleting a flagged annotation removes the flag
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
            fake_edits.check_fake_edits(s, image_id, incoming, user)
        else:
            with pytest.raises(Forbidden, match="only fraud analysts"):
                fake_edits.check_fake_edits(s, image_id, incoming, user)


def test_a_new_annotation_with_a_flag_needs_the_fraud_role(seeded) -> None:
    from db.session import session_scope

    new = {"class_id": 26, "geometry": SQUARE, "attributes": {"fake": True}}
    with session_scope() as s:
        with pytest.raises(Forbidden):
            fake_edits.check_fake_edits(s, seeded.image_ids[0], [new], _user(s, "annotator"))
        fake_edits.check_fake_edits(s, seeded.image_ids[0], [new], _user(s, "fraud_analyst"))


def test_deleting_a_flag_and_adding_it_back_unflagged_in_one_save_is_refused(seeded) -> None:
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        old = _store(s, image_id, NOTE)
        readded = {"class_id": old["class_id"], "geometry": old["geometry"], "attributes": {}}
        with pytest.raises(Forbidden, match="only fraud analysts may delete it"):
            fake_edits.check_fake_edits(s, image_id, [readded], _user(s, "annotator"))
        fake_edits.check_fake_edits(s, image_id, [readded], _user(s, "fraud_analyst"))


@pytest.mark.parametrize("new_class", [1, 28])  # a damage class, another fake class
def test_relabelling_a_fake_damage_class_needs_the_fraud_role(seeded, new_class) -> None:
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        image = s.get(Image, image_id)
        saves.save_annotations(
            s,
            image_id=image_id,
            expected_version=image.annotation_version,
            annotations=[{"class_id": 27, "geometry": SQUARE}],  # fakemud
            author="fraud",
        )
        old = readers.annotation_dicts(s, image_id)[0]
        relabelled = [{**old, "class_id": new_class}]
        with pytest.raises(Forbidden, match="only fraud analysts may change its class"):
            fake_edits.check_fake_edits(s, image_id, relabelled, _user(s, "annotator"))
        fake_edits.check_fake_edits(s, image_id, relabelled, _user(s, "lead"))
        # the outline of a flagged instance may still be refined
        fake_edits.check_fake_edits(
            s, image_id, [{**old, "geometry": MOVED}], _user(s, "annotator")
        )


def test_an_annotator_cannot_draw_a_fake_damage_class(seeded) -> None:
    from db.session import session_scope

    with session_scope() as s, pytest.raises(Forbidden, match="may flag fake damage"):
        fake_edits.check_fake_edits(
            s, seeded.image_ids[0], [{"class_id": 29, "geometry": SQUARE}], _user(s, "annotator")
        )


def _save_as(s, role: str, image_id: int, annotations: list[dict]) -> dict:
    image = s.get(Image, image_id)
    return saves.save_annotations_as(
        s,
        _user(s, role),
        project=get_or_create_project(s),
        image_id=image_id,
        expected_version=image.annotation_version,
        annotations=annotations,
    )


def test_an_annotator_editing_a_reviewed_photo_sends_it_back_to_labelled(seeded) -> None:
    from sqlmodel import select

    from db.models import AnnotationRevision
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        _save_as(s, "annotator", image_id, [{"class_id": 26, "geometry": SQUARE}])
        statuses.set_status(s, image_id=image_id, status="reviewed", author="reviewer1")
        kept = readers.annotation_dicts(s, image_id)
        _save_as(s, "reviewer", image_id, [{**kept[0], "geometry": MOVED}])
        assert s.get(Image, image_id).status == ImageStatus.reviewed  # a reviewer's fix stays
        kept = readers.annotation_dicts(s, image_id)
        _save_as(s, "annotator", image_id, [{**kept[0], "geometry": SQUARE}])
        assert s.get(Image, image_id).status == ImageStatus.labelled
        last = s.exec(
            select(AnnotationRevision)
            .where(AnnotationRevision.image_id == image_id)
            .order_by(AnnotationRevision.revision.desc())
        ).first()
        assert "reviewed -> labelled" in last.reason and last.author == "annotator1"


def test_an_unchanged_save_writes_no_revision(seeded) -> None:
    from sqlmodel import func, select

    from db.models import AnnotationRevision
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        first = _save_as(s, "annotator", image_id, [{"class_id": 26, "geometry": SQUARE}])
        again = _save_as(s, "annotator", image_id, first["annotations"])
        assert again["version"] == first["version"]
        count = s.exec(select(func.count()).select_from(AnnotationRevision)).one()
        assert count == 1


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("class_id", 1.5, "class_id must be a whole number"),
        ("class_id", True, "class_id must be a whole number"),
        ("class_id", 2**70, "class_id must be between"),
        ("prediction_id", 2**70, "prediction_id must be between"),
        ("prediction_id", 999, "prediction_id 999 is not a prediction of image"),
        ("id", "3", "id must be a whole number"),
    ],
)
def test_ids_are_whole_numbers_in_range(seeded, field, value, needle) -> None:
    from db.session import session_scope

    with session_scope() as s, pytest.raises(Invalid, match=needle):
        _save_as(
            s,
            "annotator",
            seeded.image_ids[0],
            [{"class_id": 26, "geometry": SQUARE, field: value}],
        )


def test_size_limits_are_settings(seeded, monkeypatch) -> None:
    from core.config import get_settings
    from db.session import session_scope

    settings = get_settings()
    monkeypatch.setattr(settings, "max_vertices_per_polygon", 4)
    monkeypatch.setattr(settings, "max_polygons_per_image", 2)
    monkeypatch.setattr(settings, "max_attribute_chars", 64)
    monkeypatch.setattr(settings, "max_comment_chars", 10)
    five = [{"exterior": [[0, 0], [9, 0], [9, 9], [5, 12], [0, 9]], "holes": []}]
    cases = [
        ([{"class_id": 26, "geometry": five}], "more than the limit of 4"),
        ([{"class_id": 26, "geometry": SQUARE}] * 3, "more than the limit of 2"),
        (
            [{"class_id": 26, "geometry": SQUARE, "attributes": {"x": "y" * 100}}],
            "PANELBEATER_MAX_ATTRIBUTE_CHARS",
        ),
    ]
    with session_scope() as s:
        for annotations, needle in cases:
            with pytest.raises(Invalid, match=needle):
                _save_as(s, "annotator", seeded.image_ids[0], annotations)
        with pytest.raises(Invalid, match="PANELBEATER_MAX_COMMENT_CHARS"):
            statuses.set_status(
                s, image_id=seeded.image_ids[0], status="rejected", author="r", comment="x" * 11
            )


def test_a_refused_save_writes_nothing(seeded) -> None:
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        with pytest.raises(Forbidden):
            saves.save_annotations_as(
                s,
                _user(s, "annotator"),
                project=get_or_create_project(s),
                image_id=image_id,
                expected_version=0,
                annotations=[{"class_id": 26, "geometry": SQUARE, "attributes": NOTE}],
            )
        assert s.get(Image, image_id).annotation_version == 0
        assert readers.annotation_dicts(s, image_id) == []


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
            saves.save_annotations_as(
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
        predictions.set_prediction_state(s, prediction_id=rejected, state="rejected")
        user, project = _user(s, "annotator"), get_or_create_project(s)
        detail = saves.save_annotations_as(
            s, user, project=project, image_id=image_id, expected_version=0, annotations=[from_pred]
        )
        assert detail["version"] == 1 and detail["status"] == "in_progress"
        states = {p["id"]: p["state"] for p in detail["predictions"]}
        assert states[used] == "accepted" and states[rejected] == "rejected"
        # an undo removes the annotation: the prediction is pending again, not lost
        saves.save_annotations_as(
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
            statuses.check_status_permission(user, status)
            statuses.check_status_permission(user, status.value)
        else:
            with pytest.raises(Forbidden, match=f"may not set status {status.value}"):
                statuses.check_status_permission(user, status)


def test_an_unknown_status_is_invalid_not_forbidden() -> None:
    user = User(username="someone", password_hash="-", role=Role.annotator)
    with pytest.raises(Invalid, match="must be one of new, in_progress"):
        statuses.check_status_permission(user, "done")


def test_set_status_as_checks_the_role_then_records_who(seeded) -> None:
    from db.session import session_scope

    image_id = seeded.image_ids[0]
    with session_scope() as s:
        project = get_or_create_project(s)
        with pytest.raises(Forbidden):
            statuses.set_status_as(
                s, _user(s, "annotator"), project=project, image_id=image_id, status="reviewed"
            )
        assert s.get(Image, image_id).status == ImageStatus.new
        image = statuses.set_status_as(
            s,
            _user(s, "reviewer"),
            project=project,
            image_id=image_id,
            status="rejected",
            comment="missed a dent",
        )
        assert image.status == ImageStatus.rejected and image.meta["status_by"] == "reviewer1"
        assert readers.image_summary(image)["review_comment"] == "missed a dent"
