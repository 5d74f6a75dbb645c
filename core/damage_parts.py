"""Which part each damage sits on: the part with the largest overlap, and the share of the
damage lying on it. numpy only, tested on hand-made maps.

The parts come as a label map of taxonomy class ids (0: no part), painted from a part
model's instances by :func:`part_id_map` (larger parts first, so a light lying on a bumper
stays visible), or taken from a segmenter's own map.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.instances import Instances
from core.taxonomy import Taxonomy


def part_id_map(parts: Instances, taxonomy: Taxonomy, height: int, width: int) -> np.ndarray:
    """``(height, width)`` int64 map of the part class id under each pixel (0: none) from the
    part instances of ``parts`` (instances of other groups are ignored)."""
    out = np.zeros((height, width), np.int64)
    found = [
        (s.area, s, int(c))
        for s, c in zip(parts.shapes, parts.class_ids, strict=True)
        if int(c) in taxonomy and taxonomy.by_id(int(c)).group == "part"
    ]
    for _, s, c in sorted(found, key=lambda t: -t[0]):
        out[s.to_mask(height, width)] = c
    return out


def parts_under(masks: np.ndarray, part_map: np.ndarray) -> list[tuple[int, float] | None]:
    """For each damage mask of ``masks`` ``(N, H, W)`` bool, ``(part class id, share)``: the
    part of ``part_map`` ``(H, W)`` (class ids, 0 none) covering most of the mask, and the
    share of the mask's pixels on it (0 to 1); None for an empty mask or one on no part.
    Ties go to the smaller class id."""
    if masks.shape[1:] != part_map.shape:
        raise ValueError(
            f"damage masks are {masks.shape[1:]} but the part map is {part_map.shape}; "
            "paint both at the photo's size"
        )
    out: list[tuple[int, float] | None] = []
    for m in masks:
        area = int(m.sum())
        ids = part_map[m]
        ids = ids[ids > 0]
        if area == 0 or not len(ids):
            out.append(None)
            continue
        values, counts = np.unique(ids, return_counts=True)
        k = int(np.argmax(counts))  # np.unique sorts: the first of equal counts is the smaller id
        out.append((int(values[k]), float(counts[k]) / area))
    return out


def locate_on_parts(
    damage: Instances, parts: Instances, taxonomy: Taxonomy, height: int, width: int
) -> list[dict[str, Any] | None]:
    """One entry per instance of ``damage``: ``{"class_id", "name", "share"}`` of the part
    it sits on (share rounded to 3 places), or None; what ``data["part"]`` holds."""
    if not len(damage):
        return []
    found = parts_under(damage.masks(height, width), part_id_map(parts, taxonomy, height, width))
    return [
        None
        if f is None
        else {"class_id": f[0], "name": taxonomy.by_id(f[0]).name, "share": round(f[1], 3)}
        for f in found
    ]
