"""ALBERT: Hungarian matching and each loss term on hand-computed values, the model's
shapes, inference post-processing, files, and learning on 8 real photos."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.albert.config import AlbertConfig
from models.albert.losses import bce_loss, dice_loss, focal_loss, soft_iou_loss, weighted_ce
from models.albert.matching import dice_cost, linear_assignment, match
from models.albert.optim import warmup_cosine
from models.albert.priors import gaussian_prior, part_prior_boost
from models.base import CheckpointError

LOG2 = math.log(2)


def test_linear_assignment_picks_the_cheapest_pairing():
    cost = np.array([[4.0, 1.0, 3.0], [2.0, 0.0, 5.0], [3.0, 2.0, 2.0]])
    rows, cols = linear_assignment(cost)
    # greedy would take (1,1)=0 first and pay 0+4+2... the optimum is 1 + 2 + 2 = 5
    assert cost[rows, cols].sum() == 5.0
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 1: 0, 2: 2}


def test_match_assigns_queries_to_their_masks():
    t = torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 1.0]]])  # top row, bottom row
    q = torch.stack(
        [t[1] * 20 - 10, torch.zeros(2, 2) - 10, t[0] * 20 - 10]
    )  # query 0 = bottom, 2 = top
    rows, cols = match(q, torch.zeros(3, 2), t)
    assert dict(zip(rows.tolist(), cols.tolist(), strict=True)) == {0: 1, 2: 0}
    # the class cost alone decides when masks are equal
    rows, cols = match(torch.zeros(2, 2, 2), torch.tensor([[0.9], [0.1]]), t[:1])
    assert rows.tolist() == [0] and cols.tolist() == [0]
    assert match(q, torch.zeros(3, 0), torch.zeros(0, 2, 2))[0].size == 0


def test_dice_bce_iou_on_hand_values():
    logits = torch.zeros(1, 4)  # p = 0.5 everywhere
    t = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    # dice: 1 - (2*1 + 1) / (2 + 2 + 1) = 0.4
    assert dice_loss(logits, t).item() == pytest.approx(0.4)
    assert dice_cost(logits, t).item() == pytest.approx(0.4)
    # soft IoU: 1 - (1 + 1) / (2 + 2 - 1 + 1) = 0.5
    assert soft_iou_loss(logits, t).item() == pytest.approx(0.5)
    assert bce_loss(logits, t).item() == pytest.approx(LOG2)
    # a confident, right prediction costs almost nothing
    good = torch.tensor([[20.0, -20.0, 20.0, -20.0]])
    assert dice_loss(good, t, smooth=0).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_iou_loss(good, t, smooth=0).item() == pytest.approx(0.0, abs=1e-6)


def test_focal_and_weighted_ce_on_hand_values():
    # logit 0 (p=0.5): positive -> 0.25 * 0.5^2 * ln2; negative -> 0.75 * 0.5^2 * ln2
    f = focal_loss(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), alpha=0.25, gamma=2.0)
    assert f.item() == pytest.approx(0.25 * 0.25 * LOG2 + 0.75 * 0.25 * LOG2)
    assert focal_loss(
        torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), normalizer=2
    ).item() == pytest.approx(f.item() / 2)
    # gamma 0, alpha 0.5 is half the BCE
    assert focal_loss(torch.zeros(1, 1), torch.ones(1, 1), 0.5, 0.0).item() == pytest.approx(
        0.5 * LOG2
    )
    # CE with 3 classes, uniform logits: ln 3 for each row whatever the weights
    z = torch.zeros(2, 3)
    assert weighted_ce(z, torch.tensor([0, 2]), 0.1).item() == pytest.approx(math.log(3))
    # weights: (1 * a + 0.1 * b) / 1.1 with a, b the per-row CE
    z = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    a = -math.log(math.exp(2) / (math.exp(2) + 2))
    b = -math.log(1 / (math.exp(2) + 2))
    assert weighted_ce(z, torch.tensor([0, 0]), 0.1).item() == pytest.approx((a + b) / 2)
    z2 = torch.tensor([[2.0, 0.0, 0.0], [2.0, 0.0, 0.0]])
    assert weighted_ce(z2, torch.tensor([0, 2]), 0.1).item() == pytest.approx((a + 0.1 * b) / 1.1)


def test_mirrored_target_flips_masks_and_swaps_sides():
    from core.taxonomy import default_taxonomy
    from models.albert.losses import Target

    tax = default_taxonomy()
    hi = lambda name: tax.head_index(tax.by_name(name).id)  # noqa: E731
    n_dmg, n_part = len(tax.group("damage")), len(tax.group("part"))
    masks = torch.zeros(3, 2, 4)
    masks[:, :, 0] = 1  # everything on the left edge
    fake = torch.zeros(3, len(tax.group("fake")))
    fake[1, 2] = 1
    t = Target(
        masks=masks,
        # a dent on the front-left door, a fake instance on no part, the front-left door itself
        damage=torch.tensor([hi("dent"), n_dmg, n_dmg]),
        part=torch.tensor([hi("front_left_door"), n_part, hi("front_left_door")]),
        fake=fake,
        head=torch.tensor([0, 1, 2]),
        index=torch.tensor([hi("dent"), 2, hi("front_left_door")]),
    )
    mirrors = {h: torch.from_numpy(tax.mirror_index(h)) for h in ("damage", "fake", "part")}
    m = t.mirrored(mirrors)
    assert m.masks[:, :, 3].eq(1).all() and m.masks[:, :, :3].eq(0).all()
    assert m.damage.tolist() == [hi("dent"), n_dmg, n_dmg]
    assert m.part.tolist() == [hi("front_right_door"), n_part, hi("front_right_door")]
    assert m.index.tolist() == [hi("dent"), 2, hi("front_right_door")]
    assert torch.equal(m.fake, fake) and torch.equal(m.head, t.head)
    back = m.mirrored(mirrors)
    assert torch.equal(back.masks, t.masks) and torch.equal(back.part, t.part)


def test_schedule_and_priors():
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0)
    m = np.zeros((9, 9), np.float32)
    m[2:7, 2:7] = 1.0
    g = gaussian_prior(m, 0.3)
    assert g[4, 4] == pytest.approx(1.0) and g[2, 2] < 0.7 and g.max() <= 1.0
    # eq. 20: a damage query lying fully on a confident part gets +alpha on its damage logits
    mprob = np.zeros((2, 4, 4), np.float32)
    mprob[0, :2] = 0.9  # the part
    mprob[1, :1] = 1.0  # the damage, inside the part
    pp = np.array(
        [[0.9, 0.1], [0.1, 0.9]], np.float32
    )  # query 0 is a confident part; last col no-object
    zd = torch.zeros(2, 3)
    out = part_prior_boost(zd, mprob, pp, alpha=2.0, tau=0.5)
    assert out[1, :2].tolist() == pytest.approx(
        [2.0 * 0.5, 2.0 * 0.5]
    )  # mean of 1,1 rows over 2 rows of 0.5
    assert out[:, 2].tolist() == [0.0, 0.0]


def test_tiny_albert_shapes_files_and_bad_checkpoints(tmp_path):
    from core.taxonomy import Taxonomy, default_taxonomy
    from models.albert.stage import AlbertStage
    from models.registry import build, load

    cfg = AlbertConfig.from_preset("tiny", device="cpu", score_threshold=0.0, top_k=5)
    st = build("albert", cfg)
    rng = np.random.default_rng(0)
    imgs = [
        rng.integers(0, 255, (90, 120, 3), dtype=np.uint8),
        rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
    ]
    res = st.predict(imgs)
    assert len(res) == 2
    for r, im in zip(res, imgs, strict=True):
        inst = r.instances
        assert r.image_embedding.shape == (cfg.dim,) and np.isfinite(r.image_embedding).all()
        assert inst.probs["damage"].shape == (len(inst), 27) and inst.probs["part"].shape == (
            len(inst),
            62,
        )
        assert inst.probs["fake"].shape == (len(inst), 7)
        np.testing.assert_allclose(inst.probs["damage"].sum(1), 1, atol=1e-5)
        np.testing.assert_allclose(inst.probs["part"].sum(1), 1, atol=1e-5)
        for p in inst.probs.values():
            assert np.isfinite(p).all()
        assert inst.embeddings.shape == (len(inst), cfg.dim)
        if len(inst):
            assert (inst.boxes[:, 2] <= im.shape[1] + 0.5).all() and (
                inst.boxes[:, 3] <= im.shape[0] + 0.5
            ).all()
    path = st.save(tmp_path / "albert-v1.pt")
    again = load(path, device="cpu")
    assert isinstance(again, AlbertStage)
    a, b = st.forward_images(imgs[:1]), again.forward_images(imgs[:1])
    torch.testing.assert_close(a["masks"], b["masks"])
    small = Taxonomy([c for c in default_taxonomy() if c.id != 26])
    with pytest.raises(CheckpointError, match="damage: file has 26, taxonomy has 25"):
        AlbertStage.load(path, taxonomy=small)
    with pytest.raises(ValueError, match="uint8 RGB"):
        st.predict([np.zeros((4, 4), np.float32)])


def test_vit_weights_in_timm_and_torchvision_layout(tmp_path):
    from models.albert.encoder import ViTEncoder, load_vit_weights

    enc = ViTEncoder(64, 16, 32, 2, 2, 2.0)
    src = ViTEncoder(32, 16, 32, 2, 2, 2.0)  # a 2x2 grid, resized to 4x4 on load
    sd = src.state_dict()
    sd["pos_embed"] = torch.cat([torch.zeros(1, 1, 32), sd["pos_embed"]], 1)  # with a class token
    torch.save({"model": sd}, tmp_path / "timm.pth")
    missing = load_vit_weights(enc, tmp_path / "timm.pth")
    assert missing == []
    torch.testing.assert_close(enc.blocks[1].attn.qkv.weight, src.blocks[1].attn.qkv.weight)
    tv = {
        "conv_proj.weight": sd["patch_embed.proj.weight"],
        "encoder.layers.encoder_layer_0.self_attention.in_proj_weight": sd[
            "blocks.0.attn.qkv.weight"
        ],
        "encoder.layers.encoder_layer_0.mlp.0.weight": sd["blocks.0.mlp.fc1.weight"],
    }
    torch.save(tv, tmp_path / "tv.pth")
    enc2 = ViTEncoder(64, 16, 32, 2, 2, 2.0)
    load_vit_weights(enc2, tmp_path / "tv.pth")
    torch.testing.assert_close(enc2.blocks[0].mlp.fc1.weight, src.blocks[0].mlp.fc1.weight)
    with pytest.raises(CheckpointError, match="do not exist"):
        load_vit_weights(enc2, tmp_path / "none.pth")


def test_tiny_albert_learns_on_eight_real_photos(datasets_dir, tmp_path):
    import cv2

    from core.geometry import masks_iou_matrix
    from models.albert.stage import AlbertStage
    from models.datasets import dsmlr_training_set

    ts = dsmlr_training_set(datasets_dir, limit=8)
    imgs = [ts.load_image(i) for i in range(8)]

    def mean_best_iou(stage: AlbertStage) -> float:
        out = stage.forward_images(imgs)
        ious = []
        for k, rec in enumerate(ts.records):
            pm = np.stack(
                [
                    cv2.resize(m, (rec.width, rec.height)) > 0.5
                    for m in out["masks"][k].sigmoid().numpy()
                ]
            )
            ious.append(
                masks_iou_matrix(rec.instances.masks(rec.height, rec.width), pm).max(1).mean()
            )
        return float(np.mean(ious))

    cfg = AlbertConfig.from_preset("tiny", device="cpu", epochs=30, lr=1e-3, warmup_steps=5)
    st = AlbertStage(cfg, ts.taxonomy)
    before = mean_best_iou(st)
    losses: list[float] = []
    result = st.train(
        ts, progress=lambda e, n, info: losses.append(info["loss"]), out_path=tmp_path / "a.pt"
    )
    after = mean_best_iou(st)
    print(
        f"ALBERT tiny on 8 dsmlr photos: loss {losses[0]:.2f} -> {losses[-1]:.2f}, "
        f"mean best mask IoU {before:.3f} -> {after:.3f}"
    )
    assert result.artifact_path.is_file()
    assert losses[-1] < 0.7 * losses[0]
    assert sum(b < a for a, b in zip(losses, losses[1:], strict=False)) >= 0.7 * (len(losses) - 1)
    assert after > 0.15 and after > 3 * before
    metrics = st.evaluate(ts)
    assert set(metrics) == {"damage", "fake", "part"} and metrics["part"]["instances"] == sum(
        len(r.instances) for r in ts.records
    )
