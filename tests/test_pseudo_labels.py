"""Semi-supervised rounds (``services.training.pseudo_labels``): a round trains on the
promoted version's confident predictions of unlabelled photos, marked as pseudo-labels, and
they never reach an export or an accepted annotation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import requires_datasets, write_coco_subset
from sqlmodel import select

from core.geometry import Shape
from core.instances import Instances
from core.taxonomy import default_taxonomy
from services.errors import Invalid
from services.training.pseudo_labels import class_thresholds, confident_instances


def square(x: float) -> Shape:
    return Shape.from_json([{"exterior": [[x, 0], [x + 4, 0], [x + 4, 4], [x, 4]], "holes": []}])


def predictions(class_ids: list[int], scores: list[float]) -> Instances:
    return Instances(
        shapes=[square(i * 5) for i in range(len(class_ids))],
        class_ids=np.array(class_ids, dtype=np.int64),
        scores=np.array(scores, dtype=np.float32),
        data={"prediction_id": list(range(10, 10 + len(class_ids)))},
    )


@pytest.mark.parametrize(
    ("class_ids", "scores", "thresholds", "kept"),
    [
        ([0, 0, 1], [0.95, 0.89, 0.9], {0: 0.9, 1: 0.9}, [10, 12]),  # at the threshold counts
        ([0, 1], [0.95, 0.95], {0: 0.9, 1: 0.99}, [10]),  # a stricter class drops its own
        ([0, 1], [0.7, 0.7], {0: 0.9, 1: 0.6}, [11]),  # a laxer class keeps its own
        ([5], [0.95], {}, []),  # a class without a threshold takes the default (1.0)
        ([], [], {0: 0.1}, []),
    ],
)
def test_confident_instances_keep_what_reaches_its_class_threshold(
    class_ids, scores, thresholds, kept
):
    out = confident_instances(predictions(class_ids, scores), thresholds)
    assert out.data.get("prediction_id", []) == kept
    assert out.data.get("pseudo", []) == [True] * len(kept)
    assert len(out) == len(kept)


def test_class_thresholds_take_a_class_override_and_refuse_an_unknown_name():
    tax = default_taxonomy()
    some = next(iter(tax))
    got = class_thresholds(tax, 0.9, {some.name: 0.75})
    assert got[some.id] == 0.75
    assert {v for k, v in got.items() if k != some.id} == {0.9}
    with pytest.raises(Invalid, match="'no_such_part'"):
        class_thresholds(tax, 0.9, {"no_such_part": 0.8})
    with pytest.raises(Invalid, match="at most 1"):
        class_thresholds(tax, 0.9, {some.name: 1.5})


@pytest.fixture
def pool_project(store, datasets_dir, tmp_path):
    """Eight dsmlr photos: four labelled with their part polygons, four without any (one of
    each kind in the held-out split)."""
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
    write_coco_subset(data, keep, tmp_path / "sub.json", labelled=keep[:4])
    with session_scope() as s:
        project = get_or_create_project(s)
        import_coco(
            s,
            project,
            tmp_path / "sub.json",
            images_dir=root / "JPEGImages",
            label_map={**DSMLR_LABEL_MAP, "_background_": "hood"},
            status="new",
        )
        images = s.exec(select(Image).order_by(Image.id)).all()
        for im in images[:4]:
            set_status(s, image_id=im.id, status="labelled", author="t")
        for im in images:
            im.split = "test" if im.id in (images[0].id, images[7].id) else "train"
            s.add(im)
    return store


@requires_datasets
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_round_trains_on_confident_predictions_that_never_become_annotations(
    pool_project, tmp_path, monkeypatch, bar_off
):
    """(a) The records the round's part_seg trains on hold the confident pending predictions
    of an unlabelled photo, marked pseudo, and none below the threshold, of a held-out photo or
    of a labelled photo; the new version records the count. (b) Afterwards the Annotation
    table is as it was, no prediction is accepted, and the COCO export holds none of them."""
    from test_jobs_round import _context

    import services.training.model_runs as runs
    from core.config import get_settings
    from db.models import Annotation, Image, ModelVersion, Prediction
    from db.session import session_scope
    from jobs.rounds import run_round
    from services.accounts.projects import get_or_create_project
    from services.dashboard.summary import trained_on
    from services.data_io.exports import export_coco
    from services.labelling.readers import annotation_dicts
    from services.training.lifecycle import train_stage

    # the version whose predictions become pseudo-labels: a tiny part_seg, promoted
    with session_scope() as s:
        project = get_or_create_project(s)
        mv = train_stage(
            s, project, "part_seg", config="tiny", epochs=1, device="cpu", promote=True
        )
        images = s.exec(select(Image).order_by(Image.id)).all()
        pool, held_new, labelled = images[5], images[7], images[2]
        wheel = s.exec(select(Annotation).where(Annotation.image_id == images[1].id)).first()
        geometry, class_id = wheel.geometry, wheel.class_id
        rows = {
            "confident": (pool.id, 0.97),
            "doubtful": (pool.id, 0.5),
            "held_out": (held_new.id, 0.99),
            "labelled": (labelled.id, 0.99),
        }
        preds = {}
        for name, (image_id, score) in rows.items():
            p = Prediction(
                image_id=image_id,
                model_version_id=mv.id,
                class_id=class_id,
                group="part",
                geometry=geometry,
                score=score,
            )
            s.add(p)
            s.flush()
            preds[name] = p.id
        pool_id = pool.id
        annotations_before = sorted(
            (a.id, a.image_id, a.class_id, json.dumps(a.geometry))
            for a in s.exec(select(Annotation)).all()
        )
    monkeypatch.setattr(get_settings(), "pseudo_labels", True)
    monkeypatch.setattr(get_settings(), "pseudo_label_min_score", 0.9)

    trained: list = []
    measured: list = []
    real_training_set = runs.training_set

    def recording_training_set(session, project, split_filter, snapshot=None):
        data = real_training_set(session, project, split_filter, snapshot)
        # training reads a snapshot; the held-out measurement reads the labelled photos
        (trained if snapshot is not None else measured).extend(data.records)
        return data

    monkeypatch.setattr(runs, "training_set", recording_training_set)
    out = run_round(
        _context("round"),
        stages=["part_seg"],
        config="tiny",
        epochs=1,
        k=1,
        strategy="random",
        device="cpu",
    )

    pseudo = [r for r in trained if r.meta.get("pseudo")]
    assert [r.meta["image_id"] for r in pseudo] == [pool_id]
    assert pseudo[0].instances.data["prediction_id"] == [preds["confident"]]
    assert pseudo[0].instances.data["pseudo"] == [True]
    assert measured and not any(r.meta.get("pseudo") for r in measured)
    assert {r.meta["status"] for r in measured} == {"labelled"}
    people = [r for r in trained if not r.meta.get("pseudo")]
    assert people and not any("pseudo" in r.instances.data for r in people)
    assert out["stages"]["part_seg"]["pseudo"] == {
        "version": mv.name,
        "photos": 1,
        "instances": 1,
    }
    assert {
        "step": "snapshot",
        "what": f"part_seg: 1 pseudo-labelled photos (1 instances, scores from 0.9) from {mv.name}",
    } in out["steps"]
    with session_scope() as s:
        new = s.exec(select(ModelVersion).where(ModelVersion.id != mv.id)).one()
        assert new.train_snapshot["pseudo"]["prediction_ids"] == [preds["confident"]]
        assert trained_on(new.train_snapshot).endswith("+ 1 pseudo-labelled photos (1 instances)")
        # (b) nothing became an annotation, an accepted prediction or an exported label
        after = sorted(
            (a.id, a.image_id, a.class_id, json.dumps(a.geometry))
            for a in s.exec(select(Annotation)).all()
        )
        assert after == annotations_before
        assert annotation_dicts(s, pool_id) == []
        for pid in preds.values():
            assert s.get(Prediction, pid).state.value not in ("accepted", "edited")
        export_coco(s, get_or_create_project(s), tmp_path / "coco.json")
    coco = json.loads((tmp_path / "coco.json").read_text())
    pool_file = next(im["id"] for im in coco["images"] if im["file_name"] == pool.file_name)
    assert [a for a in coco["annotations"] if a["image_id"] == pool_file] == []
    assert len(coco["annotations"]) == len(annotations_before)


@requires_datasets
def test_pseudo_labels_are_off_unless_asked(pool_project):
    from db.session import session_scope
    from services.accounts.projects import get_or_create_project
    from services.training.pseudo_labels import with_pseudo_labels
    from services.training.registry import training_snapshot

    with session_scope() as s:
        project = get_or_create_project(s)
        snap = training_snapshot(s, project)
        assert with_pseudo_labels(s, project, "part_seg", snap) == snap
        # on, but nothing promoted yet: no version to take pseudo-labels from
        on = with_pseudo_labels(s, project, "part_seg", snap, enabled=True)
        assert on["pseudo"]["version"] is None and on["pseudo"]["photos"] == 0


def test_a_round_job_carries_the_choice_and_leaves_the_setting_otherwise(store):
    from jobs.service import start_round

    assert start_round(pseudo_labels=True, created_by="t").params["pseudo_labels"] is True
    assert start_round(pseudo_labels=False, created_by="t").params["pseudo_labels"] is False
    assert "pseudo_labels" not in start_round(created_by="t").params
    from jobs.service import validate_params

    with pytest.raises(Invalid, match="params.pseudo_labels must be true, false or null"):
        validate_params("round", {"pseudo_labels": "yes"})


def test_post_retrain_carries_the_choice(tmp_path):
    from browser_helpers import api_client

    from db.models import Job
    from db.session import session_scope

    client, _, login = api_client(tmp_path / "data", n_synthetic=1)
    h = login("lead")
    on = client.post("/api/retrain", headers=h, json={"pseudo_labels": True})
    plain = client.post("/api/retrain", headers=h, json={})
    assert on.status_code == plain.status_code == 200, (on.text, plain.text)
    with session_scope() as s:
        assert s.get(Job, on.json()["job_id"]).params["pseudo_labels"] is True
        assert "pseudo_labels" not in s.get(Job, plain.json()["job_id"]).params
