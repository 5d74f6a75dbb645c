"""The annotation queue: next / previous photo under filters, with a progress counter."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from sqlmodel import Session

from api.deps import current_project, db_session, require, service_errors
from api.schemas import ClassIdQuery, IdQuery, QueueStep
from db.models import Project, User
from services import images as image_service

router = APIRouter(tags=["queue"])


def queue_filters(
    status: str | None = Query(
        default=None, description="comma-separated; default: new,in_progress,rejected"
    ),
    split: str | None = None,
    class_id: ClassIdQuery = None,
    flagged: bool | None = None,
) -> dict[str, Any]:
    """The queue's filters, shared by next and previous."""
    return {"status": status, "split": split, "class_id": class_id, "flagged": flagged}


@router.get("/queue/next")
def queue_next(
    after_id: IdQuery = None,
    filters: dict[str, Any] = Depends(queue_filters),
    user: User = Depends(require("view")),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> QueueStep:
    """The photo after ``after_id`` in queue order (active-learning score, else import order)."""
    with service_errors():
        step = image_service.queue_step(session, project.id, "next", after_id=after_id, **filters)
    return QueueStep.model_validate(step)


@router.get("/queue/previous")
def queue_previous(
    after_id: IdQuery = None,
    filters: dict[str, Any] = Depends(queue_filters),
    user: User = Depends(require("view")),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> QueueStep:
    """The photo before ``after_id`` in queue order."""
    with service_errors():
        step = image_service.queue_step(
            session, project.id, "previous", after_id=after_id, **filters
        )
    return QueueStep.model_validate(step)
