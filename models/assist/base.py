"""The shape every assistance back end has, after segment-anything's ``SamPredictor``.

``set_image(image)`` does the expensive per-image work once (a SAM embedding, kept in
memory and on disk); ``predict(points, labels, box)`` is cheap and repeatable and returns
an :class:`AssistResult` whose polygons are in original image pixels. Calling ``predict``
before ``set_image`` raises ``RuntimeError``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.files import atomic_write
from core.geometry import Shape, mask_to_shape


@dataclass
class AssistResult:
    """Polygons (holes and several parts kept) in original pixels; ``shape`` is None when
    the back end found nothing usable (empty or degenerate mask)."""

    shape: Shape | None
    score: float
    backend: str
    mask: np.ndarray | None = field(default=None, repr=False)
    #: A sentence when the answer is no better than the prompt itself (GrabCut returning
    #: the box), for the workspace to show; None otherwise.
    note: str | None = None

    @property
    def polygons(self) -> list[dict]:
        """JSON polygons as the API returns them (``Shape.to_json``)."""
        return [] if self.shape is None else self.shape.to_json()

    def to_json(self) -> dict:
        out = {"polygons": self.polygons, "score": float(self.score), "backend": self.backend}
        return out if self.note is None else {**out, "note": self.note}


def image_sha256(image: np.ndarray) -> str:
    """Key of an image's pixels (not its file), so the same photo hits the cache however it was read."""
    h = hashlib.sha256()
    h.update(str(image.shape).encode())
    h.update(np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """fp16 arrays on disk at ``<dir>/<model key>/<sha256>.npy`` plus a small in-memory dict."""

    def __init__(self, directory: str | Path | None, model_key: str, memory_items: int = 8):
        self.dir = None if directory is None else Path(directory) / model_key.replace("/", "_")
        self.memory: dict[str, np.ndarray] = {}
        self.memory_items = memory_items

    def get(self, key: str) -> np.ndarray | None:
        if key in self.memory:
            return self.memory[key]
        if self.dir is not None:
            path = self.dir / f"{key}.npy"
            if path.is_file():
                try:
                    arr = np.load(path)
                except (OSError, ValueError):
                    path.unlink(missing_ok=True)  # a torn write: recompute rather than fail
                    return None
                self._remember(key, arr)
                return arr
        return None

    def put(self, key: str, arr: np.ndarray) -> None:
        arr = np.asarray(arr, dtype=np.float16)
        self._remember(key, arr)
        if self.dir is not None:
            with atomic_write(self.dir / f"{key}.npy") as f:
                np.save(f, arr)

    def _remember(self, key: str, arr: np.ndarray) -> None:
        if len(self.memory) >= self.memory_items:
            self.memory.pop(next(iter(self.memory)))
        self.memory[key] = arr


def validate_prompt(
    points: object, labels: object, box: object, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Check and normalise a prompt: ``points`` (K, 2) float xy, ``labels`` (K,) 1=foreground
    0=background, ``box`` (4,) xyxy or None; all in original image pixels."""
    pts = (
        np.zeros((0, 2)) if points is None else np.asarray(points, dtype=np.float64).reshape(-1, 2)
    )
    labs = (
        np.zeros(0, dtype=np.int64)
        if labels is None
        else np.asarray(labels, dtype=np.int64).reshape(-1)
    )
    if len(pts) != len(labs):
        raise ValueError(
            f"got {len(pts)} points but {len(labs)} labels; give one label (1 or 0) per point"
        )
    if len(labs) and not np.isin(labs, (0, 1)).all():
        raise ValueError("point labels must be 1 (foreground) or 0 (background)")
    if not np.isfinite(pts).all():
        raise ValueError("points must be finite numbers")
    b = None
    if box is not None:
        b = np.asarray(box, dtype=np.float64).reshape(-1)
        if b.shape != (4,) or not np.isfinite(b).all():
            raise ValueError(f"box must be [x0, y0, x1, y1], got {box!r}")
        b = np.array([min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])])
        b[[0, 2]] = b[[0, 2]].clip(0, width)
        b[[1, 3]] = b[[1, 3]].clip(0, height)
        if b[2] - b[0] < 1 or b[3] - b[1] < 1:
            raise ValueError(
                f"box {list(np.round(b, 1))} is empty inside the {width}x{height} image"
            )
    if b is None and not (labs == 1).any():
        raise ValueError("give a box or at least one foreground point (label 1)")
    return pts, labs, b


class Assistant:
    """Base of the back ends: prompt checks, out-of-order errors and mask -> polygons."""

    backend = "base"

    def __init__(self, tolerance: float = 1.0, min_area: float = 16.0):
        self.tolerance = tolerance
        self.min_area = min_area
        self._image: np.ndarray | None = None

    @property
    def is_image_set(self) -> bool:
        return self._image is not None

    def set_image(self, image: np.ndarray) -> None:
        """Take an ``(H, W, 3)`` uint8 RGB photo and do the per-image work."""
        if (
            not isinstance(image, np.ndarray)
            or image.ndim != 3
            or image.shape[2] != 3
            or image.dtype != np.uint8
        ):
            raise ValueError(
                f"set_image needs an (H, W, 3) uint8 RGB array, got shape {getattr(image, 'shape', None)}"
            )
        self._image = image
        self._prepare(image)

    def reset_image(self) -> None:
        self._image = None

    def predict(
        self, points: object = None, labels: object = None, box: object = None
    ) -> AssistResult:
        """Segment what the prompt points at; coordinates in original pixels."""
        if self._image is None:
            raise RuntimeError(f"{type(self).__name__}: call set_image(image) before predict()")
        h, w = self._image.shape[:2]
        pts, labs, b = validate_prompt(points, labels, box, w, h)
        mask, score, offset = self._predict_mask(pts, labs, b)
        return self._to_result(mask, score, offset)

    def _to_result(
        self, mask: np.ndarray, score: float, offset: tuple[int, int] = (0, 0)
    ) -> AssistResult:
        """``mask`` may be a window of the image whose top-left pixel is ``offset`` (x, y):
        tracing only the window keeps latency independent of the photo's size."""
        shape = mask_to_shape(mask, tolerance=self.tolerance, min_area=self.min_area)
        if shape is not None and offset != (0, 0):
            shape = shape.translated(float(offset[0]), float(offset[1]))
        return AssistResult(
            shape=shape,
            score=float(score) if shape is not None else 0.0,
            backend=self.backend,
            mask=None,
        )

    # -- back ends fill these --------------------------------------------------
    def _prepare(self, image: np.ndarray) -> None:  # pragma: no cover - trivial default
        pass

    def _predict_mask(
        self, points: np.ndarray, labels: np.ndarray, box: np.ndarray | None
    ) -> tuple[np.ndarray, float, tuple[int, int]]:
        raise NotImplementedError


def prompt_window(
    points: np.ndarray,
    labels: np.ndarray,
    box: np.ndarray | None,
    width: int,
    height: int,
    margin: float,
) -> tuple[int, int, int, int]:
    """Integer xyxy window around the box (or the foreground points), grown by ``margin`` of its size."""
    if box is not None:
        x0, y0, x1, y1 = box
    else:
        fg = points[labels == 1]
        x0, y0 = fg.min(0)
        x1, y1 = fg.max(0)
        # a lone click: guess an object about a fifth of the photo around it
        r = 0.1 * max(width, height)
        x0, y0, x1, y1 = x0 - r, y0 - r, x1 + r, y1 + r
    mw, mh = margin * (x1 - x0), margin * (y1 - y0)
    return (
        int(max(0, np.floor(x0 - mw))),
        int(max(0, np.floor(y0 - mh))),
        int(min(width, np.ceil(x1 + mw))),
        int(min(height, np.ceil(y1 + mh))),
    )
