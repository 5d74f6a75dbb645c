"""Every registered stage builds with random weights on the CPU in its tiny preset and
returns well-formed instances; bad checkpoints get clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from models.base import CheckpointError
from models.registry import build, load, stage_names


def _check(results, images):
    assert len(results) == len(images)
    for r, im in zip(results, images, strict=True):
        inst = r.instances
        h, w = im.shape[:2]
        for head, p in inst.probs.items():
            assert p.shape[0] == len(inst) and np.isfinite(p).all(), head
            if head in ("damage", "part", "damaged"):
                np.testing.assert_allclose(p.sum(1), 1, atol=1e-4)
        assert np.isfinite(inst.scores).all() and np.isfinite(inst.boxes).all()
        if len(inst):
            assert (inst.boxes[:, :2] >= -0.5).all() and (inst.boxes[:, 2] <= w + 0.5).all()
            assert (inst.boxes[:, 3] <= h + 0.5).all()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    return [
        rng.integers(0, 255, (96, 128, 3), dtype=np.uint8),
        rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
    ]


@pytest.mark.parametrize(
    "name", [n for n in stage_names() if n not in ("albert",)]
)  # albert: own test file
def test_stage_builds_tiny_and_predicts(name, images, tmp_path):
    stage = build(name, {"preset": "tiny", "device": "cpu"})
    res = stage.predict(images)
    _check(res, images)
    if name in ("pipeline", "part_classifier"):
        for r in res:
            assert r.instances.probs["damaged"].shape == (len(r.instances), 2)
    path = stage.save(tmp_path / f"{name}-v1.pt")
    again = load(path, device="cpu")
    assert type(again) is type(stage)
    _check(again.predict(images[:1]), images[:1])


def test_wrong_stage_and_bad_files(tmp_path):
    bad = tmp_path / "x.pt"
    bad.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="YOLO weights .*nope.pt do not exist"):
        build("yolo_seg", {"model": str(tmp_path / "nope.pt"), "device": "cpu"})


def test_pipeline_trains_end_to_end_on_real_photos(datasets_dir, tmp_path, monkeypatch):
    import models.yolo_augment as yolo_augment
    from models.datasets import coco_training_set
    from models.registry import build as b

    sided_datasets = []  # YOLO's training set flips with left/right swapped
    real_use = yolo_augment.use_sided_flips
    monkeypatch.setattr(
        yolo_augment,
        "use_sided_flips",
        lambda ds, table: (sided_datasets.append(table), real_use(ds, table))[1],
    )

    root = datasets_dir / "coco_car_damage" / "train"
    ts = coco_training_set(
        root / "COCO_merged_annos.json"
        if (root / "COCO_merged_annos.json").is_file()
        else next(root.glob("*merged*.json")),
        root,
        label_map={"headlamp": "left_headlight", "door": "front_left_door"},
        limit=6,
    )
    stage = b(
        "pipeline",
        {
            "preset": "tiny",
            "device": "cpu",
            "yolo": {"epochs": 1, "imgsz": 96, "batch_size": 4},
            "classifier": {"epochs": 1},
        },
    )
    res = stage.train(ts, out_path=tmp_path / "pipeline-v1.pt")
    assert res.artifact_path.is_file()
    assert len(sided_datasets) == 1 and (sided_datasets[0] != range(61)).sum() >= 30
    assert res.metrics["part_classifier"]["train_crops"] > 0
    again = load(res.artifact_path, device="cpu")
    out = again.predict([ts.load_image(0)])
    _check(out, [ts.load_image(0)])


def test_yolo_returns_class_vectors_and_embeddings_of_kept_detections(images):
    stage = build("yolo_seg", {"preset": "tiny", "device": "cpu", "conf": 0.0, "max_det": 5})
    res = stage.predict(images)
    _check(res, images)
    inst = res[0].instances
    assert len(inst) > 0  # conf 0: random weights still yield detections
    assert inst.probs["part"].shape == (len(inst), 61)
    np.testing.assert_allclose(inst.probs["part"].sum(1), 1, atol=1e-4)
    # the winning class of the vector is the detection's own class
    cols = [stage.class_ids.index(int(c)) for c in inst.class_ids]
    assert (inst.probs["part"].argmax(1) == np.asarray(cols)).all()
    assert inst.embeddings is not None and len(inst.embeddings) == len(inst)


def test_part_classifier_fast_paths_agree_with_eager():
    """The fp32 BatchNorm-folded channels-last copy gives the eager net's probabilities; the
    default int8 copy is quantized and agrees on the winning class; tiny parts are skipped."""
    import torch

    from core.geometry import Shape
    from core.instances import Instances
    from models.part_classifier import PartClassifierConfig, PartClassifierStage

    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
    st = PartClassifierStage(PartClassifierConfig.from_preset("tiny", device="cpu", int8=False))
    fast = st.classify_crops(crops)
    assert st._fast is not None and st._fast is not st.net
    with torch.inference_mode():
        eager = st.net(st._batch(crops)).softmax(-1).numpy()
    np.testing.assert_allclose(fast, eager, atol=1e-4)
    q = PartClassifierStage(PartClassifierConfig.from_preset("tiny", device="cpu"))
    assert q.config.int8  # the CPU default, once calibrated (training calibrates)
    q.net.load_state_dict(st.net.state_dict())
    np.testing.assert_allclose(q.classify_crops(crops), fast, atol=1e-5)  # not yet: fp32
    q.calibrate_int8(crops)
    pq = q.classify_crops(crops)
    assert any("quantized" in str(type(m)).lower() for m in q._fast.modules())
    np.testing.assert_allclose(pq.sum(1), 1, atol=1e-4)
    assert (pq.argmax(1) == fast.argmax(1)).mean() >= 0.8
    # a part below min_part_area gets no forward and the uninformative [0.5, 0.5]
    st.config.min_part_area = 100
    img = crops[0]
    inst = Instances(
        shapes=[Shape.from_box(0, 0, 5, 5), Shape.from_box(0, 0, 40, 40)],
        class_ids=np.zeros(2, np.int64),
    )
    p = st.classify_parts(img, inst)
    np.testing.assert_allclose(p[0], [0.5, 0.5])
    np.testing.assert_allclose(p[1], st.classify_crops([part_crop_of(img, inst, 1)])[0], atol=1e-5)


def part_crop_of(img, inst, k):
    from models.part_classifier import part_crop

    return part_crop(img, inst.shapes[k], 64)


def test_pipeline_overlapped_batch_equals_one_by_one(images):
    """Several photos per call run ResNet in a worker thread beside YOLO: same results as
    one photo per call."""
    stage = build(
        "pipeline",
        {"preset": "tiny", "device": "cpu", "yolo": {"conf": 0.0, "max_det": 3}},
    )
    batch = stage.predict(images)
    one = [stage.predict([im])[0] for im in images]
    assert sum(len(r.instances) for r in batch) > 0
    for a, b in zip(batch, one, strict=True):
        assert len(a.instances) == len(b.instances)
        np.testing.assert_allclose(
            a.instances.probs["damaged"], b.instances.probs["damaged"], atol=1e-5
        )


def test_pipeline_main_thread_takes_over_unstarted_classification(images):
    """When YOLO is done first, the calling thread classifies the photos the worker has not
    started (last first); the results stay in photo order. A failing classification
    propagates and drops the queued work."""
    import threading
    import time

    stage = build("pipeline", {"preset": "tiny", "device": "cpu", "yolo": {"conf": 0.0}})
    photos = [images[0], images[1], images[0], images[1]]
    expected = [stage.predict([im])[0].instances.probs["damaged"] for im in photos]
    real = stage.classifier.classify_many
    threads: list[str] = []

    def slow(items):
        threads.append(threading.current_thread().name)
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.5)  # the worker lags: YOLO finishes with work still queued
        return real(items)

    stage.classifier.classify_many = slow
    got = stage.predict(photos)
    assert threads.count("MainThread") >= 2  # it took over queued photos
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g.instances.probs["damaged"], e, atol=1e-5)

    calls = []

    def broken(items):
        calls.append(1)
        raise RuntimeError("classifier failed")

    stage.classifier.classify_many = broken
    with pytest.raises(RuntimeError, match="classifier failed"):
        stage.predict(photos)


def test_part_crop_greys_out_what_lies_outside_the_part():
    from core.geometry import Shape
    from models.part_classifier import part_crop

    img = np.zeros((300, 400, 3), np.uint8)
    img[:, :, 0] = 250  # a red photo
    # a right triangle in a 200 x 100 box at (100, 50); the crop stretches it to 64 x 64
    tri = Shape.from_ring([[100, 50], [300, 50], [100, 150]])
    crop = part_crop(img, tri, 64)
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert (crop[5, 5] == [250, 0, 0]).all()  # the triangle's right angle: inside
    assert (crop[60, 60] == [124, 116, 104]).all()  # the opposite corner: outside
    # the hypotenuse runs corner to corner in the square crop: row 16 is inside up to ~x 48
    assert (crop[16, 44] == [250, 0, 0]).all() and (crop[16, 52] == [124, 116, 104]).all()
    share_inside = (crop[:, :, 0] == 250).mean()
    assert 0.45 < share_inside < 0.55  # half of the box, as the triangle covers
    off_photo = part_crop(img, Shape.from_box(450, 10, 500, 60), 16)
    assert (off_photo == [124, 116, 104]).all()
