"""Click and box assistance: ``POST /api/images/{id}/assist`` → a preview polygon.

The assistant (``models.assist.make_assistant(settings)``, SamPredictor-shaped) embeds an image
once in ``set_image`` and answers prompts cheaply in ``predict``; the embedding of the last few
images is kept here. Prompts arrive in original image pixels; the assistant sees a copy no larger
than ``ASSIST_MAX_SIDE`` and its polygons are scaled back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field, field_validator
from sqlmodel import Session

from api.deps import db_session, require, service_errors
from core.geometry import GeometryError, Polygon, Shape, simplify_ring
from db.models import User
from services import annotations as ann_service
from services import images as image_service

router = APIRouter(tags=["assist"])

ASSIST_MAX_SIDE = 1024
_CACHE_SIZE = 4


class AssistBody(BaseModel):
    points: list[list[float]] = Field(
        default_factory=list, description="[[x, y], ...] in image pixels"
    )
    labels: list[int] = Field(
        default_factory=list, description="1 positive, 0 negative, one per point"
    )
    box: list[float] | None = Field(default=None, description="[x0, y0, x1, y1] in image pixels")
    tolerance: float = Field(
        default=1.0, ge=0, le=50, description="polygon simplification in image pixels"
    )

    @field_validator("points")
    @classmethod
    def _points(cls, v: list[list[float]]) -> list[list[float]]:
        for p in v:
            if len(p) != 2 or not all(np.isfinite(p)):
                raise ValueError("each point must be [x, y] with finite numbers")
        return v

    @field_validator("box")
    @classmethod
    def _box(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (len(v) != 4 or not all(np.isfinite(v))):
            raise ValueError("box must be [x0, y0, x1, y1] with finite numbers")
        return v


class _Prepared:
    def __init__(self, assistant: Any, scale: float):
        self.assistant = assistant
        self.scale = scale
        self.lock = threading.Lock()


_cache: OrderedDict[int, _Prepared] = OrderedDict()
_cache_lock = threading.Lock()
#: Serialises embedding: a "prepare" and the first click racing must not embed twice.
_prepare_lock = threading.Lock()


def _make_assistant(session: Session) -> Any:
    try:
        from services.model_runs import project_assistant

        return project_assistant(session)
    except ImportError as e:
        raise HTTPException(503, detail=f"assistance is not installed in this build ({e})") from e


def prepared(session: Session, image_id: int) -> _Prepared:
    """The assistant with ``image_id`` embedded (cached for the last few images)."""
    with _cache_lock:
        hit = _cache.get(image_id)
        if hit is not None:
            _cache.move_to_end(image_id)
            return hit
    with _prepare_lock:
        with _cache_lock:
            if image_id in _cache:
                return _cache[image_id]
        return _prepare(session, image_id)


def _prepare(session: Session, image_id: int) -> _Prepared:
    with service_errors():
        image = ann_service.get_image(session, image_id)
    pixels = image_service.load_image_array(image, max_side=ASSIST_MAX_SIDE)
    scale = pixels.shape[1] / image.width
    assistant = _make_assistant(session)
    assistant.set_image(pixels)
    item = _Prepared(assistant, scale)
    with _cache_lock:
        _cache[image_id] = item
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return item


def _result_shape(result: Any) -> tuple[Shape | None, float, str]:
    """Read the assistant's answer: ``shape``/``polygons`` (Shape, list of Polygons or rings), score, backend."""
    shape = getattr(result, "shape", None)
    if shape is None:
        polys = getattr(result, "polygons", None)
        if polys is None and isinstance(result, dict):
            polys = result.get("polygons")
        if polys is not None:
            if isinstance(polys, Shape):
                shape = polys
            else:
                items = [
                    p if isinstance(p, Polygon) else Shape.from_ring(p).polygons[0] for p in polys
                ]
                shape = Shape(items) if items else None
    score = getattr(result, "score", None)
    backend = getattr(result, "backend", None)
    if isinstance(result, dict):
        score = result.get("score", score)
        backend = result.get("backend", backend)
    return shape, float(score or 0.0), str(backend or "unknown")


@router.post("/images/{image_id}/assist/prepare")
def prepare(
    image_id: int, user: User = Depends(require("assist")), session: Session = Depends(db_session)
) -> dict:
    """Embed the image now, ahead of the first click (the workspace calls this on opening a photo)."""
    item = prepared(session, image_id)
    return {
        "image_id": image_id,
        "backend": getattr(item.assistant, "backend", None)
        or getattr(item.assistant, "name", None),
    }


@router.post("/images/{image_id}/assist")
def assist(
    image_id: int,
    body: AssistBody,
    user: User = Depends(require("assist")),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """A polygon for positive/negative clicks and/or a box, in image pixels, simplified by ``tolerance``."""
    if not body.points and body.box is None:
        raise HTTPException(422, detail="give at least one point or a box")
    if len(body.labels) != len(body.points):
        raise HTTPException(422, detail="give one label (1 positive, 0 negative) per point")
    item = prepared(session, image_id)
    s = item.scale
    points = np.asarray(body.points, dtype=np.float64).reshape(-1, 2) * s
    labels = np.asarray(body.labels, dtype=np.int64)
    box = None if body.box is None else np.asarray(body.box, dtype=np.float64) * s
    with item.lock:
        result = item.assistant.predict(
            points=points if len(points) else None, labels=labels if len(labels) else None, box=box
        )
    shape, score, backend = _result_shape(result)
    if shape is None or not shape.polygons:
        return {"geometry": [], "score": score, "backend": backend}
    shape = shape.scaled(1.0 / s)
    polys = []
    for p in shape.polygons:
        try:
            ext = simplify_ring(p.exterior, body.tolerance) if body.tolerance > 0 else p.exterior
            holes = [simplify_ring(h, body.tolerance) if body.tolerance > 0 else h for h in p.holes]
            polys.append(Polygon(ext, tuple(h for h in holes if len(h) >= 3)))
        except GeometryError:
            continue
    polys = [p for p in polys if len(p.exterior) >= 3]
    geometry = Shape(polys).to_json() if polys else []
    return {"geometry": geometry, "score": score, "backend": backend}
