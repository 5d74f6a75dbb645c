"""Aligning a pick-up photo to a return photo: ``align(pre, post, method)``.

Methods: ``sift`` (SIFT + FLANN + ratio test + RANSAC), ``orb`` (ORB + brute force + ratio
test + RANSAC), ``patch-ssl`` (the seed's patch-to-patch self-supervised descriptors, mutual
nearest neighbours, RANSAC) and ``auto``, which runs SIFT and ORB (and patch-ssl when a
trained encoder is at hand) and keeps, among the results that hold with enough inliers, the
one with the lowest reprojection error, saying which in ``method`` and listing every
candidate.

Photos are ``(H, W, 3)`` uint8 RGB; they are matched at ``align_max_side`` pixels and the
homography is returned in original pixels, pre -> post. Thresholds are settings
(``align_min_inliers``, ``align_min_confidence``, ``align_ransac_px``).

The patch-ssl encoder is trained on the project's own photos (``train_patch_ssl``) and kept
as ``patch_ssl`` versions in the model registry (``artifacts/patch_ssl/patch_ssl-v<n>.pt``,
a ``ModelVersion`` row with its losses); without one, ``patch-ssl``
trains a short CPU run on the two photos themselves, as the seed does for single pairs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import cv2
import numpy as np
from sqlmodel import Session, select

from core.alignment import Alignment, ransac_homography
from core.config import env_name, get_settings
from db.models import Image, ModelVersion, Project
from models.alignment import METHODS
from services.errors import Invalid, NotFound

CHOICES: tuple[str, ...] = ("auto", *METHODS)
#: steps of the on-the-spot patch-ssl run when no trained encoder exists
PAIR_TRAIN_STEPS = 120


def check_method(method: str) -> str:
    m = method.strip().lower().replace("_", "-")
    if m not in CHOICES:
        raise Invalid(f"method {method!r} must be one of {', '.join(CHOICES)}")
    return m


def _grey_small(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
    h, w = grey.shape[:2]
    s = min(1.0, side / max(h, w))
    if s < 1.0:
        grey = cv2.resize(grey, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return grey, s


def _size(image: np.ndarray) -> tuple[int, int]:
    return int(image.shape[1]), int(image.shape[0])


def _finish(result: Alignment, t0: float) -> Alignment:
    min_conf = get_settings().align_min_confidence
    seconds = time.perf_counter() - t0
    if result.ok and result.confidence < min_conf:
        return Alignment.failed(
            result.method,
            f"confidence {result.confidence:.2f} is below {min_conf} "
            f"(setting {env_name('align_min_confidence')})",
            inliers=result.inliers,
            matches=result.matches,
            reprojection_error=result.reprojection_error,
            seconds=seconds,
        )
    return Alignment(
        result.homography,
        result.inliers,
        result.confidence,
        result.method,
        result.reason,
        result.matches,
        result.reprojection_error,
        seconds,
    )


def _keypoint_align(pre: np.ndarray, post: np.ndarray, method: str) -> Alignment:
    from models.alignment.classic import orb_matches, sift_matches

    s = get_settings()
    t0 = time.perf_counter()
    a, sa = _grey_small(pre, s.align_max_side)
    b, sb = _grey_small(post, s.align_max_side)
    src, dst = (sift_matches if method == "sift" else orb_matches)(a, b)
    result = ransac_homography(
        src,
        dst,
        method=method,
        min_inliers=s.align_min_inliers,
        ransac_px=s.align_ransac_px,
        pre_scale=sa,
        post_scale=sb,
        pre_size=_size(pre),
        post_size=_size(post),
    )
    return _finish(result, t0)


def _patch_align(pre: np.ndarray, post: np.ndarray, encoder: Any | None) -> Alignment:
    from models.alignment import patch_ssl

    s = get_settings()
    t0 = time.perf_counter()
    if encoder is None:
        encoder = patch_ssl.train(
            [pre, post], patch_ssl.PatchSSLConfig.preset("cpu", steps=PAIR_TRAIN_STEPS)
        )
    src, dst, sa, sb = patch_ssl.patch_matches(encoder, pre, post)
    # the patch grid is coarser than keypoints: RANSAC's threshold scales with the stride
    ransac_px = max(s.align_ransac_px, 1.5 * encoder.config.stride)
    result = ransac_homography(
        src,
        dst,
        method="patch-ssl",
        min_inliers=s.align_min_inliers,
        ransac_px=ransac_px,
        pre_scale=sa,
        post_scale=sb,
        pre_size=_size(pre),
        post_size=_size(post),
    )
    return _finish(result, t0)


def _pick(held: list[Alignment]) -> Alignment:
    """Among the alignments that held, those with at least twice the minimum inliers (all
    of them when none has), the one with the lowest reprojection error. Inlier counts alone
    mislead: on the benchmark ORB found 2-3x SIFT's inliers, yet SIFT's homography was 7x
    closer (bench/bench_alignment.py)."""
    enough = 2 * get_settings().align_min_inliers
    pool = [a for a in held if a.inliers >= enough] or held
    return min(pool, key=lambda a: (a.reprojection_error or 0.0, -a.inliers))


def align(
    pre: np.ndarray, post: np.ndarray, method: str = "auto", *, encoder: Any | None = None
) -> Alignment:
    """The homography mapping ``pre`` pixels to ``post`` pixels, by ``method``; a failed
    alignment has ``homography`` None and a ``reason``."""
    method = check_method(method)
    for name, im in (("pre", pre), ("post", post)):
        if im.ndim not in (2, 3) or min(im.shape[:2]) < 32:
            raise Invalid(f"the {name} photo must be an image of at least 32x32 pixels")
    if method in ("sift", "orb"):
        return _keypoint_align(pre, post, method)
    if method == "patch-ssl":
        return _patch_align(pre, post, encoder)
    t0 = time.perf_counter()
    candidates = [_keypoint_align(pre, post, "sift"), _keypoint_align(pre, post, "orb")]
    if encoder is not None:
        candidates.append(_patch_align(pre, post, encoder))
    listed = [c.as_dict() for c in candidates]
    held = [c for c in candidates if c.ok]
    seconds = time.perf_counter() - t0
    if not held:
        reasons = "; ".join(f"{c.method}: {c.reason}" for c in candidates)
        best = max(candidates, key=lambda c: c.inliers)
        return Alignment(
            None,
            best.inliers,
            0.0,
            "auto",
            f"no method aligned the photos ({reasons})",
            best.matches,
            None,
            seconds,
            listed,
        )
    best = _pick(held)
    return Alignment(
        best.homography,
        best.inliers,
        best.confidence,
        best.method,
        None,
        best.matches,
        best.reprojection_error,
        seconds,
        listed,
    )


# -- the project's patch-ssl encoder ------------------------------------------------

#: The encoder's stage in the model registry. It is not one of ``models.registry``'s
#: trainable stages (it predicts no labels), so rounds never train or pre-annotate with it.
STAGE = "patch_ssl"


def patch_ssl_version(session: Session) -> ModelVersion | None:
    """The encoder to align with: the promoted patch-ssl version, else the newest one."""
    from services.training.registry import current, versions

    return current(session, STAGE) or (versions(session, STAGE) or [None])[-1]


def latest_patch_ssl(session: Session) -> Any | None:
    """The registered encoder (:func:`patch_ssl_version`), loaded after its file's sha256 is
    checked, or None when none was trained."""
    from models.alignment import patch_ssl
    from services.training.registry import verified_artifact

    mv = patch_ssl_version(session)
    return patch_ssl.load(verified_artifact(mv)) if mv is not None else None


def train_patch_ssl(
    session: Session,
    project: Project,
    *,
    preset: str = "cpu",
    steps: int | None = None,
    max_photos: int = 200,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Train the patch-ssl encoder on up to ``max_photos`` of the project's photos and
    register it as the next ``patch_ssl`` model version (metrics: NT-Xent losses, steps,
    photos, preset; snapshot: the photo ids). It is not promoted: the aligner uses the
    newest version unless a lead promotes another. Returns the version's id, name, path,
    first/last loss and time."""
    from models.alignment import patch_ssl
    from services.labelling.images import load_image_array
    from services.training.registry import artifact_tmp_path, register_version

    try:
        config = patch_ssl.PatchSSLConfig.preset(preset, **({"steps": steps} if steps else {}))
    except ValueError as e:
        raise Invalid(str(e)) from e
    images = session.exec(
        select(Image).where(Image.project_id == project.id).order_by(Image.id).limit(max_photos)
    ).all()
    if not images:
        raise NotFound(f"project {project.name} has no photos to train the aligner on")
    arrays = [load_image_array(im, max_side=config.image_side) for im in images]
    trained = patch_ssl.train(arrays, config, progress)
    tmp = trained.save(artifact_tmp_path(STAGE))
    # no ``primary_metric``: the registry reads it as higher-is-better, and a loss is not
    metrics = {
        "final_loss": trained.losses[-1],
        "first_loss": trained.losses[0],
        "loss_drop": patch_ssl.loss_drop(trained.losses, 20),
        "steps": config.steps,
        "photos": len(arrays),
        "preset": preset,
        "train_seconds": round(trained.seconds, 2),
        # what the dashboard's version table shows as "why"
        "promotion": {
            "reason": f"aligner encoder ({preset}, {config.steps} steps): NT-Xent "
            f"{trained.losses[0]:.3f} -> {trained.losses[-1]:.3f}; the aligner uses the "
            "promoted patch_ssl version, else the newest"
        },
    }
    try:
        mv = register_version(
            session,
            stage=STAGE,
            artifact_path=tmp,
            metrics=metrics,
            config=asdict(config),
            train_snapshot={
                "project_id": project.id,
                "count": len(images),
                "image_ids": [im.id for im in images],
            },
        )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return {
        "id": mv.id,
        "name": mv.name,
        "path": mv.path,
        "sha256": mv.sha256,
        "preset": preset,
        "photos": len(arrays),
        "steps": config.steps,
        "first_loss": trained.losses[0],
        "last_loss": trained.losses[-1],
        "loss_drop": metrics["loss_drop"],
        "seconds": metrics["train_seconds"],
    }
