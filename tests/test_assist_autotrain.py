"""Assistance that trains itself: the trigger after imports and saves, and the promotion rule
(only a new assist_net that beats the current back end on held-out box prompts is kept)."""

from __future__ import annotations

import logging
import time

import pytest
from sqlmodel import select

from db.models import Job, JobStatus, ModelVersion


def _jobs(session) -> list[Job]:
    return list(session.exec(select(Job).where(Job.kind == "assist_autotrain")).all())


def _settings(monkeypatch, **values):
    from core.config import get_settings

    for k, v in values.items():
        monkeypatch.setattr(get_settings(), k, v)


def _save_one_more(session, user, project) -> None:
    """``user`` saves the first photo's annotations with one more polygon (a small square)."""
    from db.models import Image
    from services.labelling.readers import annotation_dicts
    from services.labelling.saves import save_annotations_as

    image = session.exec(select(Image).order_by(Image.id)).first()
    anns = annotation_dicts(session, image.id)
    k = 3 * len(anns)
    square = [[k, k], [k + 30, k], [k + 30, k + 30], [k, k + 30]]
    anns.append({"class_id": anns[0]["class_id"], "geometry": [{"exterior": square, "holes": []}]})
    save_annotations_as(
        session,
        user,
        project=project,
        image_id=image.id,
        expected_version=image.annotation_version,
        annotations=anns,
    )


@pytest.fixture
def lead(db_session, labelled_project):
    from services.accounts.users import create_user

    return create_user(db_session, username="lead", password="long enough", role="admin")


def test_imports_and_saves_queue_one_job_once_due(
    db_session,
    labelled_project,
    lead,
    datasets_dir,
    tmp_path,
    monkeypatch,
):
    from models.datasets import DSMLR_LABEL_MAP
    from services.data_io.imports import import_coco
    from services.training import assist_training

    db_session.commit()
    n = assist_training.labelled_polygons(db_session, labelled_project)
    assert n > 10 and _jobs(db_session) == []  # the default threshold (200) is far off

    # below the threshold: one COUNT and nothing waits for the commit
    _settings(monkeypatch, assist_autotrain_min_polygons=n + 5)
    assert assist_training.POLICY.worth_checking(db_session, labelled_project) is False
    db_session.commit()
    assert _jobs(db_session) == []
    assert assist_training.autotrain_summary(db_session, labelled_project) == (
        f"Assist net auto-training: {n} labelled polygons, next training at {n + 5}"
    )

    # an import (here a re-import, which changes nothing) past the threshold: queued on commit
    _settings(monkeypatch, assist_autotrain_min_polygons=10)
    root = datasets_dir / "car_parts_dsmlr" / "trainingset"
    import_coco(
        db_session,
        labelled_project,
        tmp_path / "sub.json",
        images_dir=root / "JPEGImages",
        label_map={**DSMLR_LABEL_MAP, "_background_": "hood"},
    )
    assert _jobs(db_session) == []  # not before the import's transaction commits
    db_session.commit()
    jobs = _jobs(db_session)
    assert len(jobs) == 1 and jobs[0].params == {"polygons": n}
    assert jobs[0].status == JobStatus.queued and jobs[0].created_by == "auto"

    # a save while that job is queued (and then running) queues no second one
    _save_one_more(db_session, lead, labelled_project)
    db_session.commit()
    jobs[0].status = JobStatus.running
    db_session.add(jobs[0])
    db_session.commit()
    _save_one_more(db_session, lead, labelled_project)
    db_session.commit()
    assert len(_jobs(db_session)) == 1

    # once it is over, the count must grow by the growth share since it was queued
    jobs[0].status = JobStatus.completed
    db_session.add(jobs[0])
    db_session.commit()
    _save_one_more(db_session, lead, labelled_project)
    db_session.commit()
    assert len(_jobs(db_session)) == 1  # n + 3 < 1.5 n
    _settings(monkeypatch, assist_autotrain_growth=0.01)
    _save_one_more(db_session, lead, labelled_project)
    db_session.commit()
    jobs = _jobs(db_session)
    assert len(jobs) == 2 and jobs[1].params == {"polygons": n + 4}

    # a save that rolls back queues nothing
    jobs[1].status = JobStatus.failed
    db_session.add(jobs[1])
    db_session.commit()
    _save_one_more(db_session, lead, labelled_project)
    db_session.rollback()
    _save_one_more(db_session, lead, labelled_project)
    db_session.commit()
    assert [j.params["polygons"] for j in _jobs(db_session)] == [n, n + 4, n + 5]

    # switched off: nothing; and a failing check never fails the save
    _settings(monkeypatch, assist_autotrain=False)
    _save_one_more(db_session, lead, labelled_project)
    db_session.commit()
    _settings(monkeypatch, assist_autotrain=True)

    def broken(*a, **k):
        raise RuntimeError("database went away")

    monkeypatch.setattr(assist_training, "labelled_polygons", broken)
    _save_one_more(db_session, lead, labelled_project)
    db_session.commit()
    jobs = _jobs(db_session)
    assert len(jobs) == 3
    assert assist_training.autotrain_summary(db_session, labelled_project) == (
        f"Assist net auto-training: job {jobs[2].id} queued"
    )


def _context(project_id: int):
    from db.session import session_scope
    from jobs.context import JobContext

    with session_scope() as s:
        job = Job(
            kind="assist_autotrain", params={}, status=JobStatus.running, project_id=project_id
        )
        s.add(job)
        s.flush()
        job_id = job.id
    return JobContext(job_id, {}, logging.getLogger("test"))


def test_the_new_net_is_kept_and_promoted_only_when_it_beats_the_back_end(
    db_session,
    labelled_project,
    monkeypatch,
):
    from core.config import get_settings
    from jobs.service import validate_params
    from jobs.tasks import run_assist_autotrain
    from services.training import assist_training
    from services.training.registry import current

    db_session.commit()
    assert validate_params("assist_autotrain", {"polygons": 3}) == {"polygons": 3}
    measured: list[str] = []
    ious = iter([0.60, 0.50, 0.55, 0.60])  # (new, incumbent) per run

    def figures() -> dict[str, float]:
        return {"parts": 7, "mean_iou": next(ious), "median_iou": 0.0, "box_mean_iou": 0.0}

    def net(self, data, progress=None, max_parts=None):
        measured.append("assist_net")
        return figures()

    def backend(cls, backend, data, progress=None):
        measured.append(backend.backend)
        return figures()

    from models.assist.learned import AssistNetStage

    monkeypatch.setattr(AssistNetStage, "evaluate", net)
    monkeypatch.setattr(AssistNetStage, "measure_backend", classmethod(backend))
    n = assist_training.labelled_polygons(db_session, labelled_project)

    # against GrabCut (no assist_net yet): better, so registered and promoted
    out = run_assist_autotrain(_context(labelled_project.id), config="tiny", device="cpu")
    assert out["promoted"] is True and out["version"]["name"] == "assist_net-v1"
    assert (out["mean_iou"], out["incumbent"], out["incumbent_mean_iou"]) == (0.6, "grabcut", 0.5)
    with_v1 = db_session.exec(select(ModelVersion)).all()
    assert len(with_v1) == 1 and with_v1[0].promoted
    assert with_v1[0].train_snapshot["polygons"] == n
    assert with_v1[0].metrics["holdout"]["mean_iou"] == 0.6
    assert measured == ["assist_net", "grabcut"]

    # against the promoted assist_net-v1: worse, so not kept and v1 stays promoted
    out = run_assist_autotrain(_context(labelled_project.id), config="tiny", device="cpu")
    assert out["promoted"] is False and out["version"] is None
    assert (out["incumbent"], out["incumbent_mean_iou"]) == ("assist_net-v1", 0.6)
    assert measured[2:] == ["assist_net", "assist_net"]  # the new net, then v1 measured again
    db_session.expire_all()
    assert [mv.name for mv in db_session.exec(select(ModelVersion)).all()] == ["assist_net-v1"]
    assert current(db_session, "assist_net").name == "assist_net-v1"
    assert not list((get_settings().artifacts_dir / ".tmp").glob("*"))
    assert [p.name for p in (get_settings().artifacts_dir / "assist_net").iterdir()] == [
        "assist_net-v1.pt"
    ]


def test_a_real_tiny_run_measures_both_back_ends_on_the_same_parts(
    db_session,
    labelled_project,
    capsys,
):
    from jobs.tasks import run_assist_autotrain
    from services.training.registry import current

    db_session.commit()
    t0 = time.perf_counter()
    out = run_assist_autotrain(_context(labelled_project.id), config="tiny", device="cpu")
    seconds = time.perf_counter() - t0
    assert out["parts"] > 0 and 0 <= out["mean_iou"] <= 1 and 0 <= out["incumbent_mean_iou"] <= 1
    assert out["incumbent"] == "grabcut"
    assert out["promoted"] == (out["mean_iou"] > out["incumbent_mean_iou"])
    db_session.expire_all()
    promoted = current(db_session, "assist_net")
    assert (promoted is not None) == out["promoted"]
    with capsys.disabled():
        print(
            f"\nassist autotrain, tiny, {out['polygons']} polygons: job {seconds:.1f}s "
            f"(training {out['train_seconds']:.1f}s); {out['parts']} held-out parts, "
            f"assist_net {out['mean_iou']:.3f} vs grabcut {out['incumbent_mean_iou']:.3f}"
        )
