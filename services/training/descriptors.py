"""Cheap per-image descriptors for cold-start diversity, cached on disk by image sha256.

Stored as ``<cache_dir>/al_descriptors/<sha256[:2]>/<sha256>.npy`` (float16), so they are
computed once per photo and shared by every project and worker using the data dir. Each
file is written whole (:func:`core.files.atomic_write`), so two workers describing the same
photo at once never leave a torn file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from active_learning.diversity import image_descriptor
from core.config import get_settings
from core.files import atomic_write
from db.models import Image

#: Images are shrunk to this longest side before describing them (speed; the descriptor is coarse).
DESCRIPTOR_MAX_SIDE = 256


def descriptor_path(sha256: str) -> Path:
    return get_settings().cache_dir / "al_descriptors" / sha256[:2] / f"{sha256}.npy"


def compute_descriptor(image: Image) -> np.ndarray:
    """``(D,)`` float32 descriptor of the image file (see :func:`image_descriptor`)."""
    from services.labelling.images import load_image_array

    return image_descriptor(load_image_array(image, max_side=DESCRIPTOR_MAX_SIDE))


def ensure_descriptors(
    images: Sequence[Image],
    *,
    force: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Compute and cache missing descriptors; returns how many were computed."""
    done = 0
    for i, im in enumerate(images):
        path = descriptor_path(im.sha256)
        if force or not path.is_file():
            with atomic_write(path) as f:
                np.save(f, compute_descriptor(im).astype(np.float16))
            done += 1
        if progress:
            progress(i + 1, len(images))
    return done


def load_descriptors(images: Sequence[Image]) -> np.ndarray | None:
    """``(N, D)`` float32 descriptors in the order of ``images``; None if any is missing."""
    out = []
    for im in images:
        p = descriptor_path(im.sha256)
        if not p.is_file():
            return None
        out.append(np.load(p).astype(np.float32))
    return np.stack(out) if out else None
