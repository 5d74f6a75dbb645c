"""The lead dashboard's data: counts, throughput, model versions; starting a retraining round."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.deps import ProjectDep, SessionDep, require, service_errors
from api.schemas import RetrainAnswer, Stats
from db.models import User
from services import dashboard as dashboard_service

router = APIRouter(tags=["dashboard"])


@router.get("/stats")
def stats(
    user: Annotated[User, Depends(require("dashboard"))],
    project: ProjectDep,
    session: SessionDep,
) -> Stats:
    """Counts per status, group and class; per-annotator throughput; model versions with metrics."""
    with service_errors():
        return Stats.model_validate(dashboard_service.dashboard_data(session, project))


class RetrainBody(BaseModel):
    """What a round trains; empty ``stages`` = the promoted stages, or YOLO parts at first."""

    stages: list[str] = Field(default_factory=list)
    config: Literal["tiny", "small", "base"] = "tiny"
    from_scratch: list[str] = Field(
        default_factory=list,
        description="stages that start over instead of fine-tuning their promoted version",
    )
    weights: dict[str, str] = Field(
        default_factory=dict,
        description="stage -> a weights name (`panelbeater weights list`) or local path it "
        "starts from, instead of its promoted version",
    )
    options: dict[str, list[str]] = Field(
        default_factory=dict,
        description='stage -> config overrides, e.g. {"yolo_seg": ["imgsz=320", "lr0=0.005"]}',
    )


@router.post("/retrain")
def retrain(
    user: Annotated[User, Depends(require("retrain"))],
    project: ProjectDep,
    session: SessionDep,
    body: RetrainBody | None = None,
) -> RetrainAnswer:
    """Start a retraining round (train, evaluate, promote, pre-annotate, select); returns the
    job id. The body is optional: ``{"stages": ["yolo_seg", "assist_net"], "config": "tiny"}``."""
    body = body or RetrainBody()
    with service_errors():
        job = dashboard_service.start_retraining(
            session,
            project=project,
            username=user.username,
            stages=body.stages,
            config=body.config,
            from_scratch=body.from_scratch,
            weights=body.weights,
            options=body.options,
        )
    return RetrainAnswer(job_id=job.id, status=job.status)
