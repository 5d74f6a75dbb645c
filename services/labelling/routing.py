"""Whose labels a user sees and saves, and which photos they may be handed: overlap photos
labelled independently by n annotators and gold photos mixed into an annotator's queue
(the rules that ``services.review.quality`` sets up and scores).

Only users who may not review are routed: reviewers and leads work on the working set.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlmodel import Session

from core.config import get_settings
from db.models import AnnotationSet, Image, ImageStatus, PhotoAgreement, Project, User
from services.accounts import users as user_service
from services.accounts.users import Permission

OVERLAP = "overlap"


GOLD = "gold"


GOLD_SUBMISSION = "gold_submission"


@dataclass(frozen=True)
class QualitySettings:
    overlap_share: float
    overlap_annotators: int
    gold_share: float
    gold_feedback: bool
    iou_threshold: float
    quorum: float
    low_agreement: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def project_quality_settings(project: Project) -> QualitySettings:
    """The project's quality settings: a lead's choices over the defaults of ``core.config``."""
    s = get_settings()
    values: dict[str, Any] = {
        "overlap_share": s.quality_overlap_share,
        "overlap_annotators": s.quality_overlap_annotators,
        "gold_share": s.quality_gold_share,
        "gold_feedback": s.quality_gold_feedback,
        "iou_threshold": s.quality_iou_threshold,
        "quorum": s.quality_quorum,
        "low_agreement": s.quality_low_agreement,
    }
    values.update({k: v for k, v in (project.quality or {}).items() if k in values})
    return QualitySettings(**values)


def spread_key(image_id: int, salt: str = "") -> str:
    """A stable pseudo-random order key, so picks are spread over the queue, not its head."""
    return hashlib.sha256(f"{salt}:{image_id}".encode()).hexdigest()


def routed_kind(session: Session, user: User, image: Image) -> str | None:
    """``gold_submission`` or ``overlap`` when ``user``'s labels of ``image`` go to their own
    set; None when they work on the photo's working set."""
    if user_service.can(user, Permission.review):
        return None
    if image.gold:
        return GOLD_SUBMISSION
    if image.overlap_target > 0 and session.get(PhotoAgreement, image.id) is None:
        return OVERLAP
    return None


def own_set(session: Session, user: User, image: Image, kind: str) -> AnnotationSet | None:
    return session.execute(
        select(AnnotationSet).where(
            AnnotationSet.image_id == image.id,
            AnnotationSet.user_id == user.id,
            AnnotationSet.kind == kind,
        )
    ).scalar_one_or_none()


def gold_set(session: Session, image: Image) -> AnnotationSet | None:
    """The frozen gold labels of ``image`` (None when it was never marked gold)."""
    return session.execute(
        select(AnnotationSet).where(AnnotationSet.image_id == image.id, AnnotationSet.kind == GOLD)
    ).scalar_one_or_none()


def detail_for(
    session: Session, user: User, image: Image, detail: dict[str, Any]
) -> dict[str, Any]:
    """The image ``detail`` (``services.labelling.readers.image_detail``) as ``user`` may see it: on
    a routed photo, their own set and its version, a status of their own (new, in progress,
    labelled once submitted), no review comment. A gold photo looks like an ordinary one."""
    kind = routed_kind(session, user, image)
    if kind is None:
        return detail
    mine = own_set(session, user, image, kind)
    status = ImageStatus.new
    if mine is not None:
        status = ImageStatus.labelled if mine.submitted_at else ImageStatus.in_progress
    version = mine.version if mine is not None else 0
    predictions = detail.get("predictions", [])
    if kind == GOLD_SUBMISSION:
        # Which predictions a reviewer accepted would hint at the gold labels.
        predictions = [{**p, "state": "pending"} for p in predictions]
    return {
        **detail,
        "status": status.value,
        "review_comment": None,
        "annotation_version": version,
        "version": version,
        "annotations": list(mine.annotations) if mine is not None else [],
        "predictions": predictions,
    }


def candidate_filter(user: User, leased_ok: ColumnElement[bool]) -> ColumnElement[bool]:
    """Which photos ``user`` may be handed, given ``leased_ok`` (the lease rule of
    ``services.labelling.leases.may_have``). For users who may not review: never a photo they already
    submitted a set of; an overlap photo only while fewer than n annotators have one (or they
    do); overlap and gold photos are shared, so another annotator's lease does not block them.
    Reviewers and leads get the lease rule alone."""
    if user_service.can(user, Permission.review):
        return leased_ok
    submitted = select(AnnotationSet.image_id).where(
        AnnotationSet.user_id == user.id, AnnotationSet.submitted_at.is_not(None)
    )
    mine = select(AnnotationSet.image_id).where(
        AnnotationSet.user_id == user.id, AnnotationSet.kind == OVERLAP
    )
    takers = (
        select(func.count(AnnotationSet.id))
        .where(AnnotationSet.image_id == Image.id, AnnotationSet.kind == OVERLAP)
        .correlate(Image)
        .scalar_subquery()
    )
    return and_(
        Image.id.not_in(submitted),
        or_(Image.overlap_target == 0, Image.id.in_(mine), takers < Image.overlap_target),
        or_(leased_ok, Image.overlap_target > 0, Image.gold == True),  # noqa: E712
    )


def queue_ids_for(
    session: Session,
    project_id: int,
    user: User,
    ids: list[int],
    filters: dict[str, Any] | None = None,
) -> list[int]:
    """The queue ``ids`` (``services.labelling.images.queue_ids``) with gold photos mixed in for a user
    who may not review, at the project's ``gold_share``: after every ⌈(1 - s)/s⌉ ordinary
    photos, one gold photo the user has not submitted yet (in an order of their own). Filtered
    queues (a status, a split, a class) are left as they are."""
    if user_service.can(user, Permission.review) or any(
        v not in (None, "") for v in (filters or {}).values()
    ):
        return ids
    project = session.get(Project, project_id)
    share = project_quality_settings(project).gold_share if project is not None else 0.0
    if share <= 0:
        return ids
    submitted = select(AnnotationSet.image_id).where(
        AnnotationSet.user_id == user.id,
        AnnotationSet.kind == GOLD_SUBMISSION,
        AnnotationSet.submitted_at.is_not(None),
    )
    queued = set(ids)
    gold = [
        i
        for i in session.execute(
            select(Image.id).where(
                Image.project_id == project_id,
                Image.gold == True,  # noqa: E712
                Image.id.not_in(submitted),
            )
        ).scalars()
        if i not in queued
    ]
    if not gold:
        return ids
    gold.sort(key=lambda i: spread_key(i, f"gold{user.id}"))
    every = max(1, math.ceil((1 - share) / share - 1e-9)) if share < 1 else 0
    out: list[int] = []
    for k, image_id in enumerate(ids):
        out.append(image_id)
        if gold and every and (k + 1) % every == 0:
            out.append(gold.pop(0))
    if share >= 1:
        out = gold + out
    return out
