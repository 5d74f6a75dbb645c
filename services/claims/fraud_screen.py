"""Feeding the fraud queue without a fake-damage model: a cheap, stated screen.

A photo is queued for a fraud check (the fraud queue's ``flagged`` filter) when

1. a fake-damage flag or prediction marks it (as before: an annotation of the fake group or
   with ``attributes.fake``, or a prediction of the fake group); or
2. it holds damage of a high severity (setting ``fraud_severities``, default ``severe``):
   read live from the annotations, so no job is needed; or
3. the screen (:func:`screen_images`, the ``fraud_screen`` job) found a damage polygon whose
   inside looks unlike its surroundings: its mean colour is more than
   ``fraud_colour_distance`` ΔE (CIE76, Lab) from that of a ring around the polygon, or its
   grey-level spread (median absolute deviation) is more than ``fraud_texture_ratio`` times the ring's, or
   less than its inverse. Real dents and scratches keep the panel's paint around them; a
   sticker, a painted-on or an edited patch tends not to. The screen stores its reasons in
   ``Image.meta["fraud_reasons"]`` and ``Image.meta["fraud_check"] = True``.

:func:`check_reasons` gives the analyst the sentences of all three.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
from sqlalchemy import exists
from sqlmodel import Session, select

from core.config import get_settings
from core.geometry import Shape
from db.models import Annotation, Image, ModelVersion, Prediction, PredictionState, Project
from services.accounts.projects import project_taxonomy
from services.labelling.flags import CHECK_KEY, severities
from services.labelling.readers import get_image

#: ``Image.meta`` keys the screen writes.

REASONS_KEY = "fraud_reasons"
#: The same reasons by the annotation id (a string, as JSON keys are) they are about.
SUSPECTS_KEY = "fraud_suspects"
#: Ring around a polygon that stands for its surroundings: this share of the polygon's box
#: size on each side (at least ``RING_MIN_PX`` pixels at the screening size).
RING_SHARE = 0.35
RING_MIN_PX = 6
#: Pixels a polygon (and its ring) must cover at the screening size to be measured.
MIN_PIXELS = 30


# ---------- the colour and texture statistic ----------


def _lab(rgb: np.ndarray) -> np.ndarray:
    """``(N, 3)`` uint8 sRGB -> ``(N, 3)`` CIE Lab (D65)."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = (
        c
        @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    )
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1
    )


def patch_statistic(image: np.ndarray, shape: Shape) -> dict[str, float] | None:
    """Inside ``shape`` against the ring around it, on ``image`` (HWC uint8 RGB, the shape in
    its pixels): ``{"colour_distance": ΔE, "texture_ratio": spread inside / spread ring}``
    (spread: the grey levels' median absolute deviation, plus one); None
    when the polygon or its ring is too small to measure."""
    h, w = image.shape[:2]
    inside = shape.to_mask(h, w)
    if inside.sum() < MIN_PIXELS:
        return None
    x0, y0, x1, y1 = shape.bbox
    pad = max(RING_SHARE * max(x1 - x0, y1 - y0), RING_MIN_PX)
    ring = np.zeros_like(inside)
    ys, xs = (
        slice(max(0, int(y0 - pad)), int(np.ceil(y1 + pad))),
        slice(max(0, int(x0 - pad)), int(np.ceil(x1 + pad))),
    )
    ring[ys, xs] = True
    ring &= ~inside
    if ring.sum() < MIN_PIXELS:
        return None
    lab_in, lab_ring = _lab(image[inside]), _lab(image[ring])
    grey = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    spread_in, spread_ring = _mad(grey[inside]), _mad(grey[ring])
    return {
        "colour_distance": float(np.linalg.norm(lab_in.mean(0) - lab_ring.mean(0))),
        "texture_ratio": (spread_in + 1.0) / (spread_ring + 1.0),  # +1: flat paint is not 0/0
    }


def _mad(values: np.ndarray) -> float:
    """Median absolute deviation: the spread of grey levels, which a wheel or a panel edge
    crossing a corner of the ring barely moves (a standard deviation jumps)."""
    return float(np.median(np.abs(values - np.median(values))))


def patch_reason(stat: dict[str, float], what: str) -> str | None:
    """The sentence for an unusual statistic of the damage ``what``, or None."""
    settings = get_settings()
    if stat["colour_distance"] > settings.fraud_colour_distance:
        return (
            f"{what}: its colour differs from the paint around it by ΔE "
            f"{stat['colour_distance']:.0f} (a check above {settings.fraud_colour_distance:g})"
        )
    ratio, limit = stat["texture_ratio"], settings.fraud_texture_ratio
    if ratio > limit or ratio < 1 / limit:
        return (
            f"{what}: its texture is {ratio:.2f}× that of the paint around it "
            f"(a check outside {1 / limit:.2f}–{limit:g}×)"
        )
    return None


# ---------- screening photos ----------


def screen_image(session: Session, image: Image) -> list[str]:
    """Measure every live damage polygon of ``image`` and store the reasons found (none
    clears an earlier screen's); returns them."""
    from exports.image_files import load_image_rgb
    from services.labelling.images import image_path

    taxonomy = project_taxonomy(session.get(Project, image.project_id))
    rows = session.exec(
        select(Annotation)
        .where(
            Annotation.image_id == image.id,
            Annotation.deleted == False,  # noqa: E712
            Annotation.group == "damage",
        )
        .order_by(Annotation.id)
    ).all()
    reasons: list[str] = []
    suspects: dict[str, str] = {}
    if rows:
        pixels = load_image_rgb(image_path(image), max_side=get_settings().fraud_screen_max_side)
        sx, sy = pixels.shape[1] / image.width, pixels.shape[0] / image.height
        for row in rows:
            shape = Shape.from_json(row.geometry, trusted=True).scaled(sx, sy)
            stat = patch_statistic(pixels, shape)
            name = taxonomy.by_id(row.class_id).name if row.class_id in taxonomy else "damage"
            reason = stat and patch_reason(stat, f"{name} (annotation {row.id})")
            if reason:
                reasons.append(reason)
                suspects[str(row.id)] = reason
    keys = (CHECK_KEY, REASONS_KEY, SUSPECTS_KEY)
    meta = {k: v for k, v in (image.meta or {}).items() if k not in keys}
    if reasons:
        meta[CHECK_KEY], meta[REASONS_KEY], meta[SUSPECTS_KEY] = True, reasons, suspects
    meta["fraud_screened_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    image.meta = meta
    session.add(image)
    return reasons


def damage_image_ids(
    session: Session, project: Project, image_ids: list[int] | None = None
) -> list[int]:
    """Ids of ``project``'s photos that hold live damage polygons (of ``image_ids`` only,
    when given), in id order: the photos the screen measures."""
    stmt = (
        select(Image.id)
        .where(
            Image.project_id == project.id,
            exists().where(
                Annotation.image_id == Image.id,
                Annotation.deleted == False,  # noqa: E712
                Annotation.group == "damage",
            ),
        )
        .order_by(Image.id)
    )
    if image_ids is not None:
        stmt = stmt.where(Image.id.in_(image_ids))
    return list(session.exec(stmt).all())


def screen_images(
    session: Session, project: Project, image_ids: list[int] | None = None
) -> dict[str, int]:
    """Screen ``project``'s photos that hold damage polygons (only ``image_ids`` when
    given); returns ``{"screened", "queued"}``. The caller commits."""
    ids = damage_image_ids(session, project, image_ids)
    queued = 0
    for image_id in ids:
        queued += bool(screen_image(session, session.get(Image, image_id)))
    session.flush()
    return {"screened": len(ids), "queued": queued}


def check_reasons(session: Session, image: Image) -> list[str]:
    """Why ``image`` is in the fraud queue, in sentences (empty when it is not)."""
    out = []
    rows = session.exec(
        select(Annotation)
        .where(Annotation.image_id == image.id, Annotation.deleted == False)  # noqa: E712
        .order_by(Annotation.id)
    ).all()
    taxonomy = project_taxonomy(session.get(Project, image.project_id))

    def name(cid: int) -> str:
        return taxonomy.by_id(cid).name if cid in taxonomy else f"class {cid}"

    wanted = set(severities())
    for a in rows:
        attrs = a.attributes or {}
        if a.group == "fake" or attrs.get("fake"):
            out.append(f"annotation {a.id} ({name(a.class_id)}) is flagged as fake damage")
        elif a.group == "damage" and attrs.get("severity") in wanted:
            out.append(f"{name(a.class_id)} (annotation {a.id}) has {attrs['severity']} severity")
    fake_preds = session.exec(
        select(Prediction, ModelVersion.name)
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(
            Prediction.image_id == image.id,
            Prediction.group == "fake",
            Prediction.state != PredictionState.withdrawn,  # its version is no longer offered
        )
        .order_by(Prediction.score.desc())
    ).all()
    for p, version in fake_preds:
        out.append(f"{version} predicts {name(p.class_id)} (score {p.score:.2f})")
    out += list((image.meta or {}).get(REASONS_KEY) or [])
    return out


def suspects(session: Session, image: Image) -> dict[int, str]:
    """The live annotations of ``image`` that put it in the fraud queue, by id, each with the
    sentence that says why: flagged fake, of a severity the queue checks, or found by the
    screen. A fake-damage prediction names no annotation and is left out (see
    :func:`check_reasons`)."""
    rows = session.exec(
        select(Annotation)
        .where(Annotation.image_id == image.id, Annotation.deleted == False)  # noqa: E712
        .order_by(Annotation.id)
    ).all()
    taxonomy = project_taxonomy(session.get(Project, image.project_id))
    screened = (image.meta or {}).get(SUSPECTS_KEY) or {}
    wanted = set(severities())
    out: dict[int, str] = {}
    for a in rows:
        attrs = a.attributes or {}
        name = taxonomy.by_id(a.class_id).name if a.class_id in taxonomy else f"class {a.class_id}"
        if a.group == "fake" or attrs.get("fake"):
            out[a.id] = f"{name} is flagged as fake damage"
        elif a.group == "damage" and attrs.get("severity") in wanted:
            out[a.id] = f"{name} has {attrs['severity']} severity"
        elif str(a.id) in screened:
            out[a.id] = screened[str(a.id)]
    return out


def fraud_check(session: Session, project: Project, image_id: int) -> dict[str, Any]:
    """``{"reasons": [...], "suspects": [{"annotation_id", "reason"}]}`` for the photo
    ``image_id`` of ``project`` (NotFound when it has none such)."""
    image = get_image(session, image_id, project)
    return {
        "reasons": check_reasons(session, image),
        "suspects": [
            {"annotation_id": k, "reason": v} for k, v in suspects(session, image).items()
        ],
    }
