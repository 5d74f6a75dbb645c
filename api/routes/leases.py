"""Queue leases: who holds which photo (leads), a lead freeing one, a user giving theirs up."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.deps import Lead, ProjectDep, SessionDep, require, service_errors
from api.schemas import IdPath
from db.models import User
from services.accounts.users import Permission
from services.labelling import leases as lease_service

router = APIRouter(tags=["leases"])


class LeaseOut(BaseModel):
    image_id: int
    file_name: str
    status: str
    user: str = Field(description="who holds the photo")
    since: float = Field(description="Unix seconds: when it was handed out")
    until: float = Field(description="Unix seconds: when it expires unless renewed by a save")
    held_seconds: float
    seconds_left: float


class Released(BaseModel):
    released: int = Field(description="how many leases ended")


@router.get("/leases")
def list_leases(
    user: Lead,
    project: ProjectDep,
    session: SessionDep,
) -> list[LeaseOut]:
    """The project's live leases, oldest first (leads and admins)."""
    return [LeaseOut.model_validate(x) for x in lease_service.list_leases(session, project.id)]


@router.delete("/leases/{image_id}")
def release_lease(
    image_id: IdPath,
    user: Lead,
    project: ProjectDep,
    session: SessionDep,
) -> Released:
    """End the lease on a photo, so that the queue hands it out again (leads and admins)."""
    with service_errors():
        return Released(released=int(lease_service.release_image(session, project.id, image_id)))


@router.post("/leases/release")
def release_mine(
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
) -> Released:
    """Give up the caller's own leases in the project (the workspace closing)."""
    return Released(released=lease_service.release_user(session, user.id, project_id=project.id))
