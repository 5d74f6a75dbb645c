"""Review at a glance (``services.review.decisions``): a verdict on one instance, the rejections waiting
for the caller, per-annotator rejection rates, and the side-less imports a lead resolves."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import Lead, ProjectDep, SessionDep, require, service_errors
from api.schemas import (
    AnnotationOut,
    IdPath,
    InstanceReviewIn,
    InstanceReviewOut,
    RejectionRate,
    RejectionsWaiting,
    SideResolveIn,
    SideUnknownOut,
)
from db.models import User
from services.accounts.users import Permission
from services.review import decisions as review_service

router = APIRouter(tags=["review"])


@router.post("/images/{image_id}/annotations/{annotation_id}/review")
def review_instance(
    image_id: IdPath,
    annotation_id: IdPath,
    body: InstanceReviewIn,
    user: Annotated[User, Depends(require(Permission.review))],
    project: ProjectDep,
    session: SessionDep,
) -> InstanceReviewOut:
    """Accept or reject one instance (a reason is required to reject). Rejecting an instance
    rejects the photo too, back to its author, with every rejected instance's reason."""
    with service_errors():
        out = review_service.review_instance_as(
            session,
            user,
            project=project,
            image_id=image_id,
            annotation_id=annotation_id,
            decision=body.decision,
            reason=body.reason,
        )
    return InstanceReviewOut.model_validate(out)


@router.get("/review/waiting")
def rejections_waiting(
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
) -> RejectionsWaiting:
    """The rejected photos waiting for the caller to fix them, oldest rejection first."""
    with service_errors():
        return RejectionsWaiting.model_validate(review_service.waiting_for(session, user, project))


@router.get("/review/rates")
def rejection_rates(user: Lead, project: ProjectDep, session: SessionDep) -> list[RejectionRate]:
    """Per annotator: verdicts on their photos and instances, and the share rejected."""
    with service_errors():
        rows = review_service.rejection_rates(session, project)
    return [RejectionRate.model_validate(r) for r in rows]


@router.get("/review/side-unknown")
def side_unknown(user: Lead, project: ProjectDep, session: SessionDep) -> list[SideUnknownOut]:
    """Instances imported from a side-less label (``side: unknown``), with their photos."""
    with service_errors():
        rows = review_service.side_unknown(session, project)
    return [SideUnknownOut.model_validate(r) for r in rows]


@router.post("/review/side-unknown/{annotation_id}")
def resolve_side(
    annotation_id: IdPath,
    body: SideResolveIn,
    user: Lead,
    project: ProjectDep,
    session: SessionDep,
) -> AnnotationOut:
    """A lead's answer: the instance's class becomes ``class_name`` (its side or the other)."""
    with service_errors():
        out = review_service.resolve_side_as(
            session, user, project=project, annotation_id=annotation_id, class_name=body.class_name
        )
    return AnnotationOut.model_validate(out)
