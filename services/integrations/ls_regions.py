"""Label Studio regions from :class:`core.instances.Instances`, and prompts from Label
Studio's interactive context: pure converters, no I/O.

Coordinates: Label Studio's are percent of the photo's width and height (``x_pct = 100 * x
/ width``); ours are pixels of the photo as it is shown (EXIF orientation applied).

A shape with one polygon and no holes becomes a ``polygonlabels`` region. A shape with holes
or several parts cannot be a Label Studio polygon: it becomes a ``brushlabels`` region (Label
Studio's brush RLE, ``exports.label_studio.mask_to_brush_rle``) when the config has a
BrushLabels tag with its class, else one ``polygonlabels`` region per outer ring, holes
left out. Either way the region's ``meta.text`` says so, next to the model version and score
every region carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.geometry import Shape, shape_to_mask
from core.instances import Instances
from exports.label_studio import mask_to_brush_rle
from services.errors import Invalid
from services.integrations.ls_config import LabelMapping


def _percent(ring: np.ndarray, width: int, height: int) -> list[list[float]]:
    pts = np.asarray(ring, dtype=np.float64) * [100.0 / width, 100.0 / height]
    return np.clip(pts, 0.0, 100.0).tolist()


def _region(
    rid: str, tag_type: str, from_name: str, to_name: str, width: int, height: int, value: dict
) -> dict[str, Any]:
    return {
        "id": rid,
        "type": tag_type,
        "from_name": from_name,
        "to_name": to_name,
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": value,
    }


def shape_regions(
    shape: Shape,
    class_id: int,
    mapping: LabelMapping,
    width: int,
    height: int,
    *,
    rid: str,
) -> tuple[list[dict[str, Any]], str | None]:
    """The regions of one shape and the note that says how a shape Label Studio cannot draw
    as one polygon was sent (None for a plain polygon). No region when neither the polygon
    nor the brush tag has a label for ``class_id``."""
    poly = mapping.polygon
    brush = mapping.brush
    poly_label = poly.label_for(class_id) if poly is not None else None
    brush_label = brush.label_for(class_id) if brush is not None else None
    simple = len(shape.polygons) == 1 and not shape.has_holes
    if poly_label is not None and (simple or brush_label is None):
        regions = []
        for k, part in enumerate(shape.polygons):
            value = {
                "points": _percent(part.exterior, width, height),
                "closed": True,
                "polygonlabels": [poly_label],
            }
            name = rid if len(shape.polygons) == 1 else f"{rid}_{k}"
            regions.append(
                _region(name, "polygonlabels", poly.name, poly.to_name, width, height, value)
            )
        if simple:
            return regions, None
        holes = sum(len(p.holes) for p in shape.polygons)
        parts = len(shape.polygons)
        said = [f"{parts} parts sent as {parts} polygons"] if parts > 1 else []
        if holes:
            said.append(f"{holes} hole(s) left out")
        return regions, (
            "; ".join(said) + ": Label Studio polygons have no holes or parts, and the config "
            "has no BrushLabels tag for this class"
        )
    if brush_label is None:
        return [], None
    rle = mask_to_brush_rle(shape_to_mask(shape, height, width))
    value = {"format": "rle", "rle": rle, "brushlabels": [brush_label]}
    region = _region(rid, "brushlabels", brush.name, brush.to_name, width, height, value)
    if simple:
        return [region], None
    return [region], (
        f"{len(shape.polygons)} part(s) with {sum(len(p.holes) for p in shape.polygons)} "
        "hole(s) sent as a brush mask: Label Studio polygons have no holes or parts"
    )


def instances_to_regions(
    instances: Instances,
    mapping: LabelMapping,
    width: int,
    height: int,
    *,
    model_versions: Sequence[str],
    prefix: str = "pb",
) -> list[dict[str, Any]]:
    """Label Studio result regions for ``instances`` on a ``width`` x ``height`` photo, each
    with its ``score`` and ``model_version`` (also shown in ``meta.text``). Instances of
    classes the config has no label for are left out."""
    if len(model_versions) != len(instances):
        raise ValueError(
            f"{len(model_versions)} model versions for {len(instances)} instances; give one each"
        )
    out = []
    for k, shape in enumerate(instances.shapes):
        score = float(instances.scores[k])
        regions, note = shape_regions(
            shape, int(instances.class_ids[k]), mapping, width, height, rid=f"{prefix}{k}"
        )
        text = [f"{model_versions[k]}, score {score:.3f}"] + ([note] if note else [])
        for r in regions:
            r.update(score=score, model_version=model_versions[k], meta={"text": text})
        out += regions
    return out


# -- interactive prompts ----------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """A person's clicks and box on a ``width`` x ``height`` photo, in pixels, and the
    label they chose (a label of the config's prompt tag)."""

    points: list[list[float]]
    labels: list[int]
    box: list[float] | None
    label: str | None
    width: int
    height: int


def _number(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
        raise Invalid(f"{where} must be a finite number, not {v!r}")
    return float(v)


def _size(item: dict, where: str) -> tuple[int, int]:
    w, h = item.get("original_width"), item.get("original_height")
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        raise Invalid(
            f"{where}: original_width and original_height must be positive whole numbers, "
            f"not {w!r} and {h!r}"
        )
    return w, h


def context_prompt(context: Any) -> Prompt | None:
    """The prompt in Label Studio's interactive ``context`` (``params.context``): its
    ``result`` holds ``keypointlabels`` regions (``is_positive`` true: a positive click,
    false: a negative one) and at most one ``rectanglelabels`` region, in percent. None when
    the context carries no such region (then the request is a plain prediction).

    Raises Invalid naming the field of a malformed prompt region.
    """
    if not isinstance(context, dict):
        return None
    items = context.get("result")
    if not isinstance(items, list):
        return None
    points: list[list[float]] = []
    labels: list[int] = []
    box = None
    label = None
    size = None
    for i, item in enumerate(items):
        where = f"params.context.result[{i}]"
        if not isinstance(item, dict) or item.get("type") not in (
            "keypointlabels",
            "rectanglelabels",
        ):
            continue
        value = item.get("value")
        if not isinstance(value, dict):
            raise Invalid(f"{where}.value must be an object")
        w, h = _size(item, where)
        if size is not None and size != (w, h):
            raise Invalid(f"{where}: the photo is {w}x{h} here but {size[0]}x{size[1]} before")
        size = (w, h)
        x = _number(value.get("x"), f"{where}.value.x") * w / 100.0
        y = _number(value.get("y"), f"{where}.value.y") * h / 100.0
        names = value.get(item["type"])
        if isinstance(names, list) and names and isinstance(names[0], str):
            label = names[0]
        if item["type"] == "keypointlabels":
            points.append([x, y])
            labels.append(0 if item.get("is_positive") in (False, 0) else 1)
        else:
            bw = _number(value.get("width"), f"{where}.value.width") * w / 100.0
            bh = _number(value.get("height"), f"{where}.value.height") * h / 100.0
            box = [x, y, x + bw, y + bh]
    if size is None:
        return None
    return Prompt(points, labels, box, label, size[0], size[1])
