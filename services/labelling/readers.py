"""What a client and the history read of a photo: the image by id (within its project), its
current annotations as dicts or ``Instances``, its annotations at an earlier revision, and the
summary and detail the API answers with."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlmodel import Session, select

from core.geometry import Shape
from core.instances import Instances
from db.models import (
    Annotation,
    AnnotationRevision,
    Image,
    ModelVersion,
    Prediction,
    PredictionState,
    Project,
)
from services.errors import NotFound


def get_image(session: Session, image_id: int, project: Project | None = None) -> Image:
    """The image ``image_id`` of ``project``: NotFound when it does not exist or belongs to
    another project (the same answer, so ids reveal nothing about other projects).

    Everything that answers a user passes ``project``; only code that took the id from its
    own project's rows (jobs, history, the save after its checks) leaves it out.
    """
    image = session.get(Image, image_id)
    if image is None or (project is not None and image.project_id != project.id):
        where = f" in project {project.name!r}" if project is not None else ""
        raise NotFound(f"image {image_id} does not exist{where}")
    return image


def annotation_to_dict(a: Annotation) -> dict[str, Any]:
    return {
        "id": a.id,
        "class_id": a.class_id,
        "group": a.group,
        "geometry": a.geometry,
        "attributes": a.attributes or {},
        "source": a.source.value if hasattr(a.source, "value") else a.source,
        "author": a.author,
        "prediction_id": a.prediction_id,
        "version": a.version,
        "updated_at": a.updated_at.isoformat() if a.updated_at else None,
        "review_state": a.review_state,
        "review_reason": a.review_reason,
        "reviewed_by": a.reviewed_by,
    }


def current_annotations(session: Session, image_id: int) -> list[Annotation]:
    stmt = (
        select(Annotation)
        .where(Annotation.image_id == image_id, Annotation.deleted == False)  # noqa: E712
        .order_by(Annotation.id)
    )
    return list(session.exec(stmt))


def annotation_dicts(session: Session, image_id: int) -> list[dict[str, Any]]:
    return [annotation_to_dict(a) for a in current_annotations(session, image_id)]


def dicts_to_instances(items: list[dict[str, Any]]) -> Instances:
    """Annotations as :func:`annotation_to_dict` writes them (and the history keeps them) ->
    ``Instances`` with ``data["annotation_id"]``, and ``data["source"]`` when the items say.
    The one converter from stored annotations to ``Instances`` (the exports' records too)."""
    if not items:
        return Instances.empty()
    data: dict[str, list[Any]] = {"annotation_id": [a.get("id") for a in items]}
    if any("source" in a for a in items):
        data["source"] = [a.get("source") for a in items]
    return Instances(
        shapes=[Shape.from_json(a["geometry"], trusted=True) for a in items],
        class_ids=np.array([a["class_id"] for a in items], dtype=np.int64),
        attributes=[dict(a.get("attributes") or {}) for a in items],
        data=data,
    )


def image_instances(session: Session, image_id: int) -> Instances:
    return dicts_to_instances(annotation_dicts(session, image_id))


def revision_instances(session: Session, image_id: int, revision: int) -> Instances:
    """The image's annotations as they were at ``annotation_version == revision`` (what a
    training snapshot recorded), read from the history when they have changed since."""
    img = get_image(session, image_id)
    if img.annotation_version == revision:
        return image_instances(session, image_id)
    row = session.exec(
        select(AnnotationRevision).where(
            AnnotationRevision.image_id == image_id, AnnotationRevision.revision == revision
        )
    ).first()
    if row is None:
        raise NotFound(f"image {image_id} has no annotation revision {revision} in its history")
    return dicts_to_instances(row.annotations)


def image_summary(image: Image) -> dict[str, Any]:
    """The image's row as the API lists it (no annotations)."""
    return {
        "id": image.id,
        "file_name": image.file_name,
        "width": image.width,
        "height": image.height,
        "split": image.split,
        "status": image.status.value,
        "annotation_version": image.annotation_version,
        "review_comment": image.review_comment,
        "rejected_for": image.rejected_for,
        "queue_score": image.queue_score,
        "import_order": image.import_order,
    }


def prediction_dicts(session: Session, image_id: int) -> list[dict[str, Any]]:
    """The image's predictions, best score first, each with the name of its model version;
    withdrawn ones (their version is no longer offered) stay out of the workspace."""
    rows = session.exec(
        select(Prediction, ModelVersion.name)
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(Prediction.image_id == image_id, Prediction.state != PredictionState.withdrawn)
        .order_by(Prediction.score.desc())
    ).all()
    return [
        {
            "id": p.id,
            "class_id": p.class_id,
            "group": p.group,
            "geometry": p.geometry,
            "score": p.score,
            "state": p.state.value,
            "model": name,
            "extra": p.extra or {},
        }
        for p, name in rows
    ]


def image_detail(
    session: Session, image: Image, annotations: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The summary plus ``version`` (to send back with a save), annotations and predictions
    (``annotations``: the image's ``annotation_dicts``, when the caller has them)."""
    return {
        **image_summary(image),
        "version": image.annotation_version,
        "annotations": annotation_dicts(session, image.id) if annotations is None else annotations,
        "predictions": prediction_dicts(session, image.id),
    }
