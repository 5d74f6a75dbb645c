"""The result of aligning a pick-up photo to a return photo, and the homography arithmetic
every aligner shares (``models.alignment``, ``services.claims.alignment``).

A homography is a ``(3, 3)`` float64 matrix that maps pre-trip pixels ``(x, y, 1)`` to
return-photo pixels, in the photos' original pixel coordinates (after EXIF orientation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from core.geometry import Polygon, Shape


@dataclass(frozen=True)
class Alignment:
    """``homography`` maps pre pixels to post pixels, or is None with a ``reason``.

    ``inliers`` are RANSAC inliers among ``matches`` point matches; ``reprojection_error`` is
    their mean distance in post pixels; ``confidence`` in [0, 1] grows with the inlier share
    and count. ``method`` says which aligner produced it (for ``auto``, the one it picked)."""

    homography: np.ndarray | None
    inliers: int
    confidence: float
    method: str
    reason: str | None = None
    matches: int = 0
    reprojection_error: float | None = None
    seconds: float = 0.0
    #: for ``auto``: every aligner's result, as ``as_dict`` without this field
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.homography is not None and np.asarray(self.homography).shape != (3, 3):
            raise ValueError(f"homography must be (3, 3), got {np.asarray(self.homography).shape}")

    @property
    def ok(self) -> bool:
        return self.homography is not None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "homography": None
            if self.homography is None
            else [[round(float(v), 8) for v in row] for row in self.homography],
            "method": self.method,
            "inliers": int(self.inliers),
            "matches": int(self.matches),
            "confidence": round(float(self.confidence), 4),
            "reprojection_error": None
            if self.reprojection_error is None
            else round(float(self.reprojection_error), 3),
            "reason": self.reason,
            "seconds": round(float(self.seconds), 4),
        }
        if self.candidates:
            out["candidates"] = self.candidates
        return out

    @classmethod
    def failed(cls, method: str, reason: str, **kw: Any) -> Alignment:
        return cls(None, kw.pop("inliers", 0), 0.0, method, reason, **kw)


def scale_matrix(s: float) -> np.ndarray:
    return np.diag([s, s, 1.0])


def warp_points(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``(N, 2)`` points through homography ``h``; ``(N, 2)`` float64."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    ph = np.hstack([pts, np.ones((len(pts), 1))]) @ np.asarray(h, dtype=np.float64).T
    w = ph[:, 2:3]
    w = np.where(np.abs(w) < 1e-12, 1e-12, w)
    return ph[:, :2] / w


def corner_error(h_est: np.ndarray, h_true: np.ndarray, width: int, height: int) -> float:
    """Mean distance (post pixels) between the four image corners mapped by each matrix."""
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    return float(
        np.linalg.norm(warp_points(h_est, corners) - warp_points(h_true, corners), axis=1).mean()
    )


def plausible(h: np.ndarray, pre_size: tuple[int, int], post_size: tuple[int, int]) -> str | None:
    """Why ``h`` cannot be a second walk-around of the same car, or None when it can: the
    pre photo's corners must map to a convex quadrilateral that overlaps the post photo,
    with an area between 1/16 and 16 times the post photo's."""
    w, h_ = pre_size
    corners = np.array([[0, 0], [w, 0], [w, h_], [0, h_]], dtype=np.float64)
    q = warp_points(h, corners)
    if not np.all(np.isfinite(q)):
        return "the homography sends the photo's corners to infinity"
    cross = []
    for k in range(4):
        a, b, c = q[k], q[(k + 1) % 4], q[(k + 2) % 4]
        cross.append((b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]))
    if not (all(c > 0 for c in cross) or all(c < 0 for c in cross)):
        return "the homography folds the photo (its corners are not a convex quadrilateral)"
    area = abs(cv2.contourArea(q.astype(np.float32)))
    pw, ph = post_size
    ratio = area / float(pw * ph)
    if not 1 / 16 <= ratio <= 16:
        return f"the homography scales the photo's area by {ratio:.3g}, beyond 1/16..16"
    cx, cy = q.mean(axis=0)
    if not (-pw <= cx <= 2 * pw and -ph <= cy <= 2 * ph):
        return "the homography moves the photo off the other photo"
    return None


def ransac_homography(
    src: np.ndarray,
    dst: np.ndarray,
    *,
    method: str,
    min_inliers: int,
    ransac_px: float,
    pre_scale: float,
    post_scale: float,
    pre_size: tuple[int, int],
    post_size: tuple[int, int],
) -> Alignment:
    """A homography from point matches found at reduced sizes: ``src`` in pre pixels times
    ``pre_scale``, ``dst`` in post pixels times ``post_scale`` (both ``(N, 2)``). The result
    is in original pixels. ``pre_size``/``post_size`` are the original ``(width, height)``."""
    n = len(src)
    if n < max(4, min_inliers):
        return Alignment.failed(
            method, f"only {n} point matches (at least {max(4, min_inliers)} needed)", matches=n
        )
    h_small, mask = cv2.findHomography(
        np.float32(src), np.float32(dst), cv2.RANSAC, ransac_px, maxIters=4000, confidence=0.999
    )
    if h_small is None or mask is None:
        return Alignment.failed(method, "RANSAC found no homography", matches=n)
    inl = mask.ravel().astype(bool)
    k = int(inl.sum())
    err_small = np.linalg.norm(warp_points(h_small, src[inl]) - dst[inl], axis=1)
    err = float(err_small.mean() / post_scale) if k else None
    h = np.linalg.inv(scale_matrix(post_scale)) @ h_small @ scale_matrix(pre_scale)
    h = h / h[2, 2]
    # share of matches that agree, saturating with the count: 30 % of 200 matches is a
    # confident fit; 12 of 20 on a blank photo is not
    confidence = float(min(1.0, (k / n) * min(1.0, k / (4.0 * min_inliers)) * 1.5))
    if k < min_inliers:
        return Alignment.failed(
            method,
            f"only {k} RANSAC inliers of {n} matches (at least {min_inliers} needed)",
            inliers=k,
            matches=n,
            reprojection_error=err,
        )
    why = plausible(h, pre_size, post_size)
    if why:
        return Alignment.failed(method, why, inliers=k, matches=n, reprojection_error=err)
    return Alignment(h, k, confidence, method, None, n, err)


def warp_shape(h: np.ndarray, shape: Shape) -> Shape:
    """``shape`` with every ring mapped through ``h`` (a pre damage drawn in the post photo)."""
    return Shape(
        tuple(
            Polygon(warp_points(h, p.exterior), tuple(warp_points(h, r) for r in p.holes))
            for p in shape.polygons
        )
    )
