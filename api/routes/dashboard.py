"""The lead dashboard's data: counts, throughput, model versions; starting a retraining round."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from api.deps import current_project, db_session, require, service_errors
from db.models import ModelVersion, Project, User
from services.throughput import annotator_throughput

router = APIRouter(tags=["dashboard"])


def model_version_rows(session: Session) -> list[dict[str, Any]]:
    rows = session.exec(
        select(ModelVersion).order_by(ModelVersion.stage, ModelVersion.version.desc())
    ).all()
    return [
        {
            "name": m.name,
            "stage": m.stage,
            "version": m.version,
            "promoted": m.promoted,
            "metrics": m.metrics or {},
            "created_at": m.created_at.isoformat(),
        }
        for m in rows
    ]


def dashboard_data(session: Session, project: Project) -> dict[str, Any]:
    from services.stats import project_stats

    return {
        "stats": project_stats(session, project),
        "throughput": annotator_throughput(session, project.id),
        "models": model_version_rows(session),
    }


@router.get("/stats")
def stats(
    user: User = Depends(require("dashboard")),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Counts per status, group and class; per-annotator throughput; model versions with metrics."""
    with service_errors():
        return dashboard_data(session, project)


class RetrainBody(BaseModel):
    """What a round trains; empty ``stages`` = the promoted stages, or YOLO parts at first."""

    stages: list[str] = Field(default_factory=list)
    config: Literal["tiny", "small", "base"] = "tiny"


def start_retraining(
    username: str, stages: list[str] | None = None, config: str = "tiny"
) -> dict[str, Any]:
    """Enqueue an active-learning round through ``jobs.rounds.start_round``."""
    try:
        from jobs.rounds import start_round
    except ImportError as e:
        raise HTTPException(
            503, detail=f"retraining jobs are not available in this build ({e})"
        ) from e
    with service_errors():
        job = start_round(created_by=username, stages=stages, config=config)
    job_id = getattr(job, "id", job)
    return {
        "job_id": job_id,
        "status": str(getattr(getattr(job, "status", None), "value", "queued")),
    }


@router.post("/retrain")
def retrain(
    body: RetrainBody | None = None, user: User = Depends(require("retrain"))
) -> dict[str, Any]:
    """Start a retraining round (train, evaluate, promote, pre-annotate, select); returns the
    job id. The body is optional: ``{"stages": ["yolo_seg", "assist_net"], "config": "tiny"}``."""
    body = body or RetrainBody()
    return start_retraining(user.username, body.stages, body.config)
