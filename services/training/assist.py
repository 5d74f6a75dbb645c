"""Click and box assistance for the workspace: which back end, its embedding cached per photo.

The assistant (``models.assist.make_assistant``, shaped like segment-anything's
``SamPredictor``) embeds a photo once in ``set_image`` and answers prompts cheaply in
``predict``. The assistants of the last :data:`CACHE_SIZE` photos are kept here with their
embeddings. Prompts arrive in original image pixels; the assistant sees a copy no larger than
:data:`ASSIST_MAX_SIDE` on its longer side, and its polygons are scaled back.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session

from core.config import env_name, get_settings
from core.geometry import Polygon, Shape, image_reach, simplify_ring
from db.models import Image, Project, User
from models.assist import Assistant, AssistResult
from services.accounts.users import Permission
from services.errors import Forbidden, Invalid, NotFound
from services.labelling.images import load_image_array
from services.labelling.readers import get_image
from services.training.model_runs import resolve_version

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


# ---------- which back end: the settings, the project's choice, the default ----------

#: Who may change the project's assistance (leads and admins); everyone with ``assist`` may
#: read it.
ASSISTANCE_PERMISSION = Permission.retrain
#: Settings that, when set (environment variables), win over the project's choice.
ASSISTANCE_ENV = {
    key: env_name(key) for key in ("assist_backend", "sam_checkpoint", "mobile_sam_checkpoint")
}
#: Weights kinds the assistance can run.
ASSIST_WEIGHTS_KINDS = ("sam", "mobile_sam")
_PLAIN_CHOICES = {
    "auto": "auto (SAM from the settings, else assist_net, else GrabCut)",
    "assist_net": "assist_net (the promoted version)",
    "grabcut": "GrabCut",
}


@dataclass(frozen=True)
class ResolvedAssistance:
    """Which back end the assistance uses for a project, and why.

    ``source``: ``env`` (a setting/environment variable wins), ``project`` (the dashboard's
    choice) or ``default`` (``auto``). ``key`` changes whenever the back end or its file does;
    the per-photo cache is keyed by it, so a new choice applies at the next request.
    """

    choice: str
    source: str
    backend: str
    reason: str
    settings: Any
    assist_net_path: Path | None
    key: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)


def _env_overrides(settings: Any) -> dict[str, str]:
    """The assistance settings that are set: environment variable name -> value."""
    out = {}
    if (settings.assist_backend or "auto") != "auto":
        out[ASSISTANCE_ENV["assist_backend"]] = str(settings.assist_backend)
    for key in ("sam_checkpoint", "mobile_sam_checkpoint"):
        if getattr(settings, key):
            out[ASSISTANCE_ENV[key]] = str(getattr(settings, key))
    return out


def project_choice(project: Project | None) -> str:
    """The project's stored assistance choice; ``auto`` when none was made."""
    return str((project.assistance or {}).get("choice") or "auto") if project else "auto"


def _assist_weights(name: str) -> Any:
    """The weights record ``name`` if it holds SAM or MobileSAM; Invalid naming it otherwise."""
    from services.training.weights import get_weights

    try:
        rec = get_weights(name)
    except NotFound as e:
        raise Invalid(f"assistance 'sam:{name}': {e}") from None
    if rec.kind not in ASSIST_WEIGHTS_KINDS:
        raise Invalid(
            f"assistance 'sam:{name}': weights {name!r} are of kind {rec.kind}, not SAM or "
            f"MobileSAM; choose a weights file of kind sam or mobile_sam"
        )
    if not rec.path.is_file():
        raise Invalid(
            f"assistance 'sam:{name}': the file of weights {name!r} is missing from the "
            f"weights folder ({rec.path}); add it again with `panelbeater weights add`"
        )
    return rec


def assistance_choices(session: Session) -> list[tuple[str, str]]:
    """``(label, choice)`` pairs the dashboard offers: SAM/MobileSAM weights of the weights
    folder, assist_net when a version is registered, GrabCut and auto."""
    from services.training.weights import list_weights

    out = [(_PLAIN_CHOICES["auto"], "auto")]
    for rec in list_weights():
        if rec.kind == "sam":
            out.append((f"SAM {rec.details.get('model_type', '?')}: {rec.name}", f"sam:{rec.name}"))
        elif rec.kind == "mobile_sam":
            out.append((f"MobileSAM: {rec.name}", f"sam:{rec.name}"))
    if assist_net_path(session) is not None:
        out.append((_PLAIN_CHOICES["assist_net"], "assist_net"))
    out.append((_PLAIN_CHOICES["grabcut"], "grabcut"))
    return out


def _validate_choice(session: Session, choice: str) -> str:
    choice = (choice or "").strip()
    if choice in ("auto", "grabcut"):
        return choice
    if choice == "assist_net":
        if assist_net_path(session) is None:
            raise Invalid(
                "assistance 'assist_net': no assist_net version is registered; train one "
                "with `panelbeater train assist_net` first"
            )
        return choice
    if choice.startswith("sam:") and choice[4:]:
        _assist_weights(choice[4:])
        return choice
    raise Invalid(
        f"assistance {choice!r} is not a choice; choose auto, assist_net, grabcut or "
        f"sam:<weights name> (a sam or mobile_sam file of the weights folder)"
    )


def _backend_name(settings: Any, assist_net: Path | None) -> tuple[str, Path | None]:
    from models.assist import choose_backend

    name, path = choose_backend(settings, assist_net_path=assist_net)
    return (f"sam_{settings.sam_model_type}" if name == "sam" else name), path


def resolve_assistance(session: Session, project: Project | None) -> ResolvedAssistance:
    """Which back end ``project`` uses and why (cheap: builds nothing). Assistance settings
    that are set (:data:`ASSISTANCE_ENV`) win; then the project's choice; then ``auto``.

    Raises Invalid when the project's choice can no longer be honoured (its weights were
    removed, no assist_net version is left), saying to choose again."""
    from core.config import get_settings

    settings = get_settings()
    choice = project_choice(project)
    env = _env_overrides(settings)
    net = assist_net_path(session)
    if env:
        backend, path = _backend_name(settings, net)
        names = ", ".join(env)
        reason = (
            f"{names} {'is' if len(env) == 1 else 'are'} set on the server and "
            f"win{'s' if len(env) == 1 else ''} over the project's choice ({choice}); "
            "unset and restart to use the dashboard's choice"
        )
        source = "env"
    elif choice == "auto":
        backend, path = _backend_name(settings, net)
        why = (
            "the promoted assist_net version"
            if backend == "assist_net"
            else "GrabCut, as no assist_net version is registered"
        )
        reason = f"no choice made (auto): {why}"
        source = "default"
    else:
        source = "project"
        by = (project.assistance or {}).get("by") if project else None
        reason = f"the project's choice ({choice})" + (f", set by {by}" if by else "")
        if choice == "grabcut":
            settings = settings.model_copy(update={"assist_backend": "grabcut"})
        elif choice == "assist_net":
            if net is None:
                raise Invalid(
                    "the project's assistance is assist_net but no assist_net version is "
                    "registered any more; choose another on the dashboard"
                )
            settings = settings.model_copy(update={"assist_backend": "assist_net"})
        else:
            rec = _assist_weights(choice[4:])
            if rec.kind == "sam":
                model_type = rec.details.get("model_type") or settings.sam_model_type
                update = {"assist_backend": "sam", "sam_checkpoint": rec.path}
                settings = settings.model_copy(update={**update, "sam_model_type": model_type})
            else:
                update = {"assist_backend": "mobile_sam", "mobile_sam_checkpoint": rec.path}
                settings = settings.model_copy(update=update)
        backend, path = _backend_name(settings, net)
    key = (
        source,
        backend,
        str(settings.sam_checkpoint or ""),
        str(settings.mobile_sam_checkpoint or ""),
        str(path or ""),
    )
    return ResolvedAssistance(choice, source, backend, reason, settings, path, key, env)


def _default_project(session: Session) -> Project | None:
    from sqlmodel import select

    from core.config import get_settings

    name = get_settings().project_name
    return session.exec(select(Project).where(Project.name == name)).first()


def assistance_state(session: Session, project: Project) -> dict[str, Any]:
    """What the dashboard and ``GET /api/assistance`` show: the choice, the active back end,
    why (``source``: env, project or default), the settings that win, and the choices."""
    r = resolve_assistance(session, project)
    return {
        "choice": r.choice,
        "backend": r.backend,
        "source": r.source,
        "reason": r.reason,
        "env": r.env,
        "choices": [{"label": label, "value": v} for label, v in assistance_choices(session)],
    }


def set_assistance(
    session: Session, project: Project, choice: str, *, user: User
) -> dict[str, Any]:
    """Store ``project``'s assistance choice: ``auto``, ``sam:<weights name>`` (a sam or
    mobile_sam file of the weights folder; a SAM's ViT size comes from its record),
    ``assist_net`` or ``grabcut``. Applies at the next assistance request, no restart.

    Raises Forbidden for a role without :data:`ASSISTANCE_PERMISSION`, Invalid naming an
    unknown choice, unknown weights or weights of another kind. Returns
    :func:`assistance_state`."""
    from services.accounts.users import can

    if not can(user, ASSISTANCE_PERMISSION):
        raise Forbidden(
            f"Your role ({user.role.value}) may not change the assistance; ask a lead or admin."
        )
    choice = _validate_choice(session, choice)
    project.assistance = (
        None
        if choice == "auto"
        else {"choice": choice, "by": user.username, "at": datetime.now(UTC).isoformat()}
    )
    session.add(project)
    session.flush()
    return assistance_state(session, project)


def project_assistant(session: Session, project: Project | None = None) -> Assistant:
    """The assistance back end for ``project`` (default: the settings' project), as
    :func:`resolve_assistance` picks it. ``.backend`` names it."""
    from models.assist import make_assistant

    if project is None:
        project = _default_project(session)
    r = resolve_assistance(session, project)
    return make_assistant(r.settings, assist_net_path=r.assist_net_path)


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
    assistant = project_assistant(session, project)
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


#: Prepared photos by (image id, or the sha256 of photos the store does not hold, and
#: :attr:`ResolvedAssistance.key`): a new choice misses.
_cache: OrderedDict[tuple[int | str, tuple[str, ...]], Prepared] = OrderedDict()
_cache_lock = threading.Lock()
#: Serialises embedding: a "prepare" and the first click racing must not embed twice.
_prepare_lock = threading.Lock()


def clear_cache() -> None:
    """Forget every prepared photo (tests; a new store)."""
    with _cache_lock:
        _cache.clear()


def _prepared_for(
    photo: int | str,
    resolved: ResolvedAssistance,
    pixels: Callable[[], np.ndarray],
    width: int,
) -> Prepared:
    """The cached assistant for ``photo`` under ``resolved``, else one prepared on
    ``pixels()`` (at most :data:`ASSIST_MAX_SIDE` on its longer side) of a ``width``-pixel
    wide photo, then kept."""
    key = (photo, resolved.key)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    with _prepare_lock:
        with _cache_lock:
            if key in _cache:
                return _cache[key]
        from models.assist import make_assistant

        seen = pixels()
        assistant = make_assistant(resolved.settings, assist_net_path=resolved.assist_net_path)
        assistant.set_image(seen)
        item = Prepared(assistant, scale=seen.shape[1] / width)
        with _cache_lock:
            _cache[key] = item
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
        return item


def prepared(session: Session, image_id: int, project: Project | None = None) -> Prepared:
    """The assistant with ``image_id`` set (cached for the last :data:`CACHE_SIZE` photos,
    per back end: after a change of choice the next request prepares the new one).

    Raises NotFound when the image or its file is missing, or the image belongs to another
    ``project``.
    """
    image = get_image(session, image_id, project)
    if project is None:
        project = session.get(Project, image.project_id)
    resolved = resolve_assistance(session, project)
    return _prepared_for(
        image_id,
        resolved,
        lambda: load_image_array(image, max_side=ASSIST_MAX_SIDE),
        image.width,
    )


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


#: Largest simplification a prompt may ask for, in image pixels.
MAX_TOLERANCE_PX = 50.0


def check_prompt(
    points: Sequence[Any],
    labels: Sequence[Any],
    box: Sequence[Any] | None,
    tolerance: float,
    width: int,
    height: int,
) -> None:
    """Refuse a prompt the assistant cannot take, as it was sent (JSON values), with an Invalid
    naming the field: more points than ``max_assist_points`` (counted first, so a flood costs
    nothing more); a point that is not ``[x, y]``; a NaN, an infinity or a coordinate beyond
    :func:`core.geometry.image_reach` of the ``width`` x ``height`` photo (1e308 overflows the
    back ends' window arithmetic); a label other than 1 or 0; a box that is not 4 such
    numbers; a tolerance outside 0..:data:`MAX_TOLERANCE_PX`. Checked before the photo is
    embedded, so a bad prompt costs nothing."""
    limit = get_settings().max_assist_points
    if len(points) > limit:
        raise Invalid(
            f"points: {len(points):,} points in one request is more than the limit of "
            f"{limit:,} (setting {env_name('max_assist_points')})"
        )
    reach = image_reach(width, height)
    photo = f"the {width}x{height} photo"
    for i, p in enumerate(points):
        if not (isinstance(p, list | tuple) and len(p) == 2 and all(map(_finite, p))):
            raise Invalid(f"points[{i}] must be [x, y], two finite numbers, not {_shown(p)}")
        if not _within(p[0], p[1], p[0], p[1], reach):
            raise Invalid(f"points[{i}] {_shown(p)} lies far outside {photo}; click on it")
    for i, label in enumerate(labels):
        if isinstance(label, bool) or label not in (0, 1):
            raise Invalid(f"labels[{i}] must be 1 (positive) or 0 (negative), not {_shown(label)}")
    if box is not None:
        if not (isinstance(box, list | tuple) and len(box) == 4 and all(map(_finite, box))):
            raise Invalid(f"box must be [x0, y0, x1, y1], four finite numbers, not {_shown(box)}")
        (x0, x1), (y0, y1) = sorted(box[0::2]), sorted(box[1::2])
        if not _within(x0, y0, x1, y1, reach):
            raise Invalid(f"box {_shown(box)} reaches far outside {photo}; draw it on the photo")
    if not (_finite(tolerance) and 0 <= tolerance <= MAX_TOLERANCE_PX):
        raise Invalid(
            f"tolerance must be from 0 to {MAX_TOLERANCE_PX:g} pixels, not {_shown(tolerance)}"
        )


def _finite(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _within(x0: float, y0: float, x1: float, y1: float, reach: tuple[float, ...]) -> bool:
    return reach[0] <= x0 and reach[1] <= y0 and x1 <= reach[2] and y1 <= reach[3]


def _shown(value: object) -> str:
    """``value`` as JSON spells it (NaN, Infinity), cut short: what the client sent."""
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


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
    (:func:`check_prompt`; no point or box, a label count that does not match the points, an
    empty box).
    """
    image = get_image(session, image_id, project)  # another project's id is NotFound first
    check_prompt(points, labels, box, tolerance, image.width, image.height)
    if not len(points) and box is None:
        raise Invalid("give at least one point or a box")
    if len(labels) != len(points):
        raise Invalid("give one label (1 positive, 0 negative) per point")
    item = prepared(session, image_id, project)
    return _answer(session, item, points, labels, box, tolerance)


def assist_pixels(
    session: Session,
    project: Project,
    sha256: str,
    pixels: Callable[[int], np.ndarray],
    width: int,
    height: int,
    *,
    points: Sequence[Sequence[float]] = (),
    labels: Sequence[int] = (),
    box: Sequence[float] | None = None,
    tolerance: float = 1.0,
) -> AssistResult:
    """:func:`assist` on a photo the store does not hold (a Label Studio task's), known by the
    ``sha256`` of its file: ``pixels(max_side)`` gives its ``width`` x ``height`` pixels
    (HWC uint8 RGB, shrunk to ``max_side``). The prepared assistant is cached as the store's
    photos are, keyed by the sha256, with the project's assistance back end."""
    check_prompt(points, labels, box, tolerance, width, height)
    if not len(points) and box is None:
        raise Invalid("give at least one point or a box")
    if len(labels) != len(points):
        raise Invalid("give one label (1 positive, 0 negative) per point")
    resolved = resolve_assistance(session, project)
    item = _prepared_for(sha256, resolved, lambda: pixels(ASSIST_MAX_SIDE), width)
    return _answer(session, item, points, labels, box, tolerance)


def _answer(
    session: Session,
    item: Prepared,
    points: Sequence[Sequence[float]],
    labels: Sequence[int],
    box: Sequence[float] | None,
    tolerance: float,
) -> AssistResult:
    """The prepared assistant's answer to a checked prompt in image pixels, back in them."""
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
    note = result.note
    if note and result.backend == "grabcut" and assist_net_path(session) is not None:
        note += "; an assist_net version is registered: choose it under Assistance on the dashboard"
    return AssistResult(
        shape=shape, score=float(result.score), backend=str(result.backend), note=note
    )
