"""Full probability vectors and embeddings of the Mask R-CNN, ResNet34 part classifier and
YOLO stages: real values taken from the same forward, with results unchanged."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import noise_training_set

from core.geometry import Shape
from core.instances import Instances


@pytest.fixture(scope="module")
def mask_rcnn():
    from models.mask_rcnn import MaskRCNNConfig, MaskRCNNStage

    # threshold 0: random weights give ~1/27 per class, below the default 0.05
    return MaskRCNNStage(MaskRCNNConfig.from_preset("tiny", device="cpu", score_threshold=0.0))


@pytest.fixture(scope="module")
def photo():
    # 120 x 160 fits the tiny preset (min 128 / max 160) at scale 1: no resize of the boxes
    return np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)


def _as_tensor(im):
    import torch

    return torch.from_numpy(im).permute(2, 0, 1).float().div(255)


def test_mask_rcnn_detections_equal_plain_torchvision(mask_rcnn, photo):
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    c = mask_rcnn.config
    plain = maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=len(mask_rcnn.class_ids) + 1,
        min_size=c.min_size,
        max_size=c.max_size,
        box_score_thresh=c.score_threshold,
        box_detections_per_img=c.max_detections,
        rpn_post_nms_top_n_test=c.proposals,
        rpn_pre_nms_top_n_test=c.proposals,
    ).eval()
    plain.load_state_dict(mask_rcnn.net.state_dict())
    x = _as_tensor(photo)
    with torch.inference_mode():
        ours, ref = mask_rcnn.net([x])[0], plain([x])[0]
    assert len(ref["boxes"]) == c.max_detections  # enough detections to mean something
    for key in ("boxes", "labels", "scores", "masks"):
        assert torch.equal(ours[key], ref[key]), key


def test_mask_rcnn_probs_and_embeddings_are_those_of_the_source_proposal(mask_rcnn, photo):
    """Recompute the box head over every RPN proposal independently; each detection must
    match one proposal on all of: 1024-d representation, full softmax, decoded box."""
    import torch
    from torchvision.ops import boxes as box_ops

    net, x = mask_rcnn.net, _as_tensor(photo)
    with torch.inference_mode():
        det = net([x])[0]
        il, _ = net.transform([x])
        assert il.image_sizes == [photo.shape[:2]]
        feats = net.backbone(il.tensors)
        proposals, _ = net.rpn(il, feats)
        rh = net.roi_heads
        rep = rh.box_head(rh.box_roi_pool(feats, proposals, il.image_sizes))
        logits, reg = rh.box_predictor(rep)
        soft = logits.softmax(-1)
        boxes = box_ops.clip_boxes_to_image(
            rh.box_coder.decode(reg, proposals).reshape(len(rep), -1, 4), il.image_sizes[0]
        )
    n = len(det["boxes"])
    assert det["class_probs"].shape == (n, len(mask_rcnn.class_ids) + 1)
    assert det["box_features"].shape == (n, 1024)
    for i in range(n):
        j = int(torch.cdist(det["box_features"][i : i + 1], rep).argmin())
        torch.testing.assert_close(det["box_features"][i], rep[j], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(det["class_probs"][i], soft[j], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(
            det["boxes"][i], boxes[j, det["labels"][i]], atol=1e-3, rtol=1e-4
        )


def test_mask_rcnn_stage_returns_full_softmax_and_embeddings(mask_rcnn, photo):
    res = mask_rcnn.predict([photo, photo[:64, :96]])
    for r in res:
        inst = r.instances
        assert len(inst) > 0
        p = inst.probs["damage"]
        assert p.shape == (len(inst), 27) and p.dtype == np.float32
        np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
        cols = [mask_rcnn.taxonomy.head_index(int(c)) for c in inst.class_ids]
        # the detection's score is its class's entry; no-object is last, not first
        np.testing.assert_allclose(p[np.arange(len(inst)), cols], inst.scores, atol=1e-6)
        assert (p[:, -1] > 0).all() and len(set(np.round(p[0], 6))) > 2
        assert inst.embeddings.shape == (len(inst), 1024) and np.isfinite(inst.embeddings).all()
        assert r.image_embedding.shape == (1024,) and r.image_embedding.dtype == np.float32
        assert np.isfinite(r.image_embedding).all()
    assert not np.allclose(res[0].image_embedding, res[1].image_embedding)


def test_mask_rcnn_image_embedding_leaves_padding_out():
    import torch

    from models.mask_rcnn import IMAGE_LEVELS, LEVEL_STRIDES, _image_embeddings

    h, w = 100, 70  # padded to 128 x 96: stride 4 -> 25 x 18 valid cells of 32 x 24
    feats = {}
    for name, s in zip(IMAGE_LEVELS, LEVEL_STRIDES, strict=True):
        f = torch.full((2, 256, 128 // s, 96 // s), 100.0)
        f[0, :, : -(-h // s), : -(-w // s)] = 1.0
        feats[name] = f
    feats["pool"] = torch.full((2, 256, 2, 2), 100.0)
    emb = _image_embeddings(feats, [(h, w), (128, 96)])
    assert emb[0].shape == (1024,)
    torch.testing.assert_close(emb[0], torch.ones(1024))
    torch.testing.assert_close(emb[1][:256], feats["0"][1].mean((1, 2)))


@pytest.fixture(scope="module")
def classifier():
    from models.part_classifier import PartClassifierConfig, PartClassifierStage

    return PartClassifierStage(PartClassifierConfig.from_preset("tiny", device="cpu", int8=False))


def test_part_classifier_embeddings_come_from_the_same_forward(classifier):
    import torch

    from models.part_classifier import _body_forward

    rng = np.random.default_rng(5)
    crops = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(5)]
    probs, feats = classifier.classify_crops_with_embeddings(crops)
    calls = []
    hook = classifier._fast[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        classifier.classify_crops_with_embeddings(crops)
    finally:
        hook.remove()
    assert len(calls) == 1  # one body forward for both outputs
    with torch.inference_mode():
        eager = _body_forward(classifier.net, classifier._batch(crops))
        eager_probs = classifier.net.fc(eager).softmax(-1)
    assert feats.shape == (5, 512) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, eager.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(probs, eager_probs.numpy(), atol=1e-5)
    np.testing.assert_allclose(classifier.classify_crops(crops), probs, atol=1e-6)


def test_part_classifier_int8_still_gives_probs_and_embeddings(classifier):
    from models.part_classifier import PartClassifierConfig, PartClassifierStage

    rng = np.random.default_rng(6)
    crops = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(6)]
    q = PartClassifierStage(PartClassifierConfig.from_preset("tiny", device="cpu", int8=True))
    q.net.load_state_dict(classifier.net.state_dict())
    q.calibrate_int8(crops)
    p, f = q.classify_crops_with_embeddings(crops)
    assert q.runs_int8 and any("quantized" in str(type(m)).lower() for m in q._fast.modules())
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    _, ref = classifier.classify_crops_with_embeddings(crops)
    assert f.shape == (6, 512) and np.isfinite(f).all()
    cos = (f * ref).sum(1) / np.linalg.norm(f, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.9
    # pooled in float after int8 (2x2 cells at 64 px): finer than int8's 256 levels
    assert len(np.unique(f)) > 256


def test_part_classifier_image_embedding_is_the_mean_of_classified_parts(classifier):
    rng = np.random.default_rng(7)
    img = rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)
    inst = Instances(
        shapes=[
            Shape.from_box(0, 0, 4, 4),
            Shape.from_box(0, 0, 40, 40),
            Shape.from_box(30, 20, 80, 70),
        ],
        class_ids=np.zeros(3, np.int64),
    )
    old = classifier.config.min_part_area
    classifier.config.min_part_area = 100
    try:
        pf = classifier.classify_many_with_embeddings([(img, inst), (img, inst[[0]])])
    finally:
        classifier.config.min_part_area = old
    a, b = pf
    assert a.classified.tolist() == [False, True, True]
    assert (a.embeddings[0] == 0).all() and np.allclose(a.probs[0], 0.5)
    np.testing.assert_allclose(a.image_embedding(), a.embeddings[1:].mean(0), rtol=1e-6)
    assert b.image_embedding() is None  # nothing looked at: no image embedding
    res = classifier.predict([img])[0]
    assert res.instances.embeddings.shape == (1, 512)
    np.testing.assert_allclose(res.image_embedding, res.instances.embeddings[0], rtol=1e-6)


@pytest.fixture(scope="module")
def yolo():
    from models.registry import build

    return build("yolo_seg", {"preset": "tiny", "device": "cpu", "conf": 0.0, "max_det": 5})


def test_yolo_image_embedding_pools_the_head_inputs(yolo):
    im = np.random.default_rng(8).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    head = yolo.yolo.predictor.model.model.model[-1] if yolo.yolo.predictor else None
    if head is None:
        yolo.predict([im])
        head = yolo.yolo.predictor.model.model.model[-1]
    seen = []
    hook = head.register_forward_hook(lambda m, i, o: seen.append([t.clone() for t in i[0]]))
    try:
        r = yolo.predict([im])[0]
    finally:
        hook.remove()
    # a square photo at imgsz 128 is not padded: the mean over every cell of every level
    expect = np.concatenate([t[0].float().mean((1, 2)).numpy() for t in seen[-1]])
    assert r.image_embedding.dtype == np.float32
    assert r.image_embedding.shape == (sum(t.shape[1] for t in seen[-1]),)
    np.testing.assert_allclose(r.image_embedding, expect, rtol=1e-5, atol=1e-12)


def test_yolo_image_embedding_leaves_letterbox_padding_out():
    import torch

    from models.yolo_seg import _HeadTap

    tap = _HeadTap.__new__(_HeadTap)
    tap.strides = torch.tensor([8.0, 16.0, 32.0])
    # a 64 x 128 photo letterboxed into 128 x 128: 32 px of grey above and below
    tap.maps = []
    for s, c in zip((8, 16, 32), (4, 6, 8), strict=True):
        f = torch.full((1, c, 128 // s, 128 // s), 100.0)
        f[0, :, 32 // s : 96 // s] = 1.0
        tap.maps.append(f)
    emb = tap.image_embedding(0, (64, 128))
    np.testing.assert_allclose(emb, np.ones(18, np.float32))


def test_pipeline_passes_yolo_image_embedding_through(yolo):
    from models.pipeline import PipelineConfig, PipelineStage

    rng = np.random.default_rng(9)
    imgs = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in range(2)]
    pipe = PipelineStage(PipelineConfig.from_preset("tiny", device="cpu"), yolo=yolo)
    for one in (imgs[:1], imgs):  # the batched and the threaded paths
        got = pipe.predict(one)
        ref = [yolo.predict([im])[0] for im in one]
        for g, r in zip(got, ref, strict=True):
            assert g.image_embedding is not None
            np.testing.assert_allclose(g.image_embedding, r.image_embedding, rtol=1e-5)
            assert g.instances.embeddings.shape == r.instances.embeddings.shape
            assert "damaged" in g.instances.probs


def _synthetic_part_set(tmp_path, n: int = 3):
    """``n`` photos with a door part (half of them dented) as a TrainingSet."""
    door, dent = ("front_left_door", (5, 5, 45, 50)), ("dent", (10, 10, 40, 45))
    labels = [[door, dent] if i % 2 else [door] for i in range(n)]
    return noise_training_set(tmp_path, labels, size=(60, 80), seed=10, split="train")


def test_part_classifier_int8_calibration_is_trained_saved_and_loaded(tmp_path):
    """Training stores the int8 activation ranges from training crops in the model file; the
    loaded stage quantizes with them (not with whatever it classifies first), so it gives
    the trained stage's outputs exactly."""
    from models.part_classifier import PartClassifierConfig, PartClassifierStage

    st = PartClassifierStage(PartClassifierConfig.from_preset("tiny", device="cpu"))
    assert not st.runs_int8  # untrained, uncalibrated: fp32
    res = st.train(_synthetic_part_set(tmp_path), out_path=tmp_path / "pc.pt")
    assert st.int8_calibration and all("activation_post_process" in k for k in st.int8_calibration)
    assert st.runs_int8
    rng = np.random.default_rng(11)
    crops = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    p, f = st.classify_crops_with_embeddings(crops)
    loaded = PartClassifierStage.load(res.artifact_path, device="cpu")
    assert loaded.runs_int8
    lp, lf = loaded.classify_crops_with_embeddings([c // 8 for c in crops[:1]] + crops)
    np.testing.assert_array_equal(lp[1:], p)
    np.testing.assert_array_equal(lf[1:], f)


def test_part_classifier_int8_is_a_load_time_choice(tmp_path, monkeypatch):
    """PANELBEATER_CPU_INT8=false makes pre-annotation load a trained file in fp32."""
    from types import SimpleNamespace

    from core.config import reset_settings
    from models.part_classifier import PartClassifierConfig, PartClassifierStage
    from services.training.model_runs import load_version

    st = PartClassifierStage(PartClassifierConfig.from_preset("tiny", device="cpu"))
    path = st.train(_synthetic_part_set(tmp_path), out_path=tmp_path / "pc.pt").artifact_path
    crops = [np.random.default_rng(12).integers(0, 255, (64, 64, 3), dtype=np.uint8)]

    def quantized(stage) -> bool:
        stage.classify_crops(crops)
        return any("quantized" in str(type(m)).lower() for m in stage._fast.modules())

    from core.files import sha256_file

    mv = SimpleNamespace(stage="part_classifier", path=str(path), sha256=sha256_file(path))
    monkeypatch.delenv("PANELBEATER_CPU_INT8", raising=False)
    reset_settings()
    try:
        assert quantized(load_version(mv, None, device="cpu"))  # as trained: int8
        monkeypatch.setenv("PANELBEATER_CPU_INT8", "false")
        reset_settings()
        fp32 = load_version(mv, None, device="cpu")
        assert not quantized(fp32)
    finally:
        monkeypatch.delenv("PANELBEATER_CPU_INT8")
        reset_settings()
    np.testing.assert_allclose(fp32.classify_crops(crops), st.classify_crops(crops), atol=0.05)


def test_part_classifier_bad_int8_calibration_is_a_clear_error(tmp_path):
    from models.base import CheckpointError
    from models.part_classifier import PartClassifierConfig, PartClassifierStage

    st = PartClassifierStage(PartClassifierConfig.from_preset("tiny", device="cpu"))
    st.int8_calibration = {"layer9.activation_post_process.min_val": np.zeros(1)}
    with pytest.raises(CheckpointError, match="int8 calibration.*int8 option to false"):
        st.classify_crops([np.zeros((64, 64, 3), np.uint8)])


@pytest.mark.parametrize("int8", [True, False])
def test_part_classifier_inference_copy_does_not_trace(int8, monkeypatch):
    """torch.fx tracing patches nn.Module.__call__ for the whole process while it runs, so
    building the inference copy with it breaks the pipeline's YOLO, which runs in another
    thread meanwhile. The copies are built without it."""
    import torch.fx

    from models.part_classifier import PartClassifierConfig, PartClassifierStage

    def refuse(*a, **k):
        raise AssertionError("torch.fx tracing while other threads may run models")

    monkeypatch.setattr(torch.fx.Tracer, "trace", refuse)
    st = PartClassifierStage(PartClassifierConfig.from_preset("tiny", device="cpu", int8=int8))
    crops = [np.full((64, 64, 3), 90, np.uint8)]
    st.calibrate_int8(crops)
    p = st.classify_crops(crops)
    assert st.runs_int8 == int8
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
