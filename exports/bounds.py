"""The last check before numbers leave the store: every coordinate an exporter writes is finite
and lies within reach of its image (``core.geometry.image_reach``), and every score is finite.

A NaN, an infinity or a 1e300 that got into the store (before saves checked, or by a path that
forgot to) must not reach a file: pycocotools segfaults on such a polygon, and COCO's ``area``
becomes ``null``. The exporters check all their records before writing anything, so a refused
export leaves no half-written folder behind.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from core.geometry import image_reach
from core.instances import Instances
from core.records import ImageRecord

from .errors import ExportRefused


def check_records(
    records: Iterable[ImageRecord], *, predictions: bool = False
) -> list[ImageRecord]:
    """``records`` as a list, once every instance (and with ``predictions``, every prediction
    in ``meta["predictions"]``, for an exporter that writes them) passes
    :func:`check_instances`.

    Raises:
        ExportRefused: naming the photo, the instance (its annotation id when known) and the
            number, with what to do.
    """
    records = list(records)
    for rec in records:
        check_instances(rec.instances, rec.width, rec.height, f"photo {rec.file_name}")
        preds = rec.meta.get("predictions") if predictions else None
        if isinstance(preds, Instances):
            where = f"photo {rec.file_name}, its predictions"
            check_instances(preds, rec.width, rec.height, where)
    return records


def check_instances(inst: Instances, width: int, height: int, where: str) -> None:
    """Raise ExportRefused when a coordinate of ``inst`` is NaN, infinite or beyond
    :func:`core.geometry.image_reach` of the ``width`` x ``height`` image, or a score is not
    finite. One numpy pass over all the image's points."""
    if not len(inst):
        return
    counts = [sum(len(r) for p in s.polygons for r in p.rings()) for s in inst.shapes]
    pts = np.concatenate([r for s in inst.shapes for p in s.polygons for r in p.rings()])
    x0, y0, x1, y1 = image_reach(width, height)
    with np.errstate(invalid="ignore"):
        bad = ~(
            (pts[:, 0] >= x0) & (pts[:, 0] <= x1) & (pts[:, 1] >= y0) & (pts[:, 1] <= y1)
        )  # NaN compares false, so it is caught here too
    if bad.any():
        first = int(np.argmax(bad))
        k = int(np.searchsorted(np.cumsum(counts), first, side="right"))
        x, y = pts[first].tolist()
        finite = bool(np.isfinite(pts[first]).all())
        problem = f"lies far outside the {width}x{height} image" if finite else "is not finite"
        raise ExportRefused(
            f"{where}, {_instance(inst, k)}: the point ({x:g}, {y:g}) {problem}; redraw or "
            "delete it in the workspace, then export again"
        )
    scores = np.asarray(inst.scores, dtype=np.float64)
    if not np.isfinite(scores).all():
        k = int(np.argmax(~np.isfinite(scores)))
        raise ExportRefused(
            f"{where}, {_instance(inst, k)}: its score {scores[k]:g} is not a finite number; "
            "delete it, then export again"
        )


def _instance(inst: Instances, k: int) -> str:
    ids = inst.data.get("annotation_id")
    ann_id = ids[k] if ids is not None else None
    return f"instance {k + 1}" + (f" (annotation {ann_id})" if ann_id is not None else "")
