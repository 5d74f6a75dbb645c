"""The data every stage trains and is measured on: a :class:`TrainingSet` of labelled image
records, the images as RGB arrays, and the progress callback long work reports through."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.records import ImageRecord
from core.taxonomy import Taxonomy

#: ``progress(step, total, info)`` — called by long operations; ``info`` holds e.g. ``{"loss": 0.4, "epoch": 2}``.
Progress = Callable[[int, int, dict[str, Any]], None]


@dataclass
class TrainingSet:
    """Labelled images for training: records whose image file is ``meta["path"]``
    (else ``file_name``), absolute. Instances carry taxonomy class ids and shapes in
    original pixels."""

    records: list[ImageRecord]
    taxonomy: Taxonomy

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, i: int) -> Path:
        rec = self.records[i]
        return Path(rec.meta.get("path") or rec.file_name)

    def load_image(self, i: int) -> np.ndarray:
        """``(H, W, 3)`` uint8 RGB of record ``i``."""
        return load_rgb(self.image_path(i))

    def split(self, name: str) -> TrainingSet:
        return TrainingSet([r for r in self.records if r.split == name], self.taxonomy)


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3)`` uint8 RGB, EXIF orientation applied."""
    from exports.image_files import ImageReadError, load_image_rgb

    try:
        return load_image_rgb(path)
    except ImageReadError as e:
        raise FileNotFoundError(str(e)) from e


def check_images(images: Sequence[np.ndarray]) -> None:
    for i, im in enumerate(images):
        if (
            not isinstance(im, np.ndarray)
            or im.ndim != 3
            or im.shape[2] != 3
            or im.dtype != np.uint8
        ):
            shape = getattr(im, "shape", None)
            dtype = getattr(im, "dtype", type(im).__name__)
            raise ValueError(
                f"image #{i} must be an (H, W, 3) uint8 RGB array, got shape {shape} dtype {dtype}"
            )
