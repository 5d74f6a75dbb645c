"""The model registry over HTTP: versions with metrics, promote, roll back, the held-out
split, and the dashboard's PNG plots."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlmodel import Session

from api.deps import ProjectDep, SessionDep, db_session, require, service_errors
from api.schemas import Holdout, IdPath, VersionOut
from db.models import ModelVersion, User
from services.accounts.users import Permission
from services.dashboard import summary as dashboard_service
from services.training import registry

router = APIRouter(tags=["models"])


def _out(mv: ModelVersion) -> VersionOut:
    return VersionOut.model_validate(dashboard_service.version_dict(mv))


class RollbackIn(BaseModel):
    to: str | None = None


class HoldoutIn(BaseModel):
    image_ids: list[int]


class ModelState(BaseModel):
    """Why promoted versions show nothing; empty when every one shows predictions."""

    empty_results: list[str]


class PhotoPrediction(BaseModel):
    version: str
    image_id: int
    threshold: float
    predictions: int


@router.get("/models")
def list_models(
    user: Annotated[User, Depends(require(Permission.view))],
    session: SessionDep,
    stage: str | None = None,
) -> list[VersionOut]:
    return [_out(m) for m in registry.versions(session, stage)]


@router.get("/models/holdout")
def holdout(
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
) -> Holdout:
    ids = registry.holdout_ids(session, project)
    return Holdout(split=registry.HOLDOUT_SPLIT, image_ids=ids, count=len(ids))


@router.post("/models/holdout")
def grow_holdout(
    body: HoldoutIn,
    user: Annotated[User, Depends(require(Permission.retrain))],
    project: ProjectDep,
    session: SessionDep,
) -> Holdout:
    """Add images to the held-out split (an explicit decision; they leave training and selection)."""
    with service_errors():
        ids = registry.grow_holdout(session, project, body.image_ids)
    return Holdout(split=registry.HOLDOUT_SPLIT, image_ids=ids, count=len(ids))


@router.get("/models/state")
def model_state(
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
) -> ModelState:
    """Promoted versions that show no predictions on the project's photos, and why: how
    many photos they ran on, their threshold and their held-out metric."""
    return ModelState(empty_results=dashboard_service.model_state(session, project))


@router.post("/models/{stage}/predict/{image_id}")
def predict_photo(
    stage: str,
    image_id: IdPath,
    threshold: float,
    user: Annotated[User, Depends(require(Permission.retrain))],
    project: ProjectDep,
    session: SessionDep,
) -> PhotoPrediction:
    """Run ``stage``'s promoted version on one photo at a lower score ``threshold``; its
    pending predictions of the photo are replaced (a lead looking at an empty result)."""
    from services.training.model_runs import predict_photo as run

    with service_errors():
        return PhotoPrediction(**run(session, project, stage, image_id, threshold=threshold))


@router.get("/models/plots/metrics.png", responses={200: {"content": {"image/png": {}}}})
def metrics_plot(
    stage: str,
    user: User = Depends(require(Permission.view)),
    session: Session = Depends(db_session),
) -> Response:
    """Each metric of ``stage`` across its versions, the promoted one marked."""
    return Response(dashboard_service.metrics_plot_png(session, stage), media_type="image/png")


@router.get("/models/plots/learning_curve.png", responses={200: {"content": {"image/png": {}}}})
def learning_curve_plot(
    user: User = Depends(require(Permission.view)), session: Session = Depends(db_session)
) -> Response:
    """Primary metric against training-set size, one line per stage, over all versions."""
    return Response(dashboard_service.learning_curve_png(session), media_type="image/png")


@router.get("/models/{stage}/current")
def current_version(
    stage: str,
    user: User = Depends(require(Permission.view)),
    session: Session = Depends(db_session),
) -> VersionOut | None:
    """The promoted version of ``stage``; null when none is promoted."""
    mv = registry.current(session, stage)
    return _out(mv) if mv else None


@router.post("/models/{ref}/promote")
def promote(
    ref: str,
    user: User = Depends(require(Permission.retrain)),
    session: Session = Depends(db_session),
    confirm_below_bar: bool = Query(
        False,
        description="promote a version below its stage's bar to pre-annotate; without it such "
        "a promotion is refused with a sentence saying what annotators would see",
    ),
) -> VersionOut:
    """Promote a version (by name or id) whatever the promotion rule says: the lead's
    override."""
    with service_errors():
        return _out(registry.promote(session, ref, confirm_below_bar=confirm_below_bar))


@router.post("/models/{stage}/rollback")
def rollback(
    stage: str,
    user: Annotated[User, Depends(require(Permission.retrain))],
    session: SessionDep,
    body: RollbackIn | None = None,
) -> VersionOut:
    """Promote the current version's parent (or ``to``)."""
    with service_errors():
        return _out(registry.rollback(session, stage, to=body.to if body else None))
