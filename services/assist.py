"""Click and box assistance for the workspace: which back end, its embedding cached per photo.

The assistant (``models.assist.make_assistant``, shaped like segment-anything's
``SamPredictor``) embeds a photo once in ``set_image`` and answers prompts cheaply in
``predict``. The assistants of the last :data:`CACHE_SIZE` photos are kept here with their
embeddings. Prompts arrive in original image pixels; the assistant sees a copy no larger than
:data:`ASSIST_MAX_SIDE` on its longer side, and its polygons are scaled back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session

from core.geometry import Polygon, Shape, simplify_ring
from db.models import Image, Project
from models.assist import Assistant, AssistResult
from services.annotations import get_image
from services.errors import Invalid, NotFound
from services.images import load_image_array
from services.model_runs import resolve_version

Progress = Callable[[int, int, dict[str, Any]], None]

#: The longest side of the pixels the assistant sees. Both the workspace's assistance and the
#: ``embed`` job use it: SAM's disk cache is keyed by the pixels, so they must agree to hit.
ASSIST_MAX_SIDE = 1024
#: Photos whose prepared assistant is kept in memory.
CACHE_SIZE = 4


def assist_net_path(session: Session) -> Path | None:
    """The assist_net file the assistance should use: the promoted version (a lead's rollback
    included), else the newest registered one; None when none is registered."""
    try:
        mv = resolve_version(session, "assist_net", None)
    except NotFound:
        return None
    return Path(mv.path) if Path(mv.path).is_file() else None


def project_assistant(session: Session) -> Assistant:
    """The assistance back end for the workspace: the configured SAM, else the registry's
    assist_net (see :func:`assist_net_path`), else GrabCut. ``.backend`` names it."""
    from core.config import get_settings
    from models.assist import make_assistant

    return make_assistant(get_settings(), assist_net_path=assist_net_path(session))


def embed_images(
    session: Session,
    project: Project,
    image_ids: list[int],
    *,
    max_side: int = ASSIST_MAX_SIDE,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Pre-compute the assistance back end's per-image work (SAM's embedding, written to the
    disk cache) for the given images, so the annotator's first click costs only the decoder.
    Back ends without an expensive embedding (assist_net, GrabCut) are a no-op.

    Returns ``{"backend", "embedded", "cached"}``: newly embedded and already cached counts.
    """
    assistant = project_assistant(session)
    if not hasattr(assistant, "cache"):
        return {"backend": assistant.backend, "embedded": 0, "cached": 0}
    embedded = cached = 0
    for k, image_id in enumerate(image_ids):
        img = session.get(Image, image_id)
        if img is None or img.project_id != project.id:
            continue
        assistant.set_image(load_image_array(img, max_side=max_side))
        cached += int(assistant.last_embedding_cached)
        embedded += int(not assistant.last_embedding_cached)
        if progress:
            progress(k + 1, len(image_ids), {"image_id": image_id})
    return {"backend": assistant.backend, "embedded": embedded, "cached": cached}


# ---------- the workspace's assistance ----------


@dataclass
class Prepared:
    """An assistant with one photo set; ``scale`` = assistant pixels per image pixel."""

    assistant: Assistant
    scale: float
    #: ``predict`` is not re-entrant: two clicks on one photo take turns.
    lock: threading.Lock = field(default_factory=threading.Lock)


_cache: OrderedDict[int, Prepared] = OrderedDict()
_cache_lock = threading.Lock()
#: Serialises embedding: a "prepare" and the first click racing must not embed twice.
_prepare_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every prepared photo (tests; a new store)."""
    with _cache_lock:
        _cache.clear()


def prepared(session: Session, image_id: int, project: Project | None = None) -> Prepared:
    """The assistant with ``image_id`` set (cached for the last :data:`CACHE_SIZE` photos).

    Raises NotFound when the image or its file is missing, or the image belongs to another
    ``project`` (checked before the cache, which holds photos of every project).
    """
    if project is not None:
        get_image(session, image_id, project)
    with _cache_lock:
        hit = _cache.get(image_id)
        if hit is not None:
            _cache.move_to_end(image_id)
            return hit
    with _prepare_lock:
        with _cache_lock:
            if image_id in _cache:
                return _cache[image_id]
        image = get_image(session, image_id)
        pixels = load_image_array(image, max_side=ASSIST_MAX_SIDE)
        assistant = project_assistant(session)
        assistant.set_image(pixels)
        item = Prepared(assistant, scale=pixels.shape[1] / image.width)
        with _cache_lock:
            _cache[image_id] = item
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        return item


def prepare(session: Session, image_id: int, *, project: Project) -> str:
    """Embed the photo (of ``project``, else NotFound) now, ahead of the first click;
    returns the back end's name."""
    return prepared(session, image_id, project).assistant.backend


def simplify_shape(shape: Shape, tolerance: float) -> Shape:
    """``shape`` with every ring (outer rings and holes) simplified to within ``tolerance``
    pixels (Douglas-Peucker, never below 3 points); 0 leaves it unchanged."""
    if tolerance <= 0:
        return shape
    return Shape(
        [
            Polygon(
                simplify_ring(p.exterior, tolerance),
                tuple(simplify_ring(h, tolerance) for h in p.holes),
            )
            for p in shape.polygons
        ]
    )


def assist(
    session: Session,
    image_id: int,
    *,
    project: Project,
    points: Sequence[Sequence[float]] = (),
    labels: Sequence[int] = (),
    box: Sequence[float] | None = None,
    tolerance: float = 1.0,
) -> AssistResult:
    """A polygon for positive (1) / negative (0) clicks and/or a box, all in image pixels,
    on an image of ``project`` (else NotFound).

    The answer's ``shape`` is in image pixels, simplified by ``tolerance`` pixels, or None
    when the back end found nothing. Raises Invalid for a prompt the back end cannot answer
    (no point or box, a label count that does not match the points, an empty box).
    """
    get_image(session, image_id, project)  # another project's id is NotFound before all else
    if not len(points) and box is None:
        raise Invalid("give at least one point or a box")
    if len(labels) != len(points):
        raise Invalid("give one label (1 positive, 0 negative) per point")
    item = prepared(session, image_id, project)
    s = item.scale
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) * s
    labs = np.asarray(labels, dtype=np.int64)
    b = None if box is None else np.asarray(box, dtype=np.float64) * s
    with item.lock:
        try:
            result = item.assistant.predict(
                points=pts if len(pts) else None, labels=labs if len(labs) else None, box=b
            )
        except ValueError as e:  # the back end's prompt check (models.assist.validate_prompt)
            raise Invalid(str(e)) from None
    shape = result.shape
    if shape is not None:
        shape = simplify_shape(shape.scaled(1.0 / s), tolerance)
    return AssistResult(shape=shape, score=float(result.score), backend=str(result.backend))
