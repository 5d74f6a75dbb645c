"""The model registry over HTTP: versions with metrics, promote, roll back, the held-out
split, and the dashboard's PNG plots."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import BaseModel
from sqlmodel import Session

from api.deps import current_project, db_session, require, service_errors
from db.models import ModelVersion, Project, User
from services import registry

router = APIRouter(tags=["models"])


def version_dict(mv: ModelVersion) -> dict[str, Any]:
    pm = registry.primary_metric(mv.metrics or {}, mv.stage)
    snap = mv.train_snapshot or {}
    return {
        "id": mv.id,
        "name": mv.name,
        "stage": mv.stage,
        "version": mv.version,
        "promoted": mv.promoted,
        "metrics": mv.metrics or {},
        "primary_metric": {"name": pm[0], "value": pm[1]} if pm else None,
        "train_images": snap.get("count", len(snap.get("image_ids", []))),
        "parent_id": mv.parent_id,
        "sha256": mv.sha256,
        "created_at": mv.created_at.isoformat() if mv.created_at else None,
    }


class RollbackIn(BaseModel):
    to: str | None = None


class HoldoutIn(BaseModel):
    image_ids: list[int]


@router.get("/models")
def list_models(
    stage: str | None = None,
    user: User = Depends(require("view")),
    session: Session = Depends(db_session),
) -> list[dict[str, Any]]:
    return [version_dict(m) for m in registry.versions(session, stage)]


@router.get("/models/holdout")
def holdout(
    user: User = Depends(require("view")),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    ids = registry.holdout_ids(session, project)
    return {"split": registry.HOLDOUT_SPLIT, "image_ids": ids, "count": len(ids)}


@router.post("/models/holdout")
def grow_holdout(
    body: HoldoutIn,
    user: User = Depends(require("retrain")),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Add images to the held-out split (an explicit decision; they leave training and selection)."""
    with service_errors():
        ids = registry.grow_holdout(session, project, body.image_ids)
    return {"split": registry.HOLDOUT_SPLIT, "image_ids": ids, "count": len(ids)}


@router.get("/models/plots/metrics.png")
def metrics_plot(
    stage: str, user: User = Depends(require("view")), session: Session = Depends(db_session)
) -> Response:
    from active_learning.plots import metrics_across_versions

    vs = registry.versions(session, stage)
    cur = registry.current(session, stage)
    png = metrics_across_versions(
        [(m.name, m.metrics or {}) for m in vs],
        title=f"{stage}: metrics per version",
        promoted=cur.name if cur else None,
    )
    return Response(png, media_type="image/png")


@router.get("/models/plots/learning_curve.png")
def learning_curve_plot(
    user: User = Depends(require("view")), session: Session = Depends(db_session)
) -> Response:
    """Primary metric against training-set size, one line per stage, over all versions."""
    from active_learning.plots import learning_curve

    series: dict[str, tuple[list[float], list[float]]] = {}
    for mv in registry.versions(session):
        pm = registry.primary_metric(mv.metrics or {}, mv.stage)
        n = (mv.train_snapshot or {}).get("count")
        if pm is None or n is None:
            continue
        xs, ys = series.setdefault(f"{mv.stage} ({pm[0]})", ([], []))
        xs.append(float(n))
        ys.append(pm[1])
    return Response(learning_curve(series, metric="primary metric"), media_type="image/png")


@router.get("/models/{stage}/current")
def current_version(
    stage: str, user: User = Depends(require("view")), session: Session = Depends(db_session)
) -> dict[str, Any] | None:
    mv = registry.current(session, stage)
    return version_dict(mv) if mv else None


@router.post("/models/{ref}/promote")
def promote(
    ref: str, user: User = Depends(require("retrain")), session: Session = Depends(db_session)
) -> dict[str, Any]:
    """Promote a version (by name or id) regardless of metrics: the lead's override."""
    with service_errors():
        return version_dict(registry.promote(session, ref))


@router.post("/models/{stage}/rollback")
def rollback(
    stage: str,
    body: RollbackIn | None = None,
    user: User = Depends(require("retrain")),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Promote the current version's parent (or ``to``)."""
    with service_errors():
        return version_dict(registry.rollback(session, stage, to=body.to if body else None))
