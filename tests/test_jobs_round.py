"""An end-to-end mini retraining round on the CPU, on real photos, through a real worker:
import -> snapshot -> tiny training -> held-out evaluation -> promotion -> pre-annotation -> selection."""

from __future__ import annotations

import json
import time

import pytest
from conftest import requires_datasets
from sqlmodel import func, select

pytestmark = [requires_datasets, pytest.mark.timeout(300), pytest.mark.slow]


def predicted_images(session, version) -> int:
    """How many photos this model version has pre-annotated."""
    from db.models import ImagePrediction

    query = select(func.count()).select_from(ImagePrediction)
    return session.exec(query.where(ImagePrediction.model_version_id == version.id)).one()


@pytest.fixture
def round_project(store, datasets_dir, tmp_path):
    """Eight dsmlr photos with their part polygons: five labelled, three still to label."""
    from db.models import Image
    from db.session import session_scope
    from models.datasets import DSMLR_LABEL_MAP
    from services.accounts.projects import get_or_create_project
    from services.data_io.imports import import_coco
    from services.labelling.statuses import set_status

    root = datasets_dir / "car_parts_dsmlr" / "trainingset"
    data = json.loads((root / "annotations.json").read_text())
    annotated = {a["image_id"] for a in data["annotations"]}
    keep = [im for im in data["images"] if im["id"] in annotated][:8]
    ids = {im["id"] for im in keep}
    sub = {
        "images": keep,
        "categories": data["categories"],
        "annotations": [a for a in data["annotations"] if a["image_id"] in ids],
    }
    (tmp_path / "sub.json").write_text(json.dumps(sub))
    with session_scope() as s:
        project = get_or_create_project(s)
        report = import_coco(
            s,
            project,
            tmp_path / "sub.json",
            images_dir=root / "JPEGImages",
            label_map={**DSMLR_LABEL_MAP, "_background_": "hood"},
            status="new",  # five set labelled below, three left to label
        )
        assert report.images_added == 8
        for im in s.exec(select(Image).order_by(Image.id)).all()[:5]:
            set_status(s, image_id=im.id, status="labelled", author="t")
    return store


def test_mini_round_trains_evaluates_promotes_preannotates_and_reselects(
    round_project, tmp_path, bar_off
):
    from core.config import get_settings
    from db.models import Image, ImageScore, Job, ModelVersion
    from db.session import session_scope
    from jobs.service import start_round
    from jobs.worker import start_worker_process
    from services.accounts.projects import get_or_create_project
    from services.labelling.images import queue_ids

    with session_scope() as s:
        project = get_or_create_project(s)
        before = queue_ids(s, project.id)
        job_id = start_round(
            s,
            stages=["albert", "assist_net"],
            epochs=1,
            k=2,
            strategy="hybrid",
            device="cpu",
            created_by="test",
        ).id
    worker = start_worker_process(get_settings(), max_delay=0.2, log_file=tmp_path / "worker.log")
    stages_seen = set()
    try:
        t0 = time.time()
        while time.time() - t0 < 240:
            with session_scope() as s:
                job = s.get(Job, job_id)
                stages_seen.add(job.stage)
                if job.status.value in ("completed", "failed", "cancelled"):
                    break
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job.status.value == "completed", (
            f"{job.error}\n{(tmp_path / 'worker.log').read_text()[-3000:]}"
        )
        result = job.result
        assert any(st and st.startswith("training albert") for st in stages_seen)
        # snapshot: the labelled photos outside the held-out split (the importer already chose
        # that split, so the round keeps it as it is)
        images = s.exec(select(Image)).all()
        held = [im for im in images if im.split == "test"]
        train = [im for im in images if im.split != "test" and im.status.value == "labelled"]
        assert result["heldout"] == len(held) >= 1 and result["labelled"] == len(train) >= 3
        mv = s.exec(select(ModelVersion).where(ModelVersion.stage == "albert")).one()
        assert result["stages"]["albert"]["promoted"] and mv.promoted
        assert "holdout" in mv.metrics
        assert mv.train_snapshot["image_ids"] == sorted(im.id for im in train)
        assert predicted_images(s, mv) == 8
        # the click/box assist net is trained and measured on held-out parts against GrabCut,
        # which it replaces: promoted (and then used by the workspace) only when it beats it;
        # a first version that loses is not kept. It pre-annotates nothing either way.
        anet_out = result["stages"]["assist_net"]
        reason = anet_out["reason"]
        assert reason.startswith("holdout.mean_iou: assist_net-v1 ") and " vs grabcut " in reason
        net_iou, grabcut_iou = (float(x) for x in reason.split(";")[0].split()[2::3])
        assert anet_out["promoted"] == (net_iou > grabcut_iou)
        assert 0.0 <= net_iou <= 1.0 and "assist_net" not in result["predicted"]
        from services.training.assist import project_assistant

        anet = s.exec(select(ModelVersion).where(ModelVersion.stage == "assist_net")).first()
        if anet_out["promoted"]:
            assert anet.promoted and predicted_images(s, anet) == 0
            assert project_assistant(s).version == anet.name
        else:
            assert anet is None and "not kept" in reason
            assert project_assistant(s).backend == "grabcut"
        steps = [st["step"] for st in result["steps"]]
        assert steps == [
            "snapshot",
            "train",
            "evaluate",
            "promote",
            "train",
            "evaluate",
            "promote",
            "pre-annotate",
            "pre-annotate",
            "select",
            "select",
        ]
        sel = result["selection"]
        # a model-driven choice (the untrained-ish tiny model may find no instances, so hybrid
        # can fall back to k-center on its image embeddings), never the random fallback
        assert sel["strategy"] in ("hybrid", "uncertainty", "kcenter"), sel
        assert len(sel["selected"]) == 2
        picked = [i for i, _ in sel["selected"]]
        scores = s.exec(select(ImageScore).where(ImageScore.strategy == sel["strategy"])).all()
        assert sorted(r.image_id for r in scores) == sorted(picked)
        after = queue_ids(s, get_or_create_project(s).id)
        assert after[:2] == picked and after != before
        assert "snapshot" in open(job.log_path).read()


def test_worker_killed_mid_training_leaves_registry_unchanged_and_retry_registers(
    round_project, tmp_path
):
    import os
    import signal

    from core.config import get_settings
    from db.models import Job, ModelVersion
    from db.session import session_scope
    from jobs.service import create_job, retry_job
    from jobs.worker import start_worker_process

    def state():
        with session_scope() as s:
            j = s.get(Job, job_id)
            n = s.exec(select(func.count()).select_from(ModelVersion)).one()
            return j.status.value, j.epoch, j.error, n, j.attempts

    def wait(cond, timeout=150):
        t0 = time.time()
        while time.time() - t0 < timeout:
            st = state()
            if cond(st):
                return st
            time.sleep(0.1)
        raise AssertionError(f"timed out; last state {st}")

    with session_scope() as s:
        job_id = create_job(s, "train", {"stage": "albert", "epochs": 4, "device": "cpu"}).id
    log = tmp_path / "worker.log"
    w = start_worker_process(get_settings(), max_delay=0.2, log_file=log)
    procs = [w]
    try:
        # killed after its first epoch, well before the artifact is complete
        wait(lambda st: st[0] == "running" and st[1] is not None)
        os.kill(w.pid, signal.SIGKILL)
        w.wait(timeout=10)
        procs.append(start_worker_process(get_settings(), max_delay=0.2, log_file=log))
        st = wait(lambda st: st[0] == "failed", timeout=30)
        assert "died" in st[2] and st[3] == 0  # no version registered
        assert not list(get_settings().artifacts_dir.glob("albert/*"))
        assert not list((get_settings().artifacts_dir / ".tmp").glob("*"))
        with session_scope() as s:
            retry_job(s, job_id)
        st = wait(lambda st: st[0] in ("completed", "failed"))
        assert st[0] == "completed" and st[3] == 1 and st[4] == 2, st
        assert [p.name for p in get_settings().artifacts_dir.glob("albert/*")] == ["albert-v1.pt"]
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=20)


def _running_job(kind: str) -> int:
    from db.models import Job, JobStatus
    from db.session import session_scope

    with session_scope() as s:
        job = Job(kind=kind, params={}, status=JobStatus.running)
        s.add(job)
        s.flush()
        return job.id


def _context(kind: str):
    import logging

    from jobs.context import JobContext

    return JobContext(_running_job(kind), {}, logging.getLogger("test"))


def test_every_stage_of_a_round_trains_on_the_one_snapshot(round_project, monkeypatch):
    """A photo labelled and a polygon moved while the first stage trains change neither what
    the second stage learns from nor the snapshot it records."""
    import services.training.model_runs as runs
    from db.models import Image, ModelVersion
    from db.session import session_scope
    from jobs.rounds import run_round
    from services.labelling.readers import annotation_dicts
    from services.labelling.saves import save_annotations
    from services.labelling.statuses import set_status

    trained_on: dict[str, dict[int, int]] = {}
    real_training_set = runs.training_set
    real_evaluate = runs.evaluate_stage

    def recording_training_set(session, project, split_filter, snapshot=None):
        data = real_training_set(session, project, split_filter, snapshot)
        if snapshot is not None:  # training, not the held-out evaluation
            trained_on[f"stage {len(trained_on) + 1}"] = {
                r.meta["image_id"]: len(r.instances) for r in data.records
            }
        return data

    def edit_then_evaluate(session, project, stage, **kw):
        if len(trained_on) == 1:  # between the first stage's training and the second's
            with session_scope() as s:
                images = s.exec(select(Image).order_by(Image.id)).all()
                spare = next(im for im in images if im.status.value == "new" and im.split != "test")
                set_status(s, image_id=spare.id, status="labelled", author="late")
                edited = next(iter(trained_on["stage 1"]))
                im = s.get(Image, edited)
                save_annotations(
                    s,
                    image_id=edited,
                    expected_version=im.annotation_version,
                    annotations=annotation_dicts(s, edited)[:1],
                    author="late",
                )
        return real_evaluate(session, project, stage, **kw)

    monkeypatch.setattr(runs, "training_set", recording_training_set)
    monkeypatch.setattr(runs, "evaluate_stage", edit_then_evaluate)
    # forced: a first assist_net that loses to GrabCut is not kept, and both versions are
    # needed here to compare their snapshots
    out = run_round(
        _context("round"),
        stages=["assist_net", "yolo_seg"],
        epochs=1,
        k=1,
        device="cpu",
        force_promote=True,
    )
    assert set(out["stages"]) == {"assist_net", "yolo_seg"}
    assert trained_on["stage 1"] == trained_on["stage 2"]
    with session_scope() as s:
        snaps = [mv.train_snapshot for mv in s.exec(select(ModelVersion)).all()]
    assert len(snaps) == 2 and snaps[0] == snaps[1]
    assert sorted(trained_on["stage 2"]) == snaps[0]["image_ids"]


def test_an_evaluate_job_reports_its_progress(round_project):
    from db.models import Job
    from db.session import session_scope
    from jobs.tasks import run_evaluate
    from services.accounts.projects import get_or_create_project
    from services.training.lifecycle import train_stage
    from services.training.registry import ensure_holdout

    with session_scope() as s:
        project = get_or_create_project(s)
        ensure_holdout(s, project)
        train_stage(s, project, "assist_net", epochs=1, device="cpu")
    ctx = _context("evaluate")
    seen: list[float] = []
    report = ctx.report

    def spy(**kw):
        if kw.get("progress") is not None:
            seen.append(kw["progress"])
        report(**{**kw, "force": True})

    ctx.report = spy
    result = run_evaluate(ctx, stage="assist_net", device="cpu")
    assert "mean_iou" in result["metrics"]
    assert len(seen) >= 2 and seen[-1] == 1.0 and seen == sorted(seen)
    with session_scope() as s:
        assert s.get(Job, ctx.job_id).progress == 1.0


def test_a_job_with_a_parameter_its_handler_lacks_is_refused(store):
    from db.session import session_scope
    from jobs.service import create_job
    from services.errors import Invalid

    with session_scope() as s, pytest.raises(Invalid, match="params.split"):
        create_job(s, "evaluate", {"stage": "albert", "split": "test"})


def _promoted_at(session, stage: str, preset: str, tmp_path):
    """A promoted ``stage`` version trained (random weights) at ``preset``, as the
    auto-training leaves one at a larger preset than a round's default."""
    from models.registry import build, config_class
    from services.accounts.projects import get_or_create_project, project_taxonomy
    from services.training.registry import register_version

    cfg = config_class(stage).from_preset(preset, device="cpu")
    model = build(stage, cfg, taxonomy=project_taxonomy(get_or_create_project(session)))
    path = model.save(tmp_path / f"{stage}-{preset}.pt")
    return register_version(
        session, stage=stage, artifact_path=path, config=cfg.to_dict(), promote=True
    )


@pytest.mark.parametrize("asked", ["tiny", "small", "base"])
@pytest.mark.parametrize(
    "stage", ["assist_net", "part_classifier", "part_seg", "yolo_seg", "albert"]
)
def test_a_round_continues_a_version_of_another_preset_on_its_own_network(
    db_session, project, stage, asked
):
    """Whatever preset a round asks for, a stage continues its promoted version on that
    version's own configuration, and the plan says so when the presets differ."""
    from db.models import ModelVersion
    from models.registry import config_class, stage_class
    from services.training.lifecycle import plan_stage

    assert stage_class(stage).warm_startable
    trained_at = "small" if asked != "small" else "tiny"
    own = config_class(stage).from_preset(trained_at, device="cpu")
    parent = ModelVersion(
        stage=stage, version=1, name=f"{stage}-v1", path="x.pt", sha256="0", config=own.to_dict()
    )
    db_session.add(parent)
    db_session.flush()
    parent.promoted = True
    plan = plan_stage(db_session, stage, config=asked, device="cpu")
    assert plan.warm_from is parent and plan.cfg.preset == trained_at
    assert plan.cfg.to_dict() | {"epochs": own.epochs} == own.to_dict() | {"device": "cpu"}
    assert f"continues {stage}-v1 ({trained_at} preset" in plan.sentence
    assert f"rather than the {asked!r} preset asked for" in plan.sentence
    scratch = plan_stage(db_session, stage, config=asked, device="cpu", from_scratch=True)
    assert scratch.warm_from is None and scratch.cfg.preset == asked
    assert scratch.sentence == f"{stage}: {asked} preset, from scratch, as asked"


def test_the_default_round_continues_an_assist_net_trained_at_a_larger_preset(
    round_project, tmp_path
):
    """Start retraining with nothing ticked and the tiny preset, after the auto-training left
    a promoted assist_net of the small preset: the round continues it on its own network
    (it loaded it into the tiny one and failed with "size mismatch for head.weight")."""
    from db.session import session_scope
    from jobs.rounds import run_round

    with session_scope() as s:
        parent = _promoted_at(s, "assist_net", "small", tmp_path).name
    out = run_round(_context("round"), config="tiny", epochs=1, k=1, device="cpu")
    done = out["stages"]["assist_net"]
    assert list(out["stages"]) == ["assist_net"]
    assert done["plan"].startswith(f"assist_net: continues {parent} (small preset, 1 epoch(s))")
    assert done["version"] is None or done["version"] == "assist_net-v2"
