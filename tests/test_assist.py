"""Interactive assistance: prompt checks, GrabCut, the learned net, SAM's cache, the factory."""

from __future__ import annotations

import time

import numpy as np
import pytest

from core.config import configure, reset_settings
from core.geometry import mask_iou
from models.assist import EmbeddingCache, make_assistant
from models.assist.base import validate_prompt
from models.assist.grabcut import BoxAssistant, GrabCutAssistant
from models.base import CheckpointError


def disc_image(h: int = 120, w: int = 160, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A red disc with a square hole on a noisy grey background, and its true mask."""
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 130, (h, w, 3)).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    disc = (xx - 80) ** 2 + (yy - 60) ** 2 < 40**2
    hole = (abs(xx - 80) < 8) & (abs(yy - 60) < 8)
    mask = disc & ~hole
    img[mask] = (220, 30, 30)
    return img, mask


def test_prompt_validation_sentences():
    with pytest.raises(ValueError, match="2 points but 1 labels"):
        validate_prompt([[1, 2], [3, 4]], [1], None, 10, 10)
    with pytest.raises(ValueError, match="box or at least one foreground point"):
        validate_prompt([[1, 2]], [0], None, 10, 10)
    with pytest.raises(ValueError, match="is empty inside"):
        validate_prompt(None, None, [20, 20, 30, 30], 10, 10)
    pts, labs, box = validate_prompt(None, None, [8, 9, 2, 1], 10, 10)
    assert box.tolist() == [2, 1, 8, 9] and len(pts) == 0


def test_predict_before_set_image_raises():
    with pytest.raises(RuntimeError, match="call set_image"):
        GrabCutAssistant().predict(box=[0, 0, 5, 5])
    with pytest.raises(ValueError, match="uint8 RGB"):
        GrabCutAssistant().set_image(np.zeros((4, 4), dtype=np.uint8))


def test_grabcut_finds_disc_with_hole():
    img, truth = disc_image()
    a = GrabCutAssistant()
    a.set_image(img)
    res = a.predict(box=[36, 16, 124, 104])
    assert res.backend == "grabcut" and res.shape is not None
    assert mask_iou(res.shape.to_mask(*truth.shape), truth) > 0.85
    assert res.shape.has_holes
    body = res.to_json()
    assert set(body) == {"polygons", "score", "backend"} and body["polygons"][0]["holes"]
    # a background click inside the box never ends up in the mask
    res2 = a.predict(points=[[80, 60]], labels=[0], box=[36, 16, 124, 104])
    assert not res2.shape.to_mask(*truth.shape)[60, 80]


def test_box_baseline_and_degenerate_box():
    img, _ = disc_image()
    b = BoxAssistant()
    b.set_image(img)
    res = b.predict(box=[10.2, 10, 30, 20.7])
    assert res.shape is not None
    # pixels 10..29 x 10..20 inclusive; traced vertices sit within half a pixel of their edges
    np.testing.assert_allclose(res.shape.bbox, [10, 10, 30, 21], atol=0.5)
    with pytest.raises(ValueError, match="empty"):
        b.predict(box=[5, 5, 5.2, 9])


def test_embedding_cache_disk_fp16(tmp_path):
    c = EmbeddingCache(tmp_path, "sam_vit_b-x")
    arr = np.linspace(0, 1, 24, dtype=np.float32).reshape(2, 3, 4)
    c.put("abc", arr)
    stored = np.load(tmp_path / "sam_vit_b-x" / "abc.npy")
    assert stored.dtype == np.float16
    fresh = EmbeddingCache(tmp_path, "sam_vit_b-x")
    np.testing.assert_allclose(fresh.get("abc"), arr, atol=1e-3)
    assert EmbeddingCache(tmp_path, "other").get("abc") is None
    (tmp_path / "sam_vit_b-x" / "torn.npy").write_bytes(b"\x93NUMPY garbage")
    assert fresh.get("torn") is None


def test_factory_defaults_and_missing_files(tmp_path):
    try:
        configure(data_dir=tmp_path)
        a = make_assistant()
        assert a.backend == "grabcut"
        configure(data_dir=tmp_path, assist_backend="assist_net")
        with pytest.raises(CheckpointError, match="train one with"):
            make_assistant()
        configure(data_dir=tmp_path, sam_checkpoint=tmp_path / "sam_vit_b.pth")
        with pytest.raises(CheckpointError, match="sam_vit_b.pth does not exist"):
            make_assistant()
        configure(data_dir=tmp_path, assist_backend="mobile_sam")
        with pytest.raises(CheckpointError, match="MobileSAM checkpoint None does not exist"):
            make_assistant()
    finally:
        reset_settings()


def test_assist_net_trains_saves_loads_and_assists(tmp_path, datasets_dir):
    from models.assist.learned import AssistNetConfig, AssistNetStage, LearnedAssistant
    from models.data import TrainingSet
    from models.datasets import dsmlr_training_set
    from models.registry import build

    ts = dsmlr_training_set(datasets_dir, limit=6)
    train = TrainingSet(ts.records[:4], ts.taxonomy)
    stage = build("assist_net", "tiny")
    losses = []
    cfg = AssistNetConfig.from_preset("tiny", epochs=3, max_parts=32, device="cpu")
    art = tmp_path / "artifacts" / "assist_net-v1.pt"
    result = stage.train(
        train, cfg, progress=lambda e, n, i: losses.append(i["loss"]), out_path=art
    )
    assert result.artifact_path == art and art.is_file() and len(losses) == 3
    assert losses[-1] < losses[0]
    # the factory picks the newest trained version when no SAM is configured
    try:
        configure(data_dir=tmp_path)
        a = make_assistant()
    finally:
        reset_settings()
    assert (
        isinstance(a, LearnedAssistant)
        and a.backend == "assist_net"
        and a.version == "assist_net-v1"
    )
    img = ts.load_image(5)
    box = ts.records[5].instances.shapes[0].bbox
    out1 = stage.predict([img], boxes=[box[None]])[0].instances
    out2 = AssistNetStage.load(art, device="cpu").predict([img], boxes=[box[None]])[0].instances
    assert len(out1) == len(out2)
    if len(out1):
        assert out1.shapes[0].almost_equal(out2.shapes[0])
    a.set_image(img)
    res = a.predict(points=[box[:2] / 2 + box[2:] / 2], labels=[1], box=box)
    assert res.backend == "assist_net"
    if res.shape is not None:
        bx = res.shape.bbox
        assert bx[0] >= 0 and bx[1] >= 0 and bx[2] <= img.shape[1] and bx[3] <= img.shape[0]


def test_grabcut_on_real_photo_returns_polygon(datasets_dir):
    from models.datasets import dsmlr_training_set

    ts = dsmlr_training_set(datasets_dir, limit=2)
    img = ts.load_image(1)
    a = make_assistant(
        type(
            "S",
            (),
            {
                "assist_backend": "grabcut",
                "cache_dir": "/nonexistent",
                "device": "cpu",
                "sam_checkpoint": None,
            },
        )()
    )
    a.set_image(img)
    shape = max(ts.records[1].instances.shapes, key=lambda s: s.area)
    res = a.predict(box=shape.bbox)
    assert res.shape is not None and res.shape.area > 0.2 * shape.area


def test_sam_random_vit_b_caches_embedding_and_makes_polygons(tmp_path):
    pytest.importorskip("segment_anything")
    from models.assist.sam import SamAssistant

    img, _ = disc_image(48, 64)
    a = SamAssistant("vit_b", None, cache_dir=tmp_path, device="cpu")
    t0 = time.perf_counter()
    a.set_image(img)
    t_embed = time.perf_counter() - t0
    assert not a.last_embedding_cached
    files = list(tmp_path.rglob("*.npy"))
    assert (
        len(files) == 1
        and np.load(files[0]).dtype == np.float16
        and np.load(files[0]).shape == (1, 256, 64, 64)
    )
    res = a.predict(box=[10, 5, 50, 40])
    assert res.backend == "sam_vit_b_random"
    # drop the in-memory copy: the next set_image must read the fp16 file, not run the encoder
    a.cache.memory.clear()
    a.reset_image()
    t0 = time.perf_counter()
    a.set_image(img)
    assert a.last_embedding_cached and time.perf_counter() - t0 < t_embed / 3
    res_b = a.predict(box=[10, 5, 50, 40])
    assert (res.shape is None) == (res_b.shape is None)
    if res.shape is not None:
        m_a, m_b = res.shape.to_mask(48, 64), res_b.shape.to_mask(48, 64)
        assert mask_iou(m_a, m_b) > 0.9  # fp16 cache rounding may move a few pixels
        assert res.shape.bbox[2] <= 64 and res.shape.bbox[3] <= 48
    # the mask -> polygon path itself, on a decoder-shaped full-size mask with a hole and two parts
    full = np.zeros((48, 64), dtype=bool)
    full[5:30, 10:40] = True
    full[12:20, 20:30] = False
    full[35:45, 50:60] = True
    from models.assist.sam import _crop_to_content

    out = a._to_result(*_crop_to_content(full, 0.9))
    assert len(out.shape.polygons) == 2 and out.shape.has_holes
    np.testing.assert_array_equal(out.shape.to_mask(48, 64), full)


def test_empty_or_degenerate_mask_gives_an_empty_result():
    a = GrabCutAssistant(min_area=16)
    res = a._to_result(np.zeros((10, 10), bool), 0.9)
    assert res.shape is None and res.polygons == [] and res.score == 0.0
    speck = np.zeros((10, 10), bool)
    speck[3, 3] = True  # one pixel: below min_area
    assert a._to_result(speck, 0.9).to_json() == {
        "polygons": [],
        "score": 0.0,
        "backend": "grabcut",
    }


def test_grabcut_beats_box_baseline_on_real_photos(datasets_dir):
    """Box prompt = each labelled part's box on 8 dsmlr photos: GrabCut's mean IoU against
    the polygon is at least that of the box itself taken as the mask (bench_assist.py
    reports the 200-part held-out figure)."""
    from models.assist.learned import evaluate_box_prompts
    from models.datasets import dsmlr_training_set

    ts = dsmlr_training_set(datasets_dir, limit=8)
    a = GrabCutAssistant()

    def grab(img, box):
        a.set_image(img)
        res = a.predict(box=box)
        h, w = img.shape[:2]
        return res.shape.to_mask(h, w) if res.shape is not None else np.zeros((h, w), bool)

    t0 = time.perf_counter()
    r = evaluate_box_prompts(grab, ts)
    assert r["parts"] >= 30
    assert r["mean_iou"] >= r["box_mean_iou"], r
    assert time.perf_counter() - t0 < 15


@pytest.fixture(scope="module")
def sam_random():
    """One random-weight ViT-B assistant (the model is shared per process by _load_sam)."""
    pytest.importorskip("segment_anything")
    from models.assist.sam import SamAssistant

    return SamAssistant("vit_b", None, cache_dir=None, device="cpu")


def _blob_logits(rng: np.random.Generator, n: int = 256):
    """(1, 1, n, n) logits: a few smooth bumps minus a level, so the positive part is a
    partial, irregular region (sometimes touching the grid's border)."""
    import torch

    yy, xx = np.mgrid[0:n, 0:n]
    z = np.zeros((n, n))
    for _ in range(rng.integers(1, 4)):
        cy, cx = rng.uniform(-10, n + 10, 2)
        s = rng.uniform(4, 50)
        z += rng.uniform(1, 3) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    z += 0.05 * rng.standard_normal((n, n))
    return torch.from_numpy((z - 0.8).astype(np.float32))[None, None]


def test_sam_upsample_window_equals_postprocess_masks(sam_random):
    """The windowed upsampling gives exactly SAM's thresholded full-size mask."""
    import torch

    from models.assist.sam_decode import upsample_window

    model = sam_random.predictor.model
    rng = np.random.default_rng(0)
    cases = [((1024, 1024), (1024, 1024)), ((768, 1024), (768, 1024)), ((1024, 700), (1024, 700))]
    cases.append(((1024, 768), (600, 450)))  # a small photo: SAM upsampled it, fallback path
    for input_size, original_size in cases:
        for _ in range(6):
            logits = _blob_logits(rng)
            with torch.inference_mode():
                want = (model.postprocess_masks(logits, input_size, original_size) > 0)[0, 0]
                win, (x0, y0) = upsample_window(model, logits, input_size, original_size)
            want = want.numpy()
            got = np.zeros_like(want)
            if win is not None:
                got[y0 : y0 + win.shape[0], x0 : x0 + win.shape[1]] = win
            np.testing.assert_array_equal(got, want, err_msg=f"{input_size} {original_size}")
    with torch.inference_mode():
        empty = upsample_window(
            model, torch.full((1, 1, 256, 256), -1.0), (1024, 1024), (1024, 1024)
        )
    assert empty == (None, (0, 0))


def test_sam_predict_equals_sam_predictor(sam_random):
    """Best candidate, score and mask equal SamPredictor.predict's (random weights, a cached
    random embedding, so no encoder run)."""
    import torch

    from models.assist.base import image_sha256

    a = sam_random
    img = np.random.default_rng(1).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    gen = torch.Generator().manual_seed(0)
    # scale the random embedding down so the random decoder gives partial masks
    a.cache.put(image_sha256(img), 0.3 * torch.randn(1, 256, 64, 64, generator=gen).numpy())
    a.set_image(img)
    assert a.last_embedding_cached
    prompts = [
        ([], [], np.array([100.0, 200.0, 600.0, 500.0])),
        ([[500.0, 300.0]], [1], None),  # a lone click: three candidates
        ([[300.0, 300.0], [700.0, 400.0]], [1, 0], np.array([50.0, 60.0, 900.0, 700.0])),
    ]
    for pts, labs, box in prompts:
        pts, labs = (
            np.asarray(pts, dtype=np.float64).reshape(-1, 2),
            np.asarray(labs, dtype=np.int64),
        )
        with torch.inference_mode():
            masks, scores, _ = a.predictor.predict(
                point_coords=pts.astype(np.float32) if len(pts) else None,
                point_labels=labs if len(labs) else None,
                box=None if box is None else box.astype(np.float32),
                multimask_output=box is None and len(pts) == 1,
            )
        best = int(np.argmax(scores))
        assert 0.01 < masks[best].mean() < 0.99  # neither empty nor full
        state = a._state
        assert state is not None  # ViT-B's decoder takes the cached path
        for cached_decoder in (True, False):  # DecoderState, and SAM's decoder as fallback
            a._state = state if cached_decoder else None
            crop, score, (x0, y0) = a._predict_mask(pts, labs, box)
            got = np.zeros_like(masks[best])
            got[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]] = crop
            if cached_decoder:  # float32 sums in another order: a pixel at ~0 may flip
                assert mask_iou(got, masks[best]) >= 0.999
            else:
                np.testing.assert_array_equal(got, masks[best])
            assert score == pytest.approx(float(scores[best]), abs=1e-5)
        a._state = state
    # the cached decoder's logits are SAM's up to float32 rounding
    p = a.predictor
    with torch.inference_mode():
        sparse, dense = p.model.prompt_encoder(
            points=(torch.tensor([[[400.0, 300.0]]]), torch.tensor([[1]])), boxes=None, masks=None
        )
        want = p.model.mask_decoder(
            image_embeddings=p.features,
            image_pe=p.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        got = state.decode(sparse, True)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(got[1], want[1], rtol=0, atol=1e-5)
    assert want[0].abs().max() > 0.01  # not a vacuous comparison


@pytest.mark.timeout(120)
def test_mobile_sam_through_ultralytics_with_a_random_checkpoint(tmp_path):
    """The MobileSAM back end end to end on a randomly initialised checkpoint written in the
    layout Ultralytics loads: embedding cache, a polygon for a box and for a click, and a
    corrupt file named in a CheckpointError."""
    import torch
    from ultralytics.models.sam.build import build_mobile_sam

    from models.assist.sam import MobileSamAssistant

    torch.manual_seed(0)
    checkpoint = tmp_path / "mobile_sam.pt"
    torch.save(build_mobile_sam().state_dict(), checkpoint)
    img, _ = disc_image(240, 320)
    first = MobileSamAssistant(checkpoint, cache_dir=tmp_path / "cache", device="cpu")
    first.set_image(img)
    assert first.backend == "mobile_sam" and not first.last_embedding_cached
    boxed = first.predict(box=[40, 20, 200, 180])
    clicked = first.predict(points=[[160, 120]], labels=[1])
    for res in (boxed, clicked):
        # random weights give a speckled mask, but always a polygon inside the photo
        assert res.shape is not None and res.backend == "mobile_sam"
        x0, y0, x1, y1 = res.shape.bbox
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
    again = MobileSamAssistant(checkpoint, cache_dir=tmp_path / "cache", device="cpu")
    again.set_image(img)
    assert again.last_embedding_cached  # the fp16 embedding from disk, no encoder run
    assert again.predict(box=[40, 20, 200, 180]).shape is not None

    broken = tmp_path / "broken" / "mobile_sam.pt"
    broken.parent.mkdir()
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"broken/mobile_sam.pt could not be loaded"):
        MobileSamAssistant(broken, cache_dir=tmp_path / "cache", device="cpu")
