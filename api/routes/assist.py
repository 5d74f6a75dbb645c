"""Click and box assistance: ``POST /api/images/{id}/assist`` → a preview polygon.

The assistant and its per-photo embedding cache live in ``services.training.assist``; prompts and
answers are in original image pixels.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field, field_validator

from api.deps import ProjectDep, SessionDep, require, service_errors
from api.schemas import AssistAnswer, AssistPrepared, IdPath
from db.models import User
from services.accounts.users import Permission
from services.training import assist as assist_service

router = APIRouter(tags=["assist"])


class AssistBody(BaseModel):
    points: list[list[float]] = Field(
        default_factory=list, description="[[x, y], ...] in image pixels"
    )
    labels: list[int] = Field(
        default_factory=list, description="1 positive, 0 negative, one per point"
    )
    box: list[float] | None = Field(default=None, description="[x0, y0, x1, y1] in image pixels")
    tolerance: float = Field(
        default=1.0, ge=0, le=50, description="polygon simplification in image pixels"
    )

    @field_validator("points")
    @classmethod
    def _points(cls, v: list[list[float]]) -> list[list[float]]:
        for p in v:
            if len(p) != 2 or not all(np.isfinite(p)):
                raise ValueError("each point must be [x, y] with finite numbers")
        return v

    @field_validator("box")
    @classmethod
    def _box(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (len(v) != 4 or not all(np.isfinite(v))):
            raise ValueError("box must be [x0, y0, x1, y1] with finite numbers")
        return v


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
