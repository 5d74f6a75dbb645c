"""Images: list, one image with its annotations and predictions, the file, saves, status."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile, status
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from api.deps import (
    KeptEdits,
    ProjectDep,
    SessionDep,
    current_project,
    db_session,
    require,
    service_errors,
)
from api.files import image_file_response
from api.schemas import (
    MAX_ID,
    ClassIdQuery,
    IdPath,
    ImageDetail,
    ImagePage,
    ImageSummary,
    ImportReportOut,
    PredictionStateOut,
)
from db.models import ImageStatus, PredictionState, Project, User
from services.accounts.users import Permission
from services.data_io.imports import import_uploads
from services.labelling import images as image_service
from services.labelling import predictions, readers
from services.review import workflow

router = APIRouter(tags=["images"])


class AnnotationsBody(BaseModel):
    version: int = Field(
        strict=True,
        ge=0,
        le=2**31 - 1,
        description="the annotation_version you loaded; a stale one gets 409",
    )
    annotations: list[dict[str, Any]] = Field(
        description="the whole set: {id?, client_id?, class_id|class_name, geometry, attributes?, "
        "source?, prediction_id?}"
    )
    keep_going: bool = Field(
        default=False,
        description="save the valid instances and list the others in `rejected` (200), rather "
        "than refuse the whole set (422); a refused instance that was saved before keeps its "
        "stored version",
    )


class RejectedOut(BaseModel):
    index: int = Field(description="position in the request's list, from 0")
    client_id: int | str | None = Field(description="the request's client_id, echoed")
    id: int | None = Field(description="the stored annotation kept unchanged, if any")
    reason: str


class CreatedOut(BaseModel):
    index: int = Field(description="position in the request's list, from 0")
    client_id: int | str | None
    id: int


class SaveResult(ImageDetail):
    rejected: list[RejectedOut] = Field(
        default_factory=list, description="instances refused (keep_going only), with why"
    )
    created: list[CreatedOut] = Field(
        default_factory=list, description="the ids given to the new instances"
    )


class StatusBody(BaseModel):
    status: ImageStatus
    comment: str | None = None


class PredictionStateBody(BaseModel):
    state: PredictionState


@router.get("/images")
def list_images(
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
    status_: ImageStatus | None = Query(default=None, alias="status"),
    split: str | None = None,
    class_id: ClassIdQuery = None,
    flagged: bool | None = None,
    limit: int = Query(default=50, ge=1, le=1000),
    offset: int = Query(default=0, ge=0, le=MAX_ID),
) -> ImagePage:
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
    return ImagePage(
        total=total,
        limit=limit,
        offset=offset,
        items=[ImageSummary.model_validate(readers.image_summary(i)) for i in items],
    )


@router.post("/images/upload", status_code=status.HTTP_201_CREATED)
async def upload_images(
    files: list[UploadFile] = File(description="image files (jpg, png, webp, bmp, tiff)"),
    status_: str | None = Form(
        default=None,
        alias="status",
        description="new, in_progress, labelled or reviewed for every photo (default new); "
        "a photo already here only moves forward, and a rejected one stays rejected",
    ),
    user: User = Depends(require(Permission.import_)),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> ImportReportOut:
    """Add photos to the project; each is stored by content hash, so re-uploads are no-ops.
    A corrupt file is reported by name and the others are still added; a wrong ``status``
    gets 422."""
    payload = [(f.filename or "upload", await f.read()) for f in files]
    with service_errors():
        report = import_uploads(session, project, payload, status=status_)
    return ImportReportOut.model_validate(report.as_dict())


@router.get("/images/{image_id}")
def get_image(
    image_id: IdPath,
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
    kept: KeptEdits,
) -> ImageDetail:
    """Metadata, the current annotations with the image's ``version``, and the predictions.
    Leased to the caller when nobody holds it; ``read_only`` with ``held_by`` when someone does."""
    with service_errors():
        detail = workflow.open_photo(session, user, project=project, image_id=image_id, kept=kept)
    return ImageDetail.model_validate(detail)


@router.get("/images/{image_id}/file", responses={200: {"content": {"image/jpeg": {}}}})
def get_image_file(
    image_id: IdPath,
    request: Request,
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
    max_side: int | None = Query(default=None, ge=16, le=16384),
) -> Response:
    """The image's bytes (JPEG when downscaled to ``max_side``), with an ETag and caching."""
    with service_errors():
        image = readers.get_image(session, image_id, project)
    return image_file_response(image, max_side, request.headers.get("if-none-match"))


@router.put("/images/{image_id}/annotations")
def put_annotations(
    image_id: IdPath,
    body: AnnotationsBody,
    user: Annotated[User, Depends(require(Permission.annotate))],
    project: ProjectDep,
    session: SessionDep,
    kept: KeptEdits,
) -> SaveResult:
    """Replace the image's annotation set. 409 with both versions when ``version`` is stale;
    422 with a sentence when an annotation is malformed (with ``keep_going``: 200, and the
    refused instances in ``rejected``); 403 when a non-fraud role changes a fake-damage flag
    or note. An outline that crosses itself is split where it crosses."""
    with service_errors():
        change = workflow.PhotoSave(image_id, body.version, body.annotations, body.keep_going)
        detail = workflow.save(session, user, project, change, kept)
    return SaveResult.model_validate(detail)


@router.post("/images/{image_id}/status")
def post_status(
    image_id: IdPath,
    body: StatusBody,
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
) -> ImageSummary:
    """Move the image through new → in_progress → labelled → reviewed | rejected (with a
    comment); 403 when the role may not set that status."""
    with service_errors():
        change = workflow.StatusChange(image_id, body.status, body.comment)
        summary = workflow.set_status(session, user, project, change)
    return ImageSummary.model_validate(summary)


@router.post("/predictions/{prediction_id}/state")
def post_prediction_state(
    prediction_id: IdPath,
    body: PredictionStateBody,
    user: Annotated[User, Depends(require(Permission.annotate))],
    project: ProjectDep,
    session: SessionDep,
) -> PredictionStateOut:
    """Mark a prediction accepted, rejected or edited (accepting also needs the annotation saved)."""
    with service_errors():
        pred = predictions.set_prediction_state(
            session, prediction_id=prediction_id, state=body.state, project=project
        )
        return PredictionStateOut(id=pred.id, state=pred.state)
