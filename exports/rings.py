"""Fast construction of shapes from flat coordinate lists, for parsing large files.

``core.geometry.as_ring`` validates one ring with several numpy reductions, which is most
of the time spent importing 100,000 polygons. Here the common, valid case is checked with
plain Python on the list, and anything unusual falls back to the core constructors so the
error messages stay the core's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from core.geometry import Polygon, Shape


def fast_ring(flat: Sequence[float]) -> np.ndarray | None:
    """``(K, 2)`` float64 ring from ``[x0, y0, x1, y1, ...]``, or None when it needs the slow path."""
    n = len(flat)
    if n < 6 or n % 2:
        return None
    try:
        total = sum(flat)
    except TypeError:
        return None
    if not math.isfinite(total):  # a NaN or infinity anywhere makes the sum non-finite
        return None
    if flat[0] == flat[-2] and flat[1] == flat[-1]:  # closed ring: stored open
        if n < 8:
            return None
        flat = flat[:-2]
    return np.array(flat, dtype=np.float64).reshape(-1, 2)


def shape_from_flat_rings(rings: Sequence[Sequence[float]]) -> tuple[Shape, list[float]]:
    """A shape (one polygon per ring) and its ``[x0, y0, x1, y1]`` box.

    Raises:
        GeometryError: from ``Shape.from_rings`` when a ring is invalid.
    """
    polys = []
    x0 = y0 = math.inf
    x1 = y1 = -math.inf
    for flat in rings:
        ring = fast_ring(flat) if isinstance(flat, list) else None
        if ring is None:
            shape = Shape.from_rings(rings)  # raises the core's message, or handles odd input
            return shape, shape.bbox.tolist()
        xs, ys = flat[0::2], flat[1::2]
        x0, y0 = min(x0, min(xs)), min(y0, min(ys))
        x1, y1 = max(x1, max(xs)), max(y1, max(ys))
        polys.append(Polygon(ring))
    if not polys:
        shape = Shape.from_rings(rings)
        return shape, shape.bbox.tolist()
    return Shape(tuple(polys)), [x0, y0, x1, y1]
