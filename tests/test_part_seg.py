"""part_seg: the CPU part segmenter. It trains on real photos and its loss falls,
predicts well-formed instances, flips swap sided classes, label maps become instances (holes
kept, specks dropped, sided pairs settled by position), files round-trip, and it trains
itself and is promoted only when it beats the promoted YOLO part model."""

from __future__ import annotations

import numpy as np
import pytest
from sqlmodel import select

from core.taxonomy import default_taxonomy
from db.models import Job, ModelVersion
from models.part_seg import (
    flip_sample,
    guided_filter,
    label_map_instances,
    mirror_lut,
    small_part_windows,
)


@pytest.fixture
def one_thread():
    """One torch thread: on this shared 2-core machine two threads contend with the rest."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _k(name: str) -> int:
    """The label of part ``name`` in a part_seg label map."""
    tax = default_taxonomy()
    return 1 + tax.head_index(tax.by_name(name).id)


def _one_hot(labels: np.ndarray) -> np.ndarray:
    n = 1 + len(default_taxonomy().group("part"))
    return (labels[None] == np.arange(n)[:, None, None]).astype(np.float32)


def _names(inst) -> list[str]:
    tax = default_taxonomy()
    return [tax.by_id(int(c)).name for c in inst.class_ids]


def test_tiny_trains_on_real_photos_predicts_and_round_trips(datasets_dir, tmp_path, one_thread):
    from models.data import TrainingSet
    from models.datasets import dsmlr_training_set
    from models.registry import build, load

    data = dsmlr_training_set(datasets_dir, limit=8)
    stage = build("part_seg", {"preset": "tiny", "device": "cpu"}, taxonomy=data.taxonomy)
    calls = []
    result = stage.train(data, progress=lambda d, t, info: calls.append((d, t, info["loss"])))
    m = result.metrics
    assert m["train_photos"] == 8 and m["steps"] == 16 and len(calls) == 8
    assert m["last_loss"] < 0.8 * m["first_loss"], m  # it learns

    images = [data.load_image(0), data.load_image(1)[:300, :420].copy()]
    probs, feats = stage.probabilities(images)
    assert probs.shape == (2, 62, 64, 64) and np.isfinite(probs).all()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    results = stage.predict(images)
    for r, im in zip(results, images, strict=True):
        inst = r.instances
        assert r.image_embedding.shape == (960,) and np.isfinite(r.image_embedding).all()
        assert inst.probs["part"].shape == (len(inst), 61)
        assert np.isfinite(inst.scores).all() and np.isfinite(inst.probs["part"]).all()
        if len(inst):
            np.testing.assert_allclose(inst.probs["part"].sum(1), 1.0, atol=1e-4)
            assert inst.embeddings.shape == (len(inst), 960)
            assert (inst.boxes[:, 2] <= im.shape[1] + 0.5).all()

    # the small-part second look: crops through the same network, averaged in
    stage.config = stage.config.with_(small_part_zoom=2.0, small_part_max_frac=0.5)
    for r in stage.predict(images):
        assert np.isfinite(r.instances.scores).all()
        if len(r.instances):
            np.testing.assert_allclose(r.instances.probs["part"].sum(1), 1.0, atol=1e-4)
    stage.config = stage.config.with_(small_part_zoom=0.0)

    # flip averaging (on outside the tiny preset): the mirrored photo's probabilities are the
    # photo's mirrored, with the sided classes swapped; the edge refinement keeps them summing to 1
    stage.config = stage.config.with_(flip_tta=True, refine_radius=3)
    photo = images[0]
    p, _ = stage.probabilities([photo])
    pm, _ = stage.probabilities([np.ascontiguousarray(photo[:, ::-1])])
    np.testing.assert_allclose(pm[0], p[0][:, :, ::-1][stage.lut], atol=1e-5)
    for r in stage.predict(images):
        if len(r.instances):
            np.testing.assert_allclose(r.instances.probs["part"].sum(1), 1.0, atol=1e-4)
    stage.config = stage.config.with_(flip_tta=False, refine_radius=0)

    figures = stage.evaluate(TrainingSet(data.records[:2], data.taxonomy))
    part = figures["part"]
    assert 0.0 <= part["miou"] <= 1.0 and part["per_class_iou"] and "AP50" in part["coco"]

    again = load(stage.save(tmp_path / "part_seg-v1.pt"), device="cpu")
    np.testing.assert_array_equal(again.probabilities(images)[0], probs)
    before, after = results[0].instances, again.predict(images)[0].instances
    assert _names(after) == _names(before)
    np.testing.assert_array_equal(after.scores, before.scores)


def test_a_flip_swaps_sided_classes_on_a_hand_made_label_map():
    tax = default_taxonomy()
    labels = np.zeros((20, 40), np.int64)
    labels[:, :10] = _k("front_left_door")
    labels[:, 15:25] = _k("hood")
    labels[2:5, 30:38] = _k("right_mirror")
    image = np.zeros((20, 40, 3), np.uint8)
    image[:, :10] = 200  # the door's pixels
    img2, lab2 = flip_sample(image, labels, mirror_lut(tax))
    assert (lab2[:, 30:] == _k("front_right_door")).all()
    assert (lab2[:, 15:25] == _k("hood")).all()
    assert (lab2[2:5, 2:10] == _k("left_mirror")).all()
    assert (img2[:, 30:] == 200).all() and (img2[:, :30] == 0).all()
    assert not (lab2 == _k("front_left_door")).any()


def test_connected_components_become_instances_with_holes_and_without_specks():
    tax = default_taxonomy()
    labels = np.zeros((100, 100), np.int64)
    labels[60:80, 5:25] = _k("wheel")
    labels[60:80, 70:90] = _k("wheel")
    labels[5:45, 30:80] = _k("hood")
    labels[15:30, 45:60] = 0  # a hole in the hood
    labels[90:92, 50:52] = _k("trunk")  # 4 px: a speck (< 0.2% of 10,000)
    inst, conflicts = label_map_instances(labels, _one_hot(labels), tax, min_area_frac=0.002)
    assert sorted(_names(inst)) == ["hood", "wheel", "wheel"] and conflicts == []
    hood = inst.shapes[_names(inst).index("hood")]
    assert hood.has_holes
    np.testing.assert_array_equal(hood.to_mask(100, 100), labels == _k("hood"))
    wheels = [s for s, n in zip(inst.shapes, _names(inst), strict=True) if n == "wheel"]
    assert {round(float(s.bbox[0])) for s in wheels} == {5, 70}
    np.testing.assert_allclose(inst.scores, 1.0)
    np.testing.assert_allclose(inst.probs["part"].sum(1), 1.0, atol=1e-6)


def test_the_guided_filter_moves_a_blurred_edge_onto_the_photos_edge():
    # the photo: dark left of column 24, bright from it; the network's hood/door edge is a
    # ramp centred on column 20, four pixels off
    guide = np.zeros((32, 48), np.float32)
    guide[:, 24:] = 1.0
    hood, door = _k("hood"), _k("front_left_door")
    probs = np.full((62, 32, 48), 0.002, np.float32)
    ramp = np.clip((np.arange(48) - 14) / 12, 0, 1)  # 0.5 at column 20
    probs[hood] += (1 - ramp)[None] * 0.8
    probs[door] += ramp[None] * 0.8
    probs /= probs.sum(0, keepdims=True)
    assert probs.argmax(0)[0, 19] == hood and probs.argmax(0)[0, 21] == door
    out = guided_filter(guide, probs, radius=6, eps=1e-3)
    np.testing.assert_allclose(out.sum(0), 1.0, atol=1e-5)
    assert (out >= 0).all() and not np.isnan(out).any()
    labels = out.argmax(0)
    # the edge moved from column 20 to within a pixel of the photo's
    assert (labels[:, :23] == hood).all() and (labels[:, 25:] == door).all()
    # a class that wins nowhere is left as it was
    np.testing.assert_allclose(out[_k("wheel")], probs[_k("wheel")], rtol=0.05)


def test_small_parts_get_a_zoomed_window_each_inside_the_map():
    labels = np.zeros((100, 200), np.int64)
    labels[10:90, 20:180] = _k("hood")  # 1% of the map or more: no window
    labels[40:46, 4:10] = _k("left_mirror")  # 36 px, at the edge
    labels[50:60, 100:110] = _k("left_headlight")  # 84 px around the wheel below
    labels[52:56, 104:108] = _k("wheel")  # 16 px: the smallest, so the first window
    labels[0:1, 199:200] = _k("trunk")  # 1 px: a speck, below min_px
    windows = small_part_windows(labels, 2.0, max_frac=0.01, min_px=4, max_crops=6)
    # half the map's height and width each; the mirror's window is kept inside the map, and
    # the headlight, whose centre lies in the middle of the wheel's window, gets none
    assert windows == [(28, 78, 56, 156), (18, 68, 0, 100)]
    assert small_part_windows(labels, 2.0, max_frac=0.01, min_px=4, max_crops=1) == windows[:1]


def test_two_left_doors_are_settled_by_the_other_sided_parts_or_reported():
    tax = default_taxonomy()
    labels = np.zeros((100, 200), np.int64)
    labels[40:80, 10:60] = _k("front_left_door")
    labels[40:80, 140:190] = _k("front_left_door")
    # no other sided part: nothing to tell the view by, so the conflict is reported
    inst, conflicts = label_map_instances(labels, _one_hot(labels), tax)
    assert _names(inst) == ["front_left_door"] * 2 and conflicts == ["front_left_door"]
    assert (
        inst.data["side_conflict"]
        == [
            "front_left_door appears more than once on this photo: check which side each one is "
            "(or whether one is the front_right_door)"
        ]
        * 2
    )  # stored with each pre-annotation, shown beside it in the workspace
    # the left mirror lies on the image's right: a view from the front, so the door on the
    # image's right is the left one, and the other becomes the right door
    labels[20:30, 170:185] = _k("left_mirror")
    labels[20:30, 15:30] = _k("right_mirror")
    inst, conflicts = label_map_instances(labels, _one_hot(labels), tax)
    assert conflicts == [] and "side_conflict" not in inst.data
    doors = {
        n: float(s.bbox[0]) for s, n in zip(inst.shapes, _names(inst), strict=True) if "door" in n
    }
    assert doors["front_left_door"] > 100 > doors["front_right_door"]


def _settings(monkeypatch, **values):
    from core.config import get_settings

    for k, v in values.items():
        monkeypatch.setattr(get_settings(), k, v)


def _fake_yolo(session, tmp_path, ap50: float) -> ModelVersion:
    from services.training.registry import register_version

    f = tmp_path / f"yolo-{ap50}.pt"
    f.write_bytes(b"not a model: its figures are all the rule reads")
    metrics = {"holdout": {"part": {"coco": {"AP": ap50 / 2, "AP50": ap50}}}}
    return register_version(
        session, stage="yolo_seg", artifact_path=f, metrics=metrics, promote=True
    )


def test_autotrain_queues_once_due_and_promotes_only_over_yolo(
    db_session, labelled_project, tmp_path, monkeypatch, one_thread
):
    from models.part_seg import PartSegStage
    from services.events import labels_changed
    from services.training import part_seg_training as pst

    db_session.commit()
    jobs = lambda kind: db_session.exec(select(Job).where(Job.kind == kind)).all()  # noqa: E731
    assert pst.labelled_photos(db_session, labelled_project) == 6
    _settings(monkeypatch, part_seg_autotrain_min_photos=7)
    assert pst.POLICY.worth_checking(db_session, labelled_project) is False
    _settings(monkeypatch, part_seg_autotrain_min_photos=6, part_seg_autotrain=False)
    assert pst.POLICY.worth_checking(db_session, labelled_project) is False
    _settings(monkeypatch, part_seg_autotrain=True)
    assert pst.POLICY.worth_checking(db_session, labelled_project) is True
    labels_changed(db_session, labelled_project.id)
    db_session.commit()  # the check runs after the commit, in a session of its own
    db_session.expire_all()
    queued = jobs(pst.JOB_KIND)
    assert len(queued) == 1 and queued[0].params["photos"] == 6
    line = pst.autotrain_summary(db_session, labelled_project)
    assert (
        line
        == f"Part pre-annotator (part_seg) auto-training: job {queued[0].id} queued (about 12 min)"
    )
    assert pst.POLICY.due(db_session, labelled_project) is None  # one is pending

    # held-out figures fixed, so the rule is what is tested (training still runs, briefly)
    figures = {"part": {"coco": {"AP": 0.2, "AP50": 0.4}, "miou": 0.3}}
    monkeypatch.setattr(PartSegStage, "evaluate", lambda self, data, progress=None: figures)
    _fake_yolo(db_session, tmp_path, 0.6)
    out = pst.train_and_compare(db_session, labelled_project, config="tiny", epochs=1)
    assert out["promoted"] is False and out["version"] is None and out["rival"] == "yolo_seg-v1"
    assert "0.4000 vs yolo_seg-v1 0.6000" in out["reason"]
    assert db_session.exec(select(ModelVersion).where(ModelVersion.stage == "part_seg")).all() == []

    _fake_yolo(db_session, tmp_path, 0.3)
    out = pst.train_and_compare(db_session, labelled_project, config="tiny", epochs=1)
    assert out["promoted"] is True and out["version"]["name"] == "part_seg-v1"
    mv = db_session.exec(select(ModelVersion).where(ModelVersion.stage == "part_seg")).one()
    assert mv.promoted and mv.metrics["holdout"]["part"]["coco"]["AP50"] == 0.4
    # the winner pre-annotated the project's photos in the same call (no job to wait behind
    # the assistance's training)
    from db.models import ImagePrediction

    done = db_session.exec(select(ImagePrediction).where(ImagePrediction.model_version_id == mv.id))
    assert out["preannotated"] == len(done.all()) > 0 and jobs("preannotate") == []
    assert pst.autotrain_summary(db_session, labelled_project) == (
        "Part pre-annotator (part_seg): part_seg-v1 promoted, held-out mask AP50 0.40; "
        "rounds retrain it"
    )
    for j in queued:  # the first job is no longer pending: only the promotion stops a new one
        db_session.delete(j)
    db_session.commit()
    assert pst.POLICY.due(db_session, labelled_project) is None


def test_the_after_save_check_needs_no_second_pooled_connection(
    db_session, labelled_project, monkeypatch
):
    """20 annotators saving at once hold every pooled connection; the auto-training check
    each save runs after its commit must not wait for another one (it deadlocked for the
    pool's 30 s timeout, and the check was lost)."""
    from sqlalchemy import select as sa_select

    from db.session import get_engine
    from services.events import labels_changed
    from services.training import part_seg_training as pst

    db_session.commit()
    _settings(monkeypatch, part_seg_autotrain=True, part_seg_autotrain_min_photos=6)
    engine = get_engine()
    monkeypatch.setattr(engine.pool, "_timeout", 2)
    db_session.exec(sa_select(Job.id)).all()  # this session holds one pooled connection
    held = []
    try:
        while engine.pool.checkedout() < engine.pool.size() + engine.pool._max_overflow:
            held.append(engine.connect())
        labels_changed(db_session, labelled_project.id)
        db_session.commit()
    finally:
        for c in held:
            c.close()
    db_session.expire_all()
    jobs = db_session.exec(select(Job).where(Job.kind == pst.JOB_KIND)).all()
    assert len(jobs) == 1


def test_a_project_that_labels_damage_only_gets_a_sentence_not_a_part_job(
    db_session, project, monkeypatch
):
    """Photos labelled with damage alone (a damage set such as Bilgi): no part_seg job that
    would fail for want of part polygons, and the dashboard says why."""
    from db.models import Annotation, Image
    from services.events import labels_changed
    from services.training import part_seg_training as pst

    for i in range(3):
        im = Image(
            project_id=project.id,
            path=f"/x/d{i}.jpg",
            file_name=f"d{i}.jpg",
            sha256=f"{i:064d}",
            width=64,
            height=64,
            status="labelled",
        )
        db_session.add(im)
        db_session.flush()
        db_session.add(
            Annotation(
                image_id=im.id,
                class_id=1,
                group="damage",
                geometry=[{"exterior": [[1, 1], [9, 1], [9, 9]], "holes": []}],
            )
        )
    _settings(monkeypatch, part_seg_autotrain_min_photos=1)
    labels_changed(db_session, project.id)
    db_session.commit()
    db_session.expire_all()
    assert not db_session.exec(select(Job).where(Job.kind == pst.JOB_KIND)).all()
    assert pst.autotrain_summary(db_session, project) == (
        "Part pre-annotator (part_seg): this project's labels hold no parts yet, so there is "
        "nothing to train it on; it trains itself once 1 labelled photos show parts"
    )


def test_an_import_over_both_thresholds_queues_the_part_model_first(
    db_session, labelled_project, monkeypatch
):
    """One worker runs jobs in order: the part pre-annotator, which a project without a part
    model needs most, is not held back behind the assistance's training."""
    from services.events import labels_changed
    from services.training import assist_training
    from services.training import part_seg_training as pst

    db_session.commit()
    line = pst.autotrain_summary(db_session, labelled_project)
    assert line == (
        "Part pre-annotator (part_seg) auto-training: 6 labelled photos with parts, next "
        "training at 50"
    )
    _settings(monkeypatch, part_seg_autotrain_min_photos=6, assist_autotrain_min_polygons=1)
    labels_changed(db_session, labelled_project.id)
    db_session.commit()
    db_session.expire_all()
    kinds = [j.kind for j in db_session.exec(select(Job).order_by(Job.id)).all()]
    assert kinds == [pst.JOB_KIND, assist_training.JOB_KIND]


def test_the_job_starts_the_backbone_from_the_weights_folder(
    db_session, labelled_project, tmp_path, monkeypatch, one_thread
):
    """A torchvision MobileNetV3-Large in the weights folder (random here: nothing can be
    downloaded) starts part_seg's backbone, and the version names the file."""
    import torch
    from torchvision.models import mobilenet_v3_large

    from models.part_seg import PartSegStage
    from services.training import part_seg_training as pst
    from services.training.weights import add_weights

    db_session.commit()
    assert pst.backbone_in_weights_folder() is None
    src = tmp_path / "mnv3.pth"
    torch.manual_seed(1)
    torch.save(mobilenet_v3_large(weights=None).state_dict(), src)
    record, _ = add_weights(src, name="imagenet-mnv3")
    assert record.kind == "mobilenet_v3_large"
    figures = {"part": {"coco": {"AP": 0.2, "AP50": 0.4}, "miou": 0.3}}
    monkeypatch.setattr(PartSegStage, "evaluate", lambda self, data, progress=None: figures)
    loaded = []
    original = PartSegStage.__init__

    def spy(self, config=None, taxonomy=None):
        original(self, config, taxonomy)
        loaded.append(self.net.backbone["0"][0].weight.detach().clone())

    monkeypatch.setattr(PartSegStage, "__init__", spy)
    out = pst.train_and_compare(db_session, labelled_project, config="tiny", epochs=1)
    assert out["backbone"] == "imagenet-mnv3" and out["promoted"]
    mv = db_session.exec(select(ModelVersion).where(ModelVersion.stage == "part_seg")).one()
    assert mv.config["backbone_weights"] == str(record.path)
    first_conv = torch.load(src, weights_only=True)["features.0.0.weight"]
    assert torch.equal(loaded[0], first_conv)  # the file's weights, before any training
