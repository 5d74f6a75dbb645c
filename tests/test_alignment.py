"""Aligners: SIFT recovers a synthetic walk-around warp of a real photo; a blank or
unrelated pair gives no homography and a reason; the patch-ssl encoder trains (its loss
falls) and answers in the same shape; ``panelbeater align --json``."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image as PILImage

PHOTO = "coco_car_damage/train/17.jpg"
H_TRUE = np.array([[0.95, -0.16, 70.0], [0.14, 0.97, -12.0], [3e-5, 2e-5, 1.0]])


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    from conftest import SHARED_DATASETS

    from exports.image_files import load_image_rgb

    pre = load_image_rgb(SHARED_DATASETS / PHOTO)
    h, w = pre.shape[:2]
    post = cv2.warpPerspective(pre, H_TRUE, (w, h), borderMode=cv2.BORDER_REFLECT)
    post = np.clip(post.astype(np.float32) * 1.15 - 10, 0, 255).astype(np.uint8)  # lighting
    post = cv2.GaussianBlur(post, (3, 3), 0.8)
    return pre, post


def test_sift_and_auto_recover_a_walk_around_warp(pair) -> None:
    from core.alignment import corner_error
    from services.claims.alignment import align

    pre, post = pair
    h, w = pre.shape[:2]
    sift = align(pre, post, "sift")
    assert sift.ok and sift.method == "sift", sift.reason
    assert corner_error(sift.homography, H_TRUE, w, h) < 3.0
    assert sift.inliers >= 50 and 0.5 < sift.confidence <= 1.0
    auto = align(pre, post, "auto")
    assert auto.ok and auto.method in ("sift", "orb")
    assert {c["method"] for c in auto.candidates} == {"sift", "orb"}
    assert corner_error(auto.homography, H_TRUE, w, h) < 5.0


@pytest.mark.parametrize("other", ["blank", "noise"])
def test_nothing_to_match_gives_no_homography_and_a_reason(pair, other: str) -> None:
    from services.claims.alignment import align

    pre, _ = pair
    rng = np.random.default_rng(0)
    post = (
        np.full_like(pre, 127)
        if other == "blank"
        else rng.integers(0, 255, pre.shape, dtype=np.uint8)
    )
    for method in ("sift", "orb", "auto") if other == "blank" else ("auto",):
        a = align(pre, post, method)
        assert a.homography is None and a.reason, (method, a)
        assert a.as_dict()["homography"] is None


def test_patch_ssl_trains_with_falling_loss_and_answers_well_formed(pair) -> None:
    from models.alignment import patch_ssl
    from services.claims.alignment import align

    pre, post = pair
    cfg = patch_ssl.PatchSSLConfig.preset("cpu", steps=8, image_side=160, stride=8)
    trained = patch_ssl.train([pre], cfg)
    assert len(trained.losses) == 8 and all(np.isfinite(trained.losses))
    assert patch_ssl.loss_drop(trained.losses, 3) > 0.05, trained.losses
    centres, feats, _ = patch_ssl.describe(trained, pre)
    assert centres.shape[1] == 2 and feats.shape == (len(centres), 128)
    assert np.allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-4)
    a = align(pre, post, "patch-ssl", encoder=trained)
    assert a.method == "patch-ssl"
    if a.ok:
        assert a.homography.shape == (3, 3) and a.inliers >= 12
    else:
        assert a.reason
    d = a.as_dict()
    assert set(d) >= {"homography", "method", "inliers", "confidence", "reason"}


def test_cli_align_json(pair, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.main import app

    pre, post = pair
    paths = []
    for name, img in (("pre.jpg", pre), ("post.jpg", post), ("blank.jpg", pre * 0 + 90)):
        PILImage.fromarray(img).save(tmp_path / name, quality=92)
        paths.append(str(tmp_path / name))
    runner = CliRunner()
    base = ["--data-dir", str(tmp_path / "d"), "align"]
    r = runner.invoke(app, [*base, paths[0], paths[1], "--method", "sift", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["method"] == "sift" and len(out["homography"]) == 3 and out["inliers"] > 0
    r = runner.invoke(app, [*base, paths[0], paths[2], "--method", "orb", "--json"])
    out = json.loads(r.output)
    assert out["homography"] is None and out["reason"]
    r = runner.invoke(app, [*base, paths[0], paths[1], "--method", "magic"])
    assert r.exit_code == 1 and "must be one of" in r.output
