"""The project's assistance back end: ``GET``/``PUT /api/assistance``.

Everyone who may use the assistance sees which back end is active and why; leads and admins
change it (``services.training.assist.set_assistance``), effective at the next request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from api.deps import ProjectDep, SessionDep, require, service_errors
from api.schemas import AssistanceIn, AssistanceOut
from db.models import User
from services.accounts.users import Permission
from services.training import assist as assist_service

router = APIRouter(tags=["assist"])


@router.get("/assistance")
def get_assistance(
    user: Annotated[User, Depends(require(Permission.assist))],
    project: ProjectDep,
    session: SessionDep,
) -> AssistanceOut:
    """The project's choice, the back end in use and why (an environment variable wins)."""
    with service_errors():
        return AssistanceOut(**assist_service.assistance_state(session, project))


@router.put("/assistance")
def put_assistance(
    body: AssistanceIn,
    user: Annotated[User, Depends(require(assist_service.ASSISTANCE_PERMISSION))],
    project: ProjectDep,
    session: SessionDep,
) -> AssistanceOut:
    """Choose the project's assistance: auto, sam:<weights name>, assist_net or grabcut."""
    with service_errors():
        state = assist_service.set_assistance(session, project, body.choice, user=user)
    return AssistanceOut(**state)
