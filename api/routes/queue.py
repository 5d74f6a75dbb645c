"""The annotation queue: next / previous photo under filters, with a progress counter. The photo
returned is leased to the caller (``services.labelling.leases``): nobody else is handed it meanwhile."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from api.deps import KeptEdits, ProjectDep, SessionDep, require, service_errors
from api.schemas import ClassIdQuery, FraudCheckOut, IdPath, IdQuery, QueueStep
from db.models import Image, User
from services.accounts.users import Permission
from services.claims import fraud_screen
from services.labelling import leases as lease_service

router = APIRouter(tags=["queue"])


def queue_filters(
    status: str | None = Query(
        default=None, description="comma-separated; default: new,in_progress,rejected"
    ),
    split: str | None = None,
    class_id: ClassIdQuery = None,
    flagged: bool | None = None,
    inspection_id: IdQuery = None,
) -> dict[str, Any]:
    """The queue's filters, shared by next and previous (``inspection_id``: only the photos
    in that inspection's slots)."""
    return {
        "status": status,
        "split": split,
        "class_id": class_id,
        "flagged": flagged,
        "inspection_id": inspection_id,
    }


@router.get("/queue/{direction}")
def queue_step(
    direction: Literal["next", "previous"],
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
    kept: KeptEdits,
    after_id: IdQuery = None,
    lease: bool = Query(
        default=True, description="false: only look (prefetch); nothing is handed out"
    ),
    filters: dict[str, Any] = Depends(queue_filters),
) -> QueueStep:
    """The photo after (``next``) or before (``previous``) ``after_id`` in queue order
    (active-learning score, else import order) that nobody else holds. It is leased to the
    caller, whose previous photo is released, for the ``lease_ttl_seconds`` setting; the photos
    named in ``X-Kept-Edits`` (unsaved edits the workspace offers back) stay the caller's."""
    with service_errors():
        step = lease_service.queue_step(
            session,
            project.id,
            user,
            direction,
            after_id=after_id,
            lease=lease,
            kept=kept,
            **filters,
        )
        if filters.get("flagged") and step["image"] is not None:
            step["check_reasons"] = fraud_screen.check_reasons(
                session, session.get(Image, step["image"]["id"])
            )
    return QueueStep.model_validate(step)


@router.get("/images/{image_id}/fraud-check")
def fraud_check(
    image_id: IdPath,
    user: Annotated[User, Depends(require(Permission.fraud))],
    project: ProjectDep,
    session: SessionDep,
) -> FraudCheckOut:
    """Why the photo is in the fraud queue, and which polygons those reasons are about (the
    canvas marks them)."""
    with service_errors():
        check = fraud_screen.fraud_check(session, project, image_id)
    return FraudCheckOut.model_validate(check)
