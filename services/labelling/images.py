"""Listing images, the annotation queue, and image pixels for display and models."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from sqlalchemy import and_, case, exists, func
from sqlmodel import Session, select

from db.models import Annotation, Image, ImageStatus, InspectionPhoto, Project
from services.errors import Invalid, NotFound
from services.labelling.flags import flag_clause
from services.labelling.readers import image_detail

#: Photos the annotation queue offers (labelled/reviewed ones are done).
OPEN_STATUSES = (ImageStatus.new, ImageStatus.in_progress, ImageStatus.rejected)


def filtered_query(
    project_id: int,
    *,
    status: str | None = None,
    split: str | None = None,
    class_id: int | None = None,
    flagged: bool | None = None,
    inspection_id: int | None = None,
):
    stmt = select(Image).where(Image.project_id == project_id)
    if status:
        try:
            statuses = [ImageStatus(s) for s in str(status).split(",") if s]
        except ValueError:
            raise Invalid(
                f"status {status!r} must be one of {', '.join(s.value for s in ImageStatus)}"
            ) from None
        stmt = stmt.where(Image.status.in_(statuses))
    if split:
        stmt = stmt.where(Image.split == split)
    live = and_(Annotation.image_id == Image.id, Annotation.deleted == False)  # noqa: E712
    if class_id is not None:
        stmt = stmt.where(exists().where(live, Annotation.class_id == class_id))
    if flagged is not None:
        # "flagged" = queued for a fraud check: a fake-damage annotation, flag or prediction,
        # high-severity damage, or a fraud-screen reason (services.labelling.flags)
        is_flagged = flag_clause()
        stmt = stmt.where(is_flagged if flagged else ~is_flagged)
    if inspection_id is not None:
        stmt = stmt.where(
            exists().where(
                InspectionPhoto.image_id == Image.id,
                InspectionPhoto.inspection_id == inspection_id,
            )
        )
    return stmt


def list_images(
    session: Session,
    project_id: int,
    *,
    status: str | None = None,
    split: str | None = None,
    class_id: int | None = None,
    flagged: bool | None = None,
    inspection_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Image], int]:
    """A page of images in queue order, and the total that match the filters."""
    if limit < 1 or limit > 1000:
        raise Invalid("limit must be between 1 and 1000")
    if offset < 0:
        raise Invalid("offset must not be negative")
    stmt = filtered_query(
        project_id,
        status=status,
        split=split,
        class_id=class_id,
        flagged=flagged,
        inspection_id=inspection_id,
    )
    total = session.exec(select(func.count()).select_from(stmt.subquery())).one()
    rows = session.exec(_queue_order(stmt).offset(offset).limit(limit)).all()
    return list(rows), int(total)


def _queue_order(stmt):
    # Highest active-learning score first; unscored photos after, in import order.
    return stmt.order_by(
        Image.queue_score.is_(None), Image.queue_score.desc(), Image.import_order, Image.id
    )


def queue_ids(
    session: Session,
    project_id: int,
    *,
    status: str | None = None,
    first_for: str | None = None,
    **filters,
) -> list[int]:
    """Image ids of the queue, in order (open photos unless ``status`` says otherwise).

    With ``first_for`` (a user name), the rejected photos that wait for that user to fix them
    (``Image.rejected_for``) come first: a rejection goes back to its author before new work.
    """
    status = status or ",".join(s.value for s in OPEN_STATUSES)
    stmt = filtered_query(project_id, status=status, **filters).with_only_columns(Image.id)
    if first_for:
        waiting = and_(Image.status == ImageStatus.rejected, Image.rejected_for == first_for)
        stmt = stmt.order_by(case((waiting, 0), else_=1))
    return list(session.exec(_queue_order(stmt)).all())


def queue_next(
    session: Session, project_id: int, *, after_id: int | None = None, **filters
) -> Image | None:
    """The photo after ``after_id`` in the queue (the first one when None)."""
    return _step(session, project_id, after_id, +1, **filters)


def queue_previous(
    session: Session, project_id: int, *, after_id: int | None = None, **filters
) -> Image | None:
    return _step(session, project_id, after_id, -1, **filters)


def _step(
    session: Session, project_id: int, current: int | None, step: int, **filters
) -> Image | None:
    ids = queue_ids(session, project_id, **filters)
    if not ids:
        return None
    if current is None or current not in ids:
        return session.get(Image, ids[0] if step > 0 else ids[-1])
    pos = ids.index(current) + step
    return session.get(Image, ids[pos]) if 0 <= pos < len(ids) else None


def queue_step(
    session: Session,
    project_id: int,
    direction: Literal["next", "previous"],
    *,
    after_id: int | None = None,
    **filters: Any,
) -> dict[str, Any]:
    """The photo after (or before) ``after_id`` with its detail, its place in the queue and the
    project's progress: what the workspace shows on each step. Empty filters are ignored."""
    filters = {k: v for k, v in filters.items() if v is not None and v != ""}
    step = queue_next if direction == "next" else queue_previous
    image = step(session, project_id, after_id=after_id, **filters)
    ids = queue_ids(session, project_id, **filters)
    position = ids.index(image.id) + 1 if image is not None and image.id in ids else None
    return {
        "image": image_detail(session, image) if image is not None else None,
        "position": position,
        "queue_length": len(ids),
        "progress": queue_progress(session, project_id),
    }


def queue_progress(session: Session, project_id: int) -> dict[str, int]:
    rows = session.exec(
        select(Image.status, func.count())
        .where(Image.project_id == project_id)
        .group_by(Image.status)
    ).all()
    counts = {s.value: 0 for s in ImageStatus}
    for status, n in rows:
        counts[status.value if hasattr(status, "value") else status] = n
    total = sum(counts.values())
    done = counts["labelled"] + counts["reviewed"]
    return {"total": total, "done": done, "open": total - done, **counts}


def image_path(image: Image) -> Path:
    path = Path(image.path)
    if not path.is_file():
        raise NotFound(
            f"the file of image {image.id} ({image.file_name}) is missing at {path}; "
            "restore it or re-import the folder"
        )
    return path


def load_image_array(image: Image, max_side: int | None = None) -> np.ndarray:
    """The image's pixels, HWC uint8 RGB, EXIF orientation applied."""
    from exports.image_files import load_image_rgb

    return load_image_rgb(image_path(image), max_side=max_side)


def images_by_ids(session: Session, project: Project, image_ids: list[int]) -> list[Image]:
    """The project's images with these ids, in the order given (ids of other projects and
    unknown ids are left out)."""
    rows = session.exec(
        select(Image).where(Image.project_id == project.id, Image.id.in_(image_ids))
    ).all()
    by_id = {im.id: im for im in rows}
    return [by_id[i] for i in image_ids if i in by_id]
