"""New damage since pick-up: a return (or claim) inspection's damage compared with the
vehicle's pick-up inspection, photo by photo in the same slot.

The pick-up photo is aligned to the return photo (``services.claims.alignment``); every pick-up
damage (labelled, else the pending predictions) is warped through the homography into the
return photo. A return damage whose IoU with every warped pick-up damage is below
``new_damage_iou`` is ``new_since_pick_up``; one that overlaps is ``pre_existing``. When the
photos did not align (no homography, or a confidence below ``align_min_confidence``), or
there is no pick-up photo to compare with, the damage is ``unverified``, never new.

Fraud analysts and leads confirm or dismiss a flag with a note (``decide_flag``); the
verdict survives a recomputation as long as the instance is still there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlmodel import Session, select

from core.alignment import Alignment, scale_matrix, warp_shape
from core.config import get_settings
from core.geometry import Shape, mask_iou, shape_to_mask
from db.models import (
    Annotation,
    DamageFlag,
    Image,
    InspectionPhoto,
    Prediction,
    PredictionState,
    Project,
    User,
    utcnow,
)
from services.claims.inspections import get_inspection, inspection_photos, pick_up_for, slot_base
from services.errors import Forbidden, Invalid, NotFound, check_comment_length

NEW = "new_since_pick_up"
PRE_EXISTING = "pre_existing"
UNVERIFIED = "unverified"
DECISIONS = ("confirmed", "dismissed")
#: IoU is measured on masks whose long side is at most this many pixels
IOU_SIDE = 512


@dataclass(frozen=True)
class Damage:
    """One damage instance of a photo: where it came from and its region (photo pixels)."""

    source: str  # annotation / prediction
    source_id: int
    class_id: int
    shape: Shape


def photo_damage(session: Session, image_id: int) -> list[Damage]:
    """The photo's labelled damage; when none is labelled, its pending damage predictions."""
    rows = session.exec(
        select(Annotation).where(
            Annotation.image_id == image_id,
            Annotation.group == "damage",
            Annotation.deleted == False,  # noqa: E712
        )
    ).all()
    if rows:
        return [
            Damage("annotation", a.id, a.class_id, Shape.from_json(a.geometry, trusted=True))
            for a in rows
        ]
    preds = session.exec(
        select(Prediction).where(
            Prediction.image_id == image_id,
            Prediction.group == "damage",
            Prediction.state == PredictionState.pending,
        )
    ).all()
    return [
        Damage("prediction", p.id, p.class_id, Shape.from_json(p.geometry, trusted=True))
        for p in preds
    ]


def classify(
    pre: list[Damage],
    post: list[Damage],
    alignment: Alignment | None,
    post_size: tuple[int, int],
    iou_threshold: float | None = None,
) -> list[tuple[Damage, str, float | None]]:
    """Each post damage with its state and its best IoU against the warped pre damage.
    ``post_size`` is the return photo's ``(width, height)``; ``alignment`` maps pre pixels
    to post pixels (None or failed: everything ``unverified``)."""
    threshold = get_settings().new_damage_iou if iou_threshold is None else iou_threshold
    if alignment is None or not alignment.ok:
        return [(d, UNVERIFIED, None) for d in post]
    w, h = post_size
    s = min(1.0, IOU_SIDE / max(w, h))
    mw, mh = max(1, round(w * s)), max(1, round(h * s))
    hs = scale_matrix(s) @ alignment.homography
    warped = []
    for d in pre:
        try:
            warped.append(shape_to_mask(warp_shape(hs, d.shape), mh, mw))
        except (ValueError, FloatingPointError):
            continue  # a polygon folded by the warp: it cannot match anything
    out = []
    for d in post:
        m = shape_to_mask(d.shape.scaled(s), mh, mw)
        best = max((mask_iou(m, p) for p in warped), default=0.0)
        out.append((d, NEW if best < threshold else PRE_EXISTING, best))
    return out


def _scaled_alignment(a: Alignment, pre_scale: float, post_scale: float) -> Alignment:
    """An alignment found on shrunk photos, in original pixels."""
    if not a.ok:
        return a
    hm = np.linalg.inv(scale_matrix(post_scale)) @ a.homography @ scale_matrix(pre_scale)
    return Alignment(
        hm / hm[2, 2],
        a.inliers,
        a.confidence,
        a.method,
        a.reason,
        a.matches,
        None if a.reprojection_error is None else a.reprojection_error / post_scale,
        a.seconds,
        a.candidates,
    )


def align_photos(
    pre: Image, post: Image, method: str = "auto", encoder: Any | None = None
) -> Alignment:
    from services.claims.alignment import align
    from services.labelling.images import load_image_array

    side = get_settings().align_max_side
    a = load_image_array(pre, max_side=side)
    b = load_image_array(post, max_side=side)
    found = align(a, b, method, encoder=encoder)
    return _scaled_alignment(found, a.shape[1] / pre.width, b.shape[1] / post.width)


def compute_flags(
    session: Session,
    project: Project,
    inspection_id: int,
    *,
    method: str = "auto",
    encoder: Any | None = None,
    aligner: Callable[[Image, Image], Alignment] | None = None,
) -> dict[str, Any]:
    """Compare every photo of the inspection with the pick-up photo of the same slot and
    store a flag per return damage; returns the counts per state and the pick-up compared
    against. ``aligner(pre_image, post_image)`` replaces the photo alignment (tests)."""
    inspection = get_inspection(session, project, inspection_id)
    if inspection.kind == "pick_up":
        raise Invalid(
            f"inspection {inspection_id} is a pick-up; new damage is found on a return or "
            "claim inspection, compared with its pick-up"
        )
    pick_up = pick_up_for(session, inspection)
    pre_by_slot: dict[str, Image] = {}
    if pick_up is not None:
        for p, im in inspection_photos(session, pick_up.id):
            pre_by_slot.setdefault(p.slot, im)
            pre_by_slot.setdefault(slot_base(p.slot), im)
    existing = {
        (f.image_id, f.source, f.source_id): f
        for f in session.exec(select(DamageFlag).where(DamageFlag.inspection_id == inspection.id))
    }
    kept: set[tuple[int, str, int]] = set()
    counts = {NEW: 0, PRE_EXISTING: 0, UNVERIFIED: 0}
    now = utcnow()
    for slot_row, post in inspection_photos(session, inspection.id):
        post_damage = photo_damage(session, post.id)
        if not post_damage:
            continue
        pre = pre_by_slot.get(slot_row.slot) or pre_by_slot.get(slot_base(slot_row.slot))
        if pick_up is None:
            alignment: Alignment | None = Alignment.failed(
                "none", "the vehicle has no pick-up inspection to compare with"
            )
        elif pre is None:
            alignment = Alignment.failed(
                "none", f"the pick-up inspection has no photo in slot {slot_row.slot}"
            )
        else:
            alignment = (aligner or (lambda a, b: align_photos(a, b, method, encoder)))(pre, post)
        results = classify(
            photo_damage(session, pre.id) if pre is not None else [],
            post_damage,
            alignment,
            (post.width, post.height),
        )
        info = {k: v for k, v in alignment.as_dict().items() if k != "candidates"}
        for d, state, best in results:
            key = (post.id, d.source, d.source_id)
            kept.add(key)
            counts[state] += 1
            flag = existing.get(key) or DamageFlag(
                project_id=project.id,
                inspection_id=inspection.id,
                image_id=post.id,
                source=d.source,
                source_id=d.source_id,
                class_id=d.class_id,
                geometry=[],
                state=state,
            )
            flag.class_id = d.class_id
            flag.geometry = d.shape.to_json()
            flag.compared_inspection_id = pick_up.id if pick_up else None
            flag.compared_image_id = pre.id if pre is not None else None
            flag.state = state
            flag.best_iou = None if best is None else round(best, 4)
            flag.alignment = info
            flag.computed_at = now
            session.add(flag)
    for key, flag in existing.items():
        if key not in kept:
            session.delete(flag)
    session.flush()
    return {
        "inspection_id": inspection.id,
        "compared_inspection_id": pick_up.id if pick_up else None,
        "counts": counts,
    }


def list_flags(
    session: Session, project: Project, inspection_id: int, state: str | None = None
) -> list[DamageFlag]:
    get_inspection(session, project, inspection_id)
    stmt = select(DamageFlag).where(DamageFlag.inspection_id == inspection_id)
    if state:
        stmt = stmt.where(DamageFlag.state == state)
    return list(session.exec(stmt.order_by(DamageFlag.image_id, DamageFlag.id)))


def decide_flag(
    session: Session, project: Project, flag_id: int, *, decision: str, note: str | None, user: User
) -> DamageFlag:
    """A fraud analyst's or lead's verdict on a flag (``confirmed`` or ``dismissed``), with
    a note that the report shows as written."""
    from services.accounts.users import Permission, can

    if not can(user, Permission.fraud):
        raise Forbidden(
            f"your role ({user.role.value}) may not confirm or dismiss damage flags; ask a "
            "fraud analyst or a lead"
        )
    flag = session.get(DamageFlag, flag_id)
    if flag is None or flag.project_id != project.id:
        raise NotFound(f"damage flag {flag_id} does not exist in project {project.name}")
    if decision not in DECISIONS:
        raise Invalid(f"decision {decision!r} must be one of {', '.join(DECISIONS)}")
    note = (note or "").strip() or None
    check_comment_length(note, "note")
    flag.decision = decision
    flag.note = note
    flag.decided_by = user.username
    flag.decided_at = utcnow()
    session.add(flag)
    session.flush()
    return flag


def flags_of_image(session: Session, image_id: int) -> list[DamageFlag]:
    return list(session.exec(select(DamageFlag).where(DamageFlag.image_id == image_id)))


def inspection_of_image(session: Session, image_id: int) -> InspectionPhoto | None:
    return session.get(InspectionPhoto, image_id)
