"""The one instance datatype every stage, importer, exporter, metric and the UI speak.

:class:`Instances` holds N instances of one image as parallel columns, in the spirit of
``supervision.Detections``: shapes (polygons with holes and several parts), xyxy boxes,
taxonomy class ids, scores, per-head full probability vectors, optional embeddings, and
per-instance attributes. :class:`ImageResult` adds the image-level embedding a stage
computed, which active learning uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.geometry import Shape

#: Attribute keys an annotation may carry; anything else is kept but not interpreted.
ATTRIBUTE_KEYS = ("severity", "part_id", "fake", "fake_note", "occluded")
SEVERITIES = ("minor", "moderate", "severe")


@dataclass
class Instances:
    """N instances of one image.

    Attributes:
        shapes: N shapes in original image pixels.
        class_ids: ``(N,)`` int64 taxonomy class ids (the instance's primary label).
        scores: ``(N,)`` float32 confidence; 1.0 for human labels.
        boxes: ``(N, 4)`` float32 xyxy; derived from the shapes when not given.
        probs: head name (``"damage"``, ``"fake"``, ``"part"``, ``"damaged"``...) ->
            ``(N, C_head)`` float32 full probability vector.
        embeddings: ``(N, D)`` float32 per-instance embedding, or None.
        attributes: N dicts (see ``ATTRIBUTE_KEYS``).
        data: further per-instance columns, each of length N.
    """

    shapes: list[Shape]
    class_ids: np.ndarray
    scores: np.ndarray | None = None
    boxes: np.ndarray | None = None
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    embeddings: np.ndarray | None = None
    attributes: list[dict[str, Any]] | None = None
    data: dict[str, Sequence[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.shapes)
        self.class_ids = np.asarray(self.class_ids, dtype=np.int64).reshape(-1)
        _check_len("class_ids", self.class_ids, n)
        self.scores = (
            np.ones(n, dtype=np.float32)
            if self.scores is None
            else np.asarray(self.scores, dtype=np.float32).reshape(-1)
        )
        _check_len("scores", self.scores, n)
        if self.boxes is None:
            self.boxes = (
                np.stack([s.bbox for s in self.shapes]).astype(np.float32)
                if n
                else np.zeros((0, 4), dtype=np.float32)
            )
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        _check_len("boxes", self.boxes, n)
        for head, p in list(self.probs.items()):
            p = np.asarray(p, dtype=np.float32)
            if p.ndim != 2 or len(p) != n:
                raise ValueError(f"probs[{head!r}] must be shaped (N={n}, C), got {p.shape}")
            self.probs[head] = p
        if self.embeddings is not None:
            self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
            if self.embeddings.ndim != 2 or len(self.embeddings) != n:
                raise ValueError(
                    f"embeddings must be shaped (N={n}, D), got {self.embeddings.shape}"
                )
        if self.attributes is None:
            self.attributes = [{} for _ in range(n)]
        _check_len("attributes", self.attributes, n)
        for key, col in self.data.items():
            _check_len(f"data[{key!r}]", col, n)

    # -- construction ----------------------------------------------------------
    @classmethod
    def empty(cls) -> Instances:
        return cls(shapes=[], class_ids=np.zeros(0, dtype=np.int64))

    @classmethod
    def concat(cls, items: Sequence[Instances]) -> Instances:
        items = [i for i in items if len(i)]
        if not items:
            return cls.empty()
        heads = set.intersection(*(set(i.probs) for i in items))
        emb = (
            np.concatenate([i.embeddings for i in items])
            if all(i.embeddings is not None for i in items)
            else None
        )
        keys = set.intersection(*(set(i.data) for i in items))
        return cls(
            shapes=[s for i in items for s in i.shapes],
            class_ids=np.concatenate([i.class_ids for i in items]),
            scores=np.concatenate([i.scores for i in items]),
            boxes=np.concatenate([i.boxes for i in items]),
            probs={h: np.concatenate([i.probs[h] for i in items]) for h in heads},
            embeddings=emb,
            attributes=[a for i in items for a in i.attributes],
            data={k: [v for i in items for v in i.data[k]] for k in keys},
        )

    # -- access ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index: int | slice | np.ndarray | list) -> Instances:
        """Select instances by an int, a slice, an index array or a bool mask."""
        if isinstance(index, int):
            index = [index]
        idx = np.arange(len(self))[index]
        return Instances(
            shapes=[self.shapes[i] for i in idx],
            class_ids=self.class_ids[idx],
            scores=self.scores[idx],
            boxes=self.boxes[idx],
            probs={h: p[idx] for h, p in self.probs.items()},
            embeddings=None if self.embeddings is None else self.embeddings[idx],
            attributes=[self.attributes[i] for i in idx],
            data={k: [v[i] for i in idx] for k, v in self.data.items()},
        )

    def masks(self, height: int, width: int) -> np.ndarray:
        """``(N, H, W)`` bool masks rasterised from the shapes."""
        out = np.zeros((len(self), height, width), dtype=bool)
        for i, s in enumerate(self.shapes):
            out[i] = s.to_mask(height, width)
        return out

    @property
    def areas(self) -> np.ndarray:
        return np.array([s.area for s in self.shapes], dtype=np.float64)


@dataclass
class ImageResult:
    """What a stage returns for one image: its instances and an image-level embedding."""

    instances: Instances
    image_embedding: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def _check_len(name: str, col: Sequence[Any] | np.ndarray, n: int) -> None:
    if len(col) != n:
        raise ValueError(f"{name} has {len(col)} entries but there are {n} shapes")
