"""The annotation queue: next / previous photo under filters, with a progress counter."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from api.deps import ProjectDep, SessionDep, require, service_errors
from api.schemas import ClassIdQuery, IdQuery, QueueStep
from db.models import User
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


@router.get("/queue/{direction}")
def queue_step(
    direction: Literal["next", "previous"],
    user: Annotated[User, Depends(require("view"))],
    project: ProjectDep,
    session: SessionDep,
    after_id: IdQuery = None,
    filters: dict[str, Any] = Depends(queue_filters),
) -> QueueStep:
    """The photo after (``next``) or before (``previous``) ``after_id`` in queue order:
    active-learning score, else import order."""
    with service_errors():
        step = image_service.queue_step(
            session, project.id, direction, after_id=after_id, **filters
        )
    return QueueStep.model_validate(step)
