"""The store on SQLite and PostgreSQL: migrations, locking, history, soft deletes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import inspect, text
from sqlmodel import select

from db.models import Annotation, AnnotationRevision, Image, ImageStatus
from db.session import get_engine, session_scope
from services.accounts.projects import get_or_create_project
from services.errors import VersionConflict
from services.labelling.readers import annotation_dicts
from services.labelling.saves import save_annotations
from services.labelling.statuses import set_status
from services.labelling.validation import AnnotationInvalid

SQUARE = [
    {
        "exterior": [[10, 10], [50, 10], [50, 50], [10, 50]],
        "holes": [[[20, 20], [30, 20], [30, 30]]],
    }
]
TRIANGLE = [{"exterior": [[60, 60], [90, 60], [60, 90]]}]


def add_image(tmp_path, name="a.png", size=(100, 80)) -> int:
    path = tmp_path / name
    PILImage.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path)
    with session_scope() as s:
        project = get_or_create_project(s)
        img = Image(
            project_id=project.id,
            path=str(path),
            file_name=name,
            sha256=name,
            width=size[0],
            height=size[1],
        )
        s.add(img)
        s.flush()
        return img.id


def test_migrations_create_every_table(any_store):
    names = set(inspect(get_engine()).get_table_names())
    expected = {
        "project",
        "user",
        "apitoken",
        "image",
        "annotation",
        "annotationrevision",
        "modelversion",
        "prediction",
        "imageprediction",
        "imagescore",
        "job",
        "alembic_version",
    }
    assert expected <= names


def test_models_and_migrations_agree(any_store):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    with get_engine().connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == [], f"db/models.py changed without a migration: {diff}"


def test_sqlite_runs_in_wal_mode(store):
    with get_engine().connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert (store / "panelbeater.db").exists()


def test_save_bumps_version_keeps_history_and_soft_deletes(any_store, tmp_path):
    image_id = add_image(tmp_path)
    with session_scope() as s:
        v1 = save_annotations(
            s,
            image_id=image_id,
            expected_version=0,
            author="ann",
            annotations=[
                {"class_id": 1, "geometry": SQUARE, "attributes": {"severity": "minor"}},
                {"class_name": "hood", "geometry": TRIANGLE},
            ],
        )
    assert v1 == 1
    with session_scope() as s:
        current = annotation_dicts(s, image_id)
        assert [a["class_id"] for a in current] == [1, 36]
        assert current[0]["geometry"][0]["holes"], "holes must survive a save"
        keep = {**current[0], "class_id": 2}
        v2 = save_annotations(
            s, image_id=image_id, expected_version=1, author="ann", annotations=[keep]
        )
    assert v2 == 2
    with session_scope() as s:
        rows = s.exec(
            select(Annotation).where(Annotation.image_id == image_id).order_by(Annotation.id)
        ).all()
        assert [(r.class_id, r.deleted, r.version) for r in rows] == [(2, False, 2), (36, True, 2)]
        revisions = s.exec(
            select(AnnotationRevision)
            .where(AnnotationRevision.image_id == image_id)
            .order_by(AnnotationRevision.revision)
        ).all()
        assert [len(r.annotations) for r in revisions] == [0, 2]
        assert s.get(Image, image_id).status == ImageStatus.in_progress


def test_stale_save_is_refused_with_both_versions(any_store, tmp_path):
    image_id = add_image(tmp_path)
    with session_scope() as s:
        save_annotations(
            s,
            image_id=image_id,
            expected_version=0,
            author="a",
            annotations=[{"class_id": 1, "geometry": SQUARE}],
        )
    with pytest.raises(VersionConflict) as err, session_scope() as s:
        save_annotations(
            s,
            image_id=image_id,
            expected_version=0,
            author="b",
            annotations=[{"class_id": 3, "geometry": TRIANGLE}],
        )
    assert err.value.current_version == 1
    assert [a["class_id"] for a in err.value.current_annotations] == [1]
    assert "saved by someone else" in str(err.value)
    with session_scope() as s:
        assert [a["class_id"] for a in annotation_dicts(s, image_id)] == [1]


def test_concurrent_sessions_only_one_wins(any_store, tmp_path):
    image_id = add_image(tmp_path)
    from sqlmodel import Session

    s1, s2 = Session(get_engine()), Session(get_engine())
    save_annotations(
        s1,
        image_id=image_id,
        expected_version=0,
        author="a",
        annotations=[{"class_id": 1, "geometry": SQUARE}],
    )
    s1.commit()
    with pytest.raises(VersionConflict):
        save_annotations(s2, image_id=image_id, expected_version=0, author="b", annotations=[])
    s1.close()
    s2.close()


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"class_id": 1, "geometry": [{"exterior": [[0, 0], [1, 1]]}]}, "at least 3 points"),
        ({"class_id": 999, "geometry": SQUARE}, "not in the taxonomy"),
        ({"class_name": "wing", "geometry": SQUARE}, "not in the taxonomy"),
        (
            {"class_id": 1, "geometry": [{"exterior": [[0, 0], [1, float("nan")], [2, 2]]}]},
            "finite",
        ),
        ({"class_id": 1, "geometry": SQUARE, "attributes": {"severity": "huge"}}, "severity"),
        ({"class_id": 1, "geometry": SQUARE, "attributes": {"part_id": 1}}, "not a part"),
    ],
)
def test_invalid_annotation_writes_nothing(any_store, tmp_path, bad, message):
    image_id = add_image(tmp_path)
    with pytest.raises(AnnotationInvalid, match=message), session_scope() as s:
        save_annotations(
            s,
            image_id=image_id,
            expected_version=0,
            author="a",
            annotations=[{"class_id": 1, "geometry": SQUARE}, bad],
        )
    with session_scope() as s:
        assert annotation_dicts(s, image_id) == []
        assert s.get(Image, image_id).annotation_version == 0


def test_reject_needs_comment(any_store, tmp_path):
    from services.errors import Invalid

    image_id = add_image(tmp_path)
    with pytest.raises(Invalid, match="needs a comment"), session_scope() as s:
        set_status(s, image_id=image_id, status="rejected", author="rev")
    with session_scope() as s:
        img = set_status(
            s, image_id=image_id, status="rejected", author="rev", comment="missed the dent"
        )
        assert img.review_comment == "missed the dent"
