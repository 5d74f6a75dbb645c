"""The annotation queue: next / previous photo under filters, with a progress counter."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlmodel import Session

from api.deps import current_project, db_session, require, service_errors
from api.routes.images import image_detail
from db.models import Project, User
from services import images as image_service

router = APIRouter(tags=["queue"])


def _step(
    direction: str, session: Session, project: Project, after_id: int | None, filters: dict
) -> dict[str, Any]:
    filters = {k: v for k, v in filters.items() if v is not None and v != ""}
    with service_errors():
        step = image_service.queue_next if direction == "next" else image_service.queue_previous
        image = step(session, project.id, after_id=after_id, **filters)
        ids = image_service.queue_ids(session, project.id, **filters)
        progress = image_service.queue_progress(session, project.id)
    position = ids.index(image.id) + 1 if image is not None and image.id in ids else None
    return {
        "image": image_detail(session, image) if image is not None else None,
        "position": position,
        "queue_length": len(ids),
        "progress": progress,
    }


def queue_filters(
    status: str | None = Query(
        default=None, description="comma-separated; default: new,in_progress,rejected"
    ),
    split: str | None = None,
    class_id: int | None = None,
    flagged: bool | None = None,
) -> dict[str, Any]:
    """The queue's filters, shared by next and previous."""
    return {"status": status, "split": split, "class_id": class_id, "flagged": flagged}


@router.get("/queue/next")
def queue_next(
    after_id: int | None = None,
    filters: dict[str, Any] = Depends(queue_filters),
    user: User = Depends(require("view")),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """The photo after ``after_id`` in queue order (active-learning score, else import order)."""
    return _step("next", session, project, after_id, filters)


@router.get("/queue/previous")
def queue_previous(
    after_id: int | None = None,
    filters: dict[str, Any] = Depends(queue_filters),
    user: User = Depends(require("view")),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """The photo before ``after_id`` in queue order."""
    return _step("previous", session, project, after_id, filters)
