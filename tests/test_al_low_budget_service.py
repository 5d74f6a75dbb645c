"""The low-budget strategies through the selection service: the pool carries labelled
class counts from the annotations and the round index from completed round jobs."""

from __future__ import annotations

import pytest
from sqlmodel import select
from test_al_service import BOX, add_version, make_images, predict

from db.models import Annotation, ImageScore, ImageStatus, Job, JobStatus
from services.training.selection import load_pool
from services.training.selection import select as al_select


def test_pool_counts_labelled_classes_and_completed_rounds(db_session, project):
    ims = make_images(db_session, project, 4)
    ims[0].status = ImageStatus.labelled
    for cid in (3, 3, 7):
        db_session.add(Annotation(image_id=ims[0].id, class_id=cid, group="part", geometry=BOX))
    db_session.add(
        Annotation(image_id=ims[0].id, class_id=9, group="part", geometry=BOX, deleted=True)
    )
    db_session.add(
        Annotation(image_id=ims[1].id, class_id=5, group="part", geometry=BOX)
    )  # not labelled
    for status in (JobStatus.completed, JobStatus.completed, JobStatus.failed):
        db_session.add(Job(project_id=project.id, kind="round", status=status))
    db_session.flush()
    pool = load_pool(db_session, project)
    assert pool.arrays.labelled_counts == {3: 2, 7: 1}
    assert pool.arrays.round_index == 2


@pytest.mark.parametrize("strategy", ["maxherding", "typiclust", "stratified_entropy", "auto"])
def test_new_strategies_select_and_store_their_name(db_session, project, strategy):
    ims = make_images(db_session, project, 10)
    mv = add_version(db_session)
    for i, im in enumerate(ims):
        c = 0.6 + 0.03 * i
        predict(
            db_session, mv, im, [c, 1 - c], emb=[float(i % 3) * 10, float(i)], class_id=40 + i % 2
        )
    ims[0].status = ImageStatus.labelled
    db_session.flush()
    picks = al_select(db_session, project, strategy=strategy, k=3)
    assert len(picks) == 3 and ims[0].id not in {p[0] for p in picks}
    stored = len(db_session.exec(select(ImageScore).where(ImageScore.strategy == strategy)).all())
    assert stored == 3
