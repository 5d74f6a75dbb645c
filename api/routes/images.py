"""Images: list, one image with its annotations and predictions, the file, saves, status, assist."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile, status
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from api.deps import current_project, db_session, require, service_errors
from api.files import image_file_response
from db.models import Image, ImageStatus, ModelVersion, Prediction, PredictionState, Project, User
from services import annotations as ann_service
from services import images as image_service
from services import users as user_service

router = APIRouter(tags=["images"])


class AnnotationsBody(BaseModel):
    version: int = Field(description="the annotation_version you loaded; a stale one gets 409")
    annotations: list[dict[str, Any]] = Field(
        description="the whole set: {id?, class_id|class_name, geometry, attributes?, source?, prediction_id?}"
    )


class StatusBody(BaseModel):
    status: ImageStatus
    comment: str | None = None


def image_summary(image: Image) -> dict[str, Any]:
    return {
        "id": image.id,
        "file_name": image.file_name,
        "width": image.width,
        "height": image.height,
        "split": image.split,
        "status": image.status.value,
        "annotation_version": image.annotation_version,
        "review_comment": image.review_comment,
        "queue_score": image.queue_score,
        "import_order": image.import_order,
    }


def prediction_dicts(session: Session, image_id: int) -> list[dict[str, Any]]:
    rows = session.exec(
        select(Prediction, ModelVersion.name)
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(Prediction.image_id == image_id)
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


def image_detail(session: Session, image: Image) -> dict[str, Any]:
    return {
        **image_summary(image),
        "version": image.annotation_version,
        "annotations": ann_service.annotation_dicts(session, image.id),
        "predictions": prediction_dicts(session, image.id),
    }


@router.get("/images")
def list_images(
    status_: ImageStatus | None = Query(default=None, alias="status"),
    split: str | None = None,
    class_id: int | None = None,
    flagged: bool | None = None,
    limit: int = Query(default=50, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
    user: User = Depends(require("view")),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """A page of images in queue order, with the total matching the filters."""
    with service_errors():
        items, total = image_service.list_images(
            session,
            project.id,
            status=status_.value if status_ else None,
            split=split,
            class_id=class_id,
            flagged=flagged,
            limit=limit,
            offset=offset,
        )
    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "items": [image_summary(i) for i in items],
    }


@router.post("/images/upload", status_code=status.HTTP_201_CREATED)
async def upload_images(
    files: list[UploadFile] = File(description="image files (jpg, png, webp, bmp, tiff)"),
    user: User = Depends(require("import")),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Add photos to the project; each is stored by content hash, so re-uploads are no-ops.
    A corrupt file is reported by name and the others are still added."""
    from services.imports import import_uploads

    payload = [(f.filename or "upload", await f.read()) for f in files]
    with service_errors():
        report = import_uploads(session, project, payload)
    return report.as_dict()


@router.get("/images/{image_id}")
def get_image(
    image_id: int, user: User = Depends(require("view")), session: Session = Depends(db_session)
) -> dict[str, Any]:
    """Metadata, the current annotations with the image's ``version``, and the predictions."""
    with service_errors():
        image = ann_service.get_image(session, image_id)
        return image_detail(session, image)


@router.get("/images/{image_id}/file", responses={200: {"content": {"image/jpeg": {}}}})
def get_image_file(
    image_id: int,
    request: Request,
    max_side: int | None = Query(default=None, ge=16, le=16384),
    user: User = Depends(require("view")),
    session: Session = Depends(db_session),
) -> Response:
    """The image's bytes (JPEG when downscaled to ``max_side``), with an ETag and caching."""
    with service_errors():
        image = ann_service.get_image(session, image_id)
    return image_file_response(image, max_side, request.headers.get("if-none-match"))


def _check_fake_edits(
    session: Session, image_id: int, incoming: list[dict[str, Any]], user: User
) -> None:
    """Only fraud analysts (and leads/admins) may set, change or clear the fake-damage flag and note.

    Others may still delete a whole annotation; they just cannot rewrite the fraud verdict on it.
    """
    if user_service.can(user, "fraud"):
        return
    old = {
        a["id"]: a.get("attributes") or {} for a in ann_service.annotation_dicts(session, image_id)
    }

    def verdict(attrs: object) -> tuple[bool, str]:
        attrs = attrs if isinstance(attrs, dict) else {}
        return bool(attrs.get("fake")), str(attrs.get("fake_note") or "")

    for i, a in enumerate(incoming):
        if not isinstance(a, dict):
            continue
        before = verdict(old.get(a.get("id"), {}))
        if verdict(a.get("attributes")) != before:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"annotation {i + 1}: only fraud analysts may set or clear the fake-damage flag and note",
            )


@router.put("/images/{image_id}/annotations")
def put_annotations(
    image_id: int,
    body: AnnotationsBody,
    user: User = Depends(require("annotate")),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Replace the image's annotation set. 409 with both versions when ``version`` is stale;
    422 with a sentence when an annotation is malformed."""
    for i, a in enumerate(body.annotations):
        if not isinstance(a.get("geometry"), list):
            raise HTTPException(
                422, detail=f"annotation {i + 1}: 'geometry' must be a list of polygons"
            )
        if _has_nonfinite(a.get("geometry")):
            raise HTTPException(422, detail=f"annotation {i + 1}: a coordinate is NaN or infinite")
    _check_fake_edits(session, image_id, body.annotations, user)
    with service_errors():
        new_version = ann_service.save_annotations(
            session,
            image_id=image_id,
            expected_version=body.version,
            annotations=body.annotations,
            author=user.username,
        )
        # Predictions that became annotations are no longer pending; one whose annotation is gone
        # again (an undo, or the annotator deleted it) is pending again rather than lost.
        used = {
            int(a["prediction_id"]) for a in body.annotations if a.get("prediction_id") is not None
        }
        for pred in session.exec(select(Prediction).where(Prediction.image_id == image_id)).all():
            if pred.id in used and pred.state == PredictionState.pending:
                ann_service.set_prediction_state(session, prediction_id=pred.id, state="accepted")
            elif pred.id not in used and pred.state == PredictionState.accepted:
                ann_service.set_prediction_state(session, prediction_id=pred.id, state="pending")
        image = ann_service.get_image(session, image_id)
        session.refresh(image)
        return {"version": new_version, **image_detail(session, image)}


def _has_nonfinite(value: Any) -> bool:
    """True when a NaN or infinity hides anywhere in ``value`` (json's C encoder finds it fast)."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return True
    return False


#: Who may move an image to each status.
_STATUS_PERMISSION = {
    ImageStatus.new: "review",
    ImageStatus.in_progress: "annotate",
    ImageStatus.labelled: "annotate",
    ImageStatus.reviewed: "review",
    ImageStatus.rejected: "review",
}


@router.post("/images/{image_id}/status")
def post_status(
    image_id: int,
    body: StatusBody,
    user: User = Depends(require("view")),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Move the image through new → in_progress → labelled → reviewed | rejected (with a comment)."""
    needed = _STATUS_PERMISSION[body.status]
    if not user_service.can(user, needed):
        raise HTTPException(
            403, detail=f"Your role ({user.role.value}) may not set status {body.status.value}."
        )
    with service_errors():
        image = ann_service.set_status(
            session,
            image_id=image_id,
            status=body.status,
            author=user.username,
            comment=body.comment,
        )
        return image_summary(image)


class PredictionStateBody(BaseModel):
    state: PredictionState


@router.post("/predictions/{prediction_id}/state")
def post_prediction_state(
    prediction_id: int,
    body: PredictionStateBody,
    user: User = Depends(require("annotate")),
    session: Session = Depends(db_session),
) -> dict[str, Any]:
    """Mark a prediction accepted, rejected or edited (accepting also needs the annotation saved)."""
    with service_errors():
        pred = ann_service.set_prediction_state(
            session, prediction_id=prediction_id, state=body.state
        )
        return {"id": pred.id, "state": pred.state.value}
