"""Click and box assistance: ``POST /api/images/{id}/assist`` → a preview polygon.

The assistant and its per-photo embedding cache live in ``services.training.assist``; prompts and
answers are in original image pixels.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.deps import ProjectDep, SessionDep, require, service_errors
from api.schemas import AssistAnswer, AssistPrepared, IdPath
from db.models import User
from services.accounts.users import Permission
from services.training import assist as assist_service

router = APIRouter(tags=["assist"])


class AssistBody(BaseModel):
    """A prompt as sent. ``services.training.assist.check_prompt`` checks it and names the
    field; here any JSON value passes: a refusal here would echo a NaN in a body JSON cannot
    carry, and typing two million points costs seconds before their count is checked."""

    points: list[Any] = Field(default_factory=list, description="[[x, y], ...] in image pixels")
    labels: list[Any] = Field(
        default_factory=list, description="1 positive, 0 negative, one per point"
    )
    box: list[Any] | None = Field(default=None, description="[x0, y0, x1, y1] in image pixels")
    tolerance: float = Field(
        default=1.0, description="polygon simplification in image pixels, 0 to 50"
    )


@router.post("/images/{image_id}/assist/prepare")
def prepare(
    image_id: IdPath,
    user: Annotated[User, Depends(require(Permission.assist))],
    project: ProjectDep,
    session: SessionDep,
) -> AssistPrepared:
    """Embed the image now, ahead of the first click (the workspace calls this on opening a photo)."""
    with service_errors():
        backend = assist_service.prepare(session, image_id, project=project)
    return AssistPrepared(image_id=image_id, backend=backend)


@router.post("/images/{image_id}/assist")
def assist(
    image_id: IdPath,
    body: AssistBody,
    user: Annotated[User, Depends(require(Permission.assist))],
    project: ProjectDep,
    session: SessionDep,
) -> AssistAnswer:
    """A polygon for positive/negative clicks and/or a box, in image pixels, simplified by ``tolerance``."""
    with service_errors():
        result = assist_service.assist(
            session,
            image_id,
            project=project,
            points=body.points,
            labels=body.labels,
            box=body.box,
            tolerance=body.tolerance,
        )
    return AssistAnswer(
        geometry=result.polygons, score=result.score, backend=result.backend, note=result.note
    )
