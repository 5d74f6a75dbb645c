"""The lead dashboard's data: counts, throughput, model versions; starting a retraining round."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.deps import Lead, ProjectDep, SessionDep, require, service_errors
from api.schemas import RetrainAnswer, Stats
from core.presets import Preset
from db.models import User
from jobs.service import start_round
from services.accounts.users import Permission
from services.dashboard import plots as plot_service
from services.dashboard import summary as dashboard_service
from services.errors import NotFound
from services.training.lifecycle import plan_round

router = APIRouter(tags=["dashboard"])


@router.get("/stats")
def stats(
    user: Lead,
    project: ProjectDep,
    session: SessionDep,
) -> Stats:
    """Counts per status, group and class; per-annotator throughput; model versions with metrics."""
    with service_errors():
        return Stats.model_validate(dashboard_service.dashboard_data(session, project))


class RetrainBody(BaseModel):
    """What a round trains; empty ``stages`` = the promoted stages, or YOLO parts at first."""

    stages: list[str] = Field(default_factory=list)
    config: Preset = Preset.tiny
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
    pseudo_labels: bool | None = Field(
        default=None,
        description="also train on the promoted versions' confident predictions of unlabelled "
        "photos, never stored as annotations (null: the pseudo_labels setting)",
    )


@router.post("/retrain")
def retrain(
    user: Annotated[User, Depends(require(Permission.retrain))],
    project: ProjectDep,
    session: SessionDep,
    body: RetrainBody | None = None,
) -> RetrainAnswer:
    """Start a retraining round (train, evaluate, promote, pre-annotate, select); returns the
    job id. The body is optional: ``{"stages": ["yolo_seg", "assist_net"], "config": "tiny"}``."""
    body = body or RetrainBody()
    with service_errors():
        job = start_round(
            session,
            project=project,
            created_by=user.username,
            stages=body.stages,
            config=body.config.value,
            from_scratch=body.from_scratch,
            weights=body.weights,
            options=body.options,
            pseudo_labels=body.pseudo_labels,
        )
        plan = plan_round(
            session,
            stages=(job.params or {}).get("stages"),
            config=body.config.value,
            from_scratch=body.from_scratch,
            weights=body.weights,
        )
    return RetrainAnswer(job_id=job.id, status=job.status, plan=plan)


PlotName = Literal["pace", "classes", "versions", "learning_curve", "effort"]


def _plot_table(session, project, name: str) -> dict:
    if name not in plot_service.PLOTS:
        raise NotFound(f"no plot {name!r}; choose one of {', '.join(plot_service.PLOTS)}")
    return plot_service.PLOTS[name][0](session, project)


@router.get("/plots/{name}.png", responses={200: {"content": {"image/png": {}}}})
def plot_png(
    name: PlotName,
    user: Lead,
    project: ProjectDep,
    session: SessionDep,
) -> Response:
    """A dashboard plot: ``pace`` (labelled photos per day and the projection), ``classes``
    (instances per class), ``versions`` (held-out metric per version), ``learning_curve``,
    ``effort`` (actions per photo per round against the learning curve)."""
    with service_errors():
        table = _plot_table(session, project, name)
    return Response(plot_service.render(name, table), media_type="image/png")


@router.get("/plots/{name}.csv", responses={200: {"content": {"text/csv": {}}}})
def plot_csv(
    name: PlotName,
    user: Lead,
    project: ProjectDep,
    session: SessionDep,
) -> Response:
    """The numbers behind a dashboard plot, as CSV with a header row."""
    with service_errors():
        table = _plot_table(session, project, name)
    return Response(
        plot_service.to_csv(table),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
