"""A model's predictions on a photo as the annotator uses them: pending, accepted when an
annotation was made from one, rejected; a save keeps these states in step with its annotations."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from db.models import Image, Prediction, PredictionState, Project
from services.errors import Invalid, NotFound
from services.labelling.validation import MAX_ID


def set_prediction_state(
    session: Session,
    *,
    prediction_id: int,
    state: PredictionState | str,
    project: Project | None = None,
) -> Prediction:
    """Mark a prediction; NotFound when it does not exist or its image is of another
    ``project`` (see :func:`get_image`)."""
    pred = session.get(Prediction, prediction_id)
    if pred is not None and project is not None:
        image = session.get(Image, pred.image_id)
        pred = pred if image is not None and image.project_id == project.id else None
    if pred is None:
        where = f" in project {project.name!r}" if project is not None else ""
        raise NotFound(f"prediction {prediction_id} does not exist{where}")
    settable = [s.value for s in PredictionState if s != PredictionState.withdrawn]
    if state not in settable:
        raise Invalid(f"state {state!r} must be one of {', '.join(settable)}")
    if pred.state == PredictionState.withdrawn:
        raise Invalid(
            f"prediction {prediction_id} was withdrawn: its model version was rolled back, "
            "replaced or found below its bar to pre-annotate, so it is kept as history only"
        )
    pred.state = PredictionState(state)
    session.add(pred)
    session.flush()
    return pred


def sync_prediction_states(
    session: Session, image_id: int, annotations: list[dict[str, Any]]
) -> None:
    """After a save: predictions that became annotations are no longer pending; one whose
    annotation is gone again (an undo, or the annotator deleted it) is pending again rather
    than lost."""
    used = {
        int(a["prediction_id"])
        for a in annotations
        if isinstance(a, dict) and a.get("prediction_id") is not None
    }
    for pred in session.exec(select(Prediction).where(Prediction.image_id == image_id)).all():
        if pred.id in used and pred.state == PredictionState.pending:
            set_prediction_state(session, prediction_id=pred.id, state=PredictionState.accepted)
        elif pred.id not in used and pred.state == PredictionState.accepted:
            set_prediction_state(session, prediction_id=pred.id, state=PredictionState.pending)


def image_prediction_ids(
    session: Session, image_id: int, annotations: list[dict[str, Any]]
) -> set[int]:
    """Of the prediction ids the request names, those that are predictions of the image
    (one query for the whole save)."""
    wanted = {
        a["prediction_id"]
        for a in annotations
        if isinstance(a, dict)
        and isinstance(a.get("prediction_id"), int)
        and not isinstance(a.get("prediction_id"), bool)
        and 1 <= a["prediction_id"] <= MAX_ID
    }
    if not wanted:
        return set()
    return set(
        session.exec(
            select(Prediction.id).where(Prediction.id.in_(wanted), Prediction.image_id == image_id)
        ).all()
    )
