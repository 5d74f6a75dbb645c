"""Quality checks: a lead's overlap and gold settings, gold photos, and the quality tables
(agreement per photo, annotator and class; gold scores) as JSON or CSV (``?format=csv``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from api.deps import Lead, ProjectDep, SessionDep, require, service_errors
from api.schemas import IdPath
from db.models import Project, User
from services.accounts.users import Permission
from services.labelling.routing import QualitySettings
from services.review import quality as quality_service
from services.review import quality_report as report

router = APIRouter(tags=["quality"])
FormatQuery = Annotated[
    Literal["json", "csv"], Query(alias="format", description="csv for a spreadsheet")
]
_CSV = {
    200: {"content": {"text/csv": {}}, "description": "the rows (JSON, or CSV with ?format=csv)"}
}


class QualitySettingsIn(BaseModel):
    overlap_share: float | None = Field(default=None, ge=0, le=1, description="share of photos")
    overlap_annotators: int | None = Field(default=None, ge=2, le=20)
    gold_share: float | None = Field(
        default=None, ge=0, le=1, description="share of each annotator's queue"
    )
    gold_feedback: bool | None = Field(
        default=None, description="annotators see their comparison with gold after submitting"
    )
    iou_threshold: float | None = Field(default=None, gt=0, le=1)
    quorum: float | None = Field(default=None, gt=0, le=1, description="q: kept with ⌈q·n⌉ votes")
    low_agreement: float | None = Field(
        default=None, ge=0, le=1, description="agreement under which a photo is reviewed first"
    )


class GoldIn(BaseModel):
    gold: bool = True


class GoldOut(BaseModel):
    image_id: int
    gold: bool


class PhotoAgreementRow(BaseModel):
    image_id: int
    file_name: str
    status: str
    annotators: str
    agreement_f1: float
    mean_iou: float | None
    label_disagreements: int
    computed_at: str


class ClassAgreement(BaseModel):
    class_id: int
    class_: str = Field(alias="class")
    f1: float | None
    mean_iou: float | None
    label_disagreements: int


class PairAgreement(BaseModel):
    a: str
    b: str
    f1: float | None
    mean_iou: float | None
    label_disagreements: int


class PhotoAgreementDetail(BaseModel):
    image_id: int
    annotators: list[str]
    f1: float = Field(description="pooled F1 of matched instances over every pair")
    mean_iou: float | None
    label_disagreements: int
    per_class: list[ClassAgreement]
    pairs: list[PairAgreement]
    computed_at: str


class AnnotatorQualityRow(BaseModel):
    annotator: str
    photos_per_hour: float | None
    overlap_pairs_instances: int
    agreement_f1: float | None
    agreement_mean_iou: float | None
    label_disagreements: int
    gold_photos: int
    gold_precision: float | None
    gold_recall: float | None
    gold_mean_iou: float | None
    rejection_rate: float | None = Field(description="share of reviewed photos rejected")


class ClassQualityRow(BaseModel):
    class_id: int
    class_: str = Field(alias="class")
    agreement_f1: float | None
    agreement_mean_iou: float | None
    label_disagreements: int
    gold_precision: float | None
    gold_recall: float | None
    gold_mean_iou: float | None


class GoldScoreRow(BaseModel):
    annotator: str
    image_id: int
    file_name: str | None
    submitted_at: str
    precision: float | None
    recall: float | None
    mean_iou: float | None


class SeriesRow(BaseModel):
    annotator: str
    day: str
    agreement_f1: float | None
    gold_recall: float | None


class FeedbackOut(BaseModel):
    image_id: int
    scores: dict[str, Any] = Field(description="per_class and overall precision, recall, mean_iou")
    gold_annotations: list[dict[str, Any]]
    your_annotations: list[dict[str, Any]]


@router.get("/quality/settings")
def get_settings(user: Lead, project: ProjectDep) -> QualitySettings:
    """The project's overlap, gold and agreement settings."""
    return quality_service.project_quality_settings(project)


@router.put("/quality/settings")
def put_settings(
    body: QualitySettingsIn, user: Lead, project: ProjectDep, session: SessionDep
) -> QualitySettings:
    """Change some settings (the fields sent); overlap photos are marked to match the share."""
    with service_errors():
        s = quality_service.set_quality_settings(
            session, user, project, **body.model_dump(exclude_none=True)
        )
    return s


@router.post("/quality/gold/{image_id}")
def post_gold(
    image_id: IdPath, body: GoldIn, user: Lead, project: ProjectDep, session: SessionDep
) -> GoldOut:
    """Mark a reviewed photo as gold (its labels are frozen as the gold labels) or unmark it."""
    with service_errors():
        image = quality_service.mark_gold(
            session, user, project=project, image_id=image_id, gold=body.gold
        )
        return GoldOut(image_id=image.id, gold=image.gold)


def _table(
    build: Callable[[Any, Project], list[dict[str, Any]]],
    model: type[BaseModel],
    session: Any,
    project: Project,
    fmt: str,
    name: str,
) -> Any:
    rows = build(session, project)
    if fmt == "csv":
        return Response(
            report.to_csv(rows),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="quality_{name}.csv"'},
        )
    return [model.model_validate(r) for r in rows]


@router.get("/quality/photos", responses=_CSV)
def photos(
    user: Lead, project: ProjectDep, session: SessionDep, fmt: FormatQuery = "json"
) -> list[PhotoAgreementRow]:
    """Agreement per overlap photo, lowest first."""
    return _table(report.photo_rows, PhotoAgreementRow, session, project, fmt, "photos")


@router.get("/quality/photos/{image_id}")
def photo_agreement(
    image_id: IdPath, user: Lead, project: ProjectDep, session: SessionDep
) -> PhotoAgreementDetail:
    """One overlap photo's agreement: overall, per class and per pair of annotators."""
    with service_errors():
        return PhotoAgreementDetail.model_validate(report.photo_detail(session, project, image_id))


@router.get("/quality/annotators", responses=_CSV)
def annotators(
    user: Lead, project: ProjectDep, session: SessionDep, fmt: FormatQuery = "json"
) -> list[AnnotatorQualityRow]:
    """Per annotator: photos per hour, agreement, gold precision/recall/IoU, rejection rate."""
    return _table(report.annotator_rows, AnnotatorQualityRow, session, project, fmt, "annotators")


@router.get("/quality/classes", responses=_CSV)
def classes(
    user: Lead, project: ProjectDep, session: SessionDep, fmt: FormatQuery = "json"
) -> list[ClassQualityRow]:
    """Per class: agreement and gold scores."""
    return _table(report.class_rows, ClassQualityRow, session, project, fmt, "classes")


@router.get("/quality/gold", responses=_CSV)
def gold_scores(
    user: Lead, project: ProjectDep, session: SessionDep, fmt: FormatQuery = "json"
) -> list[GoldScoreRow]:
    """Every scored gold submission."""
    return _table(report.gold_rows, GoldScoreRow, session, project, fmt, "gold")


@router.get("/quality/series", responses=_CSV)
def series(
    user: Lead, project: ProjectDep, session: SessionDep, fmt: FormatQuery = "json"
) -> list[SeriesRow]:
    """Per annotator and day: agreement F1 and gold recall."""
    return _table(report.annotator_series, SeriesRow, session, project, fmt, "series")


@router.get("/quality/series.png", responses={200: {"content": {"image/png": {}}}})
def series_png(user: Lead, project: ProjectDep, session: SessionDep) -> Response:
    """The time series as a picture."""
    return Response(
        report.series_png(report.annotator_series(session, project)), media_type="image/png"
    )


@router.get("/quality/feedback/{image_id}")
def feedback(
    image_id: IdPath,
    user: Annotated[User, Depends(require(Permission.annotate))],
    project: ProjectDep,
    session: SessionDep,
) -> FeedbackOut:
    """Your submitted labels of a photo compared with its gold labels, where the project shows
    it; 404 otherwise."""
    with service_errors():
        return FeedbackOut(
            **quality_service.feedback_for(session, user, project=project, image_id=image_id)
        )
