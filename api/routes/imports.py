"""Label-file imports: ``POST /api/imports``, the CLI's ``panelbeater import ...`` over HTTP."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, UploadFile, status
from pydantic import Field
from sqlmodel import Session

from api.deps import current_project, db_session, require, service_errors
from api.schemas import ImportReportOut
from db.models import Project, User
from services.accounts.users import Permission
from services.data_io.label_uploads import LABEL_FORMATS, import_label_upload

router = APIRouter(tags=["imports"])


class LabelImportOut(ImportReportOut):
    statuses: dict[str, int] = Field(
        default_factory=dict,
        description="labels: the photos the file names, counted by their status after the import",
    )
    model_version: str | None = Field(
        default=None,
        description="as_predictions: the external model version the predictions belong to",
    )


@router.post("/imports", status_code=status.HTTP_201_CREATED)
async def import_labels(
    format_: str = Form(
        alias="format", description=f"the label file's format: {', '.join(LABEL_FORMATS)}"
    ),
    label_file: UploadFile = File(
        description="COCO, VIA or Label Studio JSON; for YOLO a .zip of the dataset "
        "(data.yaml with labels/ and optionally images/), or with as_predictions a .zip of "
        "prediction label files"
    ),
    images: list[UploadFile] | None = File(
        default=None,
        description="the photos the label file names, matched by file name; photos already "
        "in the project need not be sent again",
    ),
    status_: str | None = Form(
        default=None,
        alias="status",
        description="new, in_progress, labelled or reviewed for every photo (default: labelled "
        "for a photo that arrives with labels, new for one without); photos only move forward",
    ),
    as_predictions: bool = Form(
        default=False, description="import the shapes as pending predictions, not as labels"
    ),
    model_name: str | None = Form(
        default=None, description="with as_predictions: the external model version's name"
    ),
    label_map: str | None = Form(
        default=None, description='JSON object {"source label": "taxonomy name"}'
    ),
    duplicates: str | None = Form(
        default=None,
        description="labels: skip (default) leaves out the labels of a photo whose bytes an "
        "earlier photo of the file has, unless they match its labels; merge adds them to it",
    ),
    user: User = Depends(require(Permission.import_)),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> LabelImportOut:
    """Import a label file (and the photos it names) as ``panelbeater import`` does: an
    unknown label, a malformed file or a wrong field gets 422 naming it and writes nothing;
    a bad photo or entry is reported by name in ``messages`` and the rest is imported."""
    label = (label_file.filename or "labels", await label_file.read())
    photos = [(f.filename or "upload", await f.read()) for f in images or []]
    with service_errors():
        report = import_label_upload(
            session,
            project,
            fmt=format_,
            label_file=label,
            images=photos,
            status=status_,
            as_predictions=as_predictions,
            model_name=model_name,
            label_map=label_map,
            duplicates=duplicates,
        )
    return LabelImportOut.model_validate(report.as_dict())
