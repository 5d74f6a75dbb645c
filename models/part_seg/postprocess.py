"""Part label maps and Instances, both ways: numpy and OpenCV only, tested on hand-made maps.

Instances (:func:`label_map_instances`): the shared tracing of every semantic segmenter
(:mod:`models.semseg.labels`: per class, the connected components of the arg-max map covering
at least ``min_area_frac`` of the photo, traced with their holes; score, ``probs["part"]``
and a pooled embedding per instance), plus what only parts need: sided pairs.

Sided classes: when a sided class (``front_left_door``) has exactly two components and its
mirror (``front_right_door``) none, the photo shows both sides and one of them is mislabelled.
The rule resolves it by position, using the other sided parts of the same photo as the
compass: if the photo's other "left" parts lie, on average, left of its other "right" parts
(a view from behind), the component on the image's left keeps/gets the left class; if they lie
to the right (a view from the front), the component on the image's right does. Without such
evidence, or with more than two components, nothing is relabelled and the class is reported in
``ImageResult.meta["side_conflicts"]``, and each of its instances carries a sentence in
``data["side_conflict"]``, which the workspace shows beside the pre-annotation.

The other way, :func:`label_map` paints labelled instances into the map the network trains
on; :func:`small_part_windows` and :func:`guided_filter` serve the optional second look at
small parts and the boundary refinement.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from core.instances import Instances
from core.taxonomy import Taxonomy
from models.semseg.labels import (
    TRACE_MAX_SIDE,
    SemanticClasses,
    components,
    components_instances,
    flip_sample,
    large_components,
    traced_size,
)
from models.semseg.labels import label_map as classes_label_map

__all__ = [
    "TRACE_MAX_SIDE",
    "components",
    "flip_sample",
    "guided_filter",
    "label_map",
    "label_map_instances",
    "mirror_lut",
    "part_classes",
    "small_part_windows",
    "traced_size",
]


def part_classes(taxonomy: Taxonomy) -> SemanticClasses:
    """The labels of a part map: background + the taxonomy's part classes."""
    return SemanticClasses(taxonomy, ("part",))


def mirror_lut(taxonomy: Taxonomy) -> np.ndarray:
    """``(1 + P,)`` int64: label -> label of the mirrored photo (background stays 0)."""
    return part_classes(taxonomy).mirror_lut()


def label_map(
    instances: Instances, taxonomy: Taxonomy, height: int, width: int, sx: float, sy: float
) -> np.ndarray:
    """``(height, width)`` int64 label map of the part instances scaled by ``(sx, sy)``;
    larger parts are painted first so a small part lying on a large one stays visible."""
    return classes_label_map(instances, part_classes(taxonomy), height, width, sx, sy)


def _side(name: str) -> str | None:
    words = name.split("_")
    return "left" if "left" in words else "right" if "right" in words else None


def label_map_instances(
    labels: np.ndarray,
    probs: np.ndarray,
    taxonomy: Taxonomy,
    *,
    min_area_frac: float = 0.002,
    tolerance: float = 1.5,
    features: np.ndarray | None = None,
) -> tuple[Instances, list[str]]:
    """Instances of an arg-max map ``labels`` ``(H, W)`` with softmax ``probs`` ``(1+P, H, W)``.

    One instance per connected component (8-connectivity) of each class covering at least
    ``min_area_frac`` of the map, holes kept. ``features`` ``(D, h, w)`` (the backbone's last
    map) gives each instance an embedding pooled over its component. Returns the instances
    and the sided classes left unresolved (see the module docstring for the rule).
    """
    h, w = labels.shape
    classes = part_classes(taxonomy)
    comps = large_components(labels, min_area_frac)
    conflicts = _resolve_sides(comps, taxonomy)
    inst, kept = components_instances(
        comps,
        probs,
        classes,
        min_px=max(1.0, min_area_frac * h * w),
        tolerance=tolerance,
        features=features,
    )
    lut = classes.mirror_lut()
    notes = []
    for i in kept:
        k = comps[i]["k"]
        name = classes.class_at(k).name
        notes.append(
            f"{name} appears more than once on this photo: check which side each one is "
            f"(or whether one is the {classes.class_at(int(lut[k])).name})"
            if name in conflicts
            else None
        )
    if any(notes):
        # the annotator sees it beside the pre-annotation (stored in the prediction's extra)
        inst.data["side_conflict"] = notes
    return inst, conflicts


def _resolve_sides(comps: list[dict[str, Any]], taxonomy: Taxonomy) -> list[str]:
    """Relabel in place the sided pairs the position rule can settle; the names of the
    classes it cannot."""
    parts = taxonomy.group("part")
    lut = mirror_lut(taxonomy)
    by_k: dict[int, list[dict[str, Any]]] = {}
    for c in comps:
        by_k.setdefault(c["k"], []).append(c)
    conflicts = []
    for k, group in sorted(by_k.items()):
        side = _side(parts[k - 1].name)
        m = int(lut[k])
        if side is None or m == k or len(group) < 2:
            continue
        if len(group) > 2 or by_k.get(m):
            conflicts.append(parts[k - 1].name)
            continue
        # the photo's orientation from its other sided parts: +1 when "left" parts lie on
        # the image's left (seen from behind), -1 when they lie on its right (from the front)
        xs = {"left": [], "right": []}
        for c in comps:
            s = _side(parts[c["k"] - 1].name)
            if s is not None and c["k"] not in (k, m):
                xs[s].append(c["cx"])
        if not xs["left"] or not xs["right"]:
            conflicts.append(parts[k - 1].name)
            continue
        left_on_left = np.mean(xs["left"]) < np.mean(xs["right"])
        a, b = sorted(group, key=lambda c: c["cx"])  # a: on the image's left
        left_comp, right_comp = (a, b) if left_on_left else (b, a)
        left_k, right_k = (k, m) if side == "left" else (m, k)
        left_comp["k"], right_comp["k"] = left_k, right_k
    return conflicts


def small_part_windows(
    labels: np.ndarray, zoom: float, *, max_frac: float, min_px: float, max_crops: int
) -> list[tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` windows of ``1/zoom`` of the map's height and width, one around
    each part component of ``labels`` smaller than ``max_frac`` of the map (and at least
    ``min_px``), the smallest first, kept inside the map; a component whose centre already lies
    in the middle half of a window gets none of its own."""

    h, w = labels.shape
    wh, ww = max(1, round(h / zoom)), max(1, round(w / zoom))
    comps = [
        (area, cy, cx)
        for _, _, area, cy, cx in components(labels)
        if min_px <= area < max_frac * h * w
    ]
    windows: list[tuple[int, int, int, int]] = []
    for _, cy, cx in sorted(comps):
        if len(windows) >= max_crops:
            break
        if any(
            abs(cy - (y0 + y1) / 2) <= wh / 4 and abs(cx - (x0 + x1) / 2) <= ww / 4
            for y0, y1, x0, x1 in windows
        ):
            continue
        y0 = int(np.clip(round(cy - wh / 2), 0, h - wh))
        x0 = int(np.clip(round(cx - ww / 2), 0, w - ww))
        windows.append((y0, y0 + wh, x0, x0 + ww))
    return windows


def guided_filter(guide: np.ndarray, probs: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """``probs`` ``(C, H, W)`` filtered by the grey ``guide`` ``(H, W)`` in [0, 1] (He et al.'s
    guided filter, one box filter per moment), clipped and renormalised to sum to 1. Only the
    classes that win somewhere are filtered: the others stay as they were, which keeps the
    cost near that of the few parts on the photo rather than all 62 channels."""
    import cv2

    def box(a: np.ndarray) -> np.ndarray:
        out = cv2.boxFilter(a, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)
        return out.reshape(a.shape)

    guide = guide.astype(np.float32)
    mean_i = box(guide)[..., None]
    var_i = box(guide * guide)[..., None] - mean_i * mean_i
    out = probs.astype(np.float32, copy=True)
    present = np.unique(probs.argmax(0))
    # OpenCV filters at most 512 channels at once; groups of 16 also stay in cache
    for g0 in range(0, len(present), 16):
        idx = present[g0 : g0 + 16]
        p = np.ascontiguousarray(probs[idx].transpose(1, 2, 0), dtype=np.float32)
        mean_p = box(p)
        a = (box(p * guide[..., None]) - mean_i * mean_p) / (var_i + eps)
        b = mean_p - a * mean_i
        out[idx] = (box(a) * guide[..., None] + box(b)).transpose(2, 0, 1)
    np.clip(out, 0.0, None, out=out)
    return out / np.maximum(out.sum(0, keepdims=True), 1e-12)
