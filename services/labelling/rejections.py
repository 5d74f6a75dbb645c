"""Where a review verdict goes: a rejected photo back to its author, and every verdict into the
log the per-annotator rejection rates are computed from.

The low layer of :mod:`services.review.decisions`, imported by :mod:`services.labelling.statuses` (so that
every status change, whichever caller made it, keeps ``Image.rejected_for`` right); it imports
no other service.
"""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import Session, select

from db.models import Annotation, AnnotationRevision, Image, ImageStatus, ReviewDecision

#: Authors recorded by imports (``import:<file name>``) are files, not people to return work to.
IMPORT_AUTHOR_PREFIX = "import:"


def _person(name: str | None, reviewer: str | None) -> bool:
    return bool(name) and name != reviewer and not name.startswith(IMPORT_AUTHOR_PREFIX)


def photo_author(session: Session, image: Image, reviewer: str | None = None) -> str | None:
    """The annotator a verdict on ``image`` is about: the last person (not ``reviewer``, not an
    import) who saved its annotations; else who last moved its status (marked it labelled);
    else the author of its newest annotation. None when nobody is recorded."""
    savers = session.exec(
        select(AnnotationRevision.author)
        .where(AnnotationRevision.image_id == image.id)
        .order_by(AnnotationRevision.revision.desc())
    ).all()
    for name in savers:
        if _person(name, reviewer):
            return name
    status_by = (image.meta or {}).get("status_by")
    if _person(status_by, reviewer):
        return status_by
    authors = session.exec(
        select(Annotation.author)
        .where(Annotation.image_id == image.id)
        .order_by(Annotation.updated_at.desc(), Annotation.id.desc())
    ).all()
    return next((a for a in authors if _person(a, reviewer)), None)


def record(
    session: Session,
    image: Image,
    *,
    reviewer: str,
    decision: str,
    author: str | None,
    reason: str | None = None,
    annotation_id: int | None = None,
) -> ReviewDecision:
    row = ReviewDecision(
        project_id=image.project_id,
        image_id=image.id,
        annotation_id=annotation_id,
        author=author,
        reviewer=reviewer,
        decision=decision,
        reason=reason,
    )
    session.add(row)
    return row


def note_status_change(
    session: Session, image: Image, status: ImageStatus, by: str | None, comment: str | None
) -> None:
    """Called by ``services.labelling.statuses.set_status`` before ``image.status`` becomes
    ``status``: a rejection is addressed to the photo's author and logged; an approval is
    logged; any other status ends the wait (the author sent the photo on)."""
    if status == ImageStatus.rejected:
        image.rejected_for = photo_author(session, image, reviewer=by)
        # The reviewer is done with it: whoever held the queue's lease lets go, so that the
        # queue can hand it to its author at once (``services.labelling.leases``).
        image.lease_user_id = image.lease_since = image.lease_until = None
    else:
        image.rejected_for = None
    if (
        status in (ImageStatus.rejected, ImageStatus.reviewed)
        and by
        and not by.startswith(IMPORT_AUTHOR_PREFIX)
    ):
        author = image.rejected_for if status == ImageStatus.rejected else None
        record(
            session,
            image,
            reviewer=by,
            decision="rejected" if status == ImageStatus.rejected else "accepted",
            author=author or photo_author(session, image, reviewer=by),
            reason=comment if status == ImageStatus.rejected else None,
        )


def waiting_count(session: Session, project_id: int, username: str) -> int:
    """How many rejected photos of the project wait for ``username`` to fix them."""
    return int(
        session.exec(
            select(func.count())
            .select_from(Image)
            .where(
                Image.project_id == project_id,
                Image.status == ImageStatus.rejected,
                Image.rejected_for == username,
            )
        ).one()
    )


def waiting_ids(session: Session, project_id: int, username: str) -> list[int]:
    """Ids of the rejected photos waiting for ``username``, oldest rejection first."""
    return list(
        session.exec(
            select(Image.id)
            .where(
                Image.project_id == project_id,
                Image.status == ImageStatus.rejected,
                Image.rejected_for == username,
            )
            .order_by(Image.updated_at, Image.id)
        ).all()
    )


def rejected_instances(session: Session, image_id: int) -> list[Annotation]:
    """The photo's live annotations a reviewer rejected and nobody has changed since."""
    return list(
        session.exec(
            select(Annotation)
            .where(
                Annotation.image_id == image_id,
                Annotation.deleted == False,  # noqa: E712
                Annotation.review_state == "rejected",
            )
            .order_by(Annotation.id)
        ).all()
    )
