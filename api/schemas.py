"""What the REST routes answer: one Pydantic model per response, so ``/docs`` shows them.

The services return plain values (rows and dicts); a route validates them into these models.
Timestamps are ISO 8601 strings as the services write them; coordinates are image pixels.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from db.models import ImageStatus, JobStatus, PredictionState, Role
from services.labelling.validation import MAX_ID

#: Ids in paths and queries: beyond the database's integers they get 422, never a 500.
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
ClassIdQuery = Annotated[int | None, Query(ge=0, le=MAX_ID)]

# ---------- geometry ----------


class PolygonJson(BaseModel):
    """One polygon in image pixels: an outer ring and its holes, each ``[[x, y], ...]``."""

    exterior: list[list[float]]
    holes: list[list[list[float]]] = Field(default_factory=list)


# ---------- sign-in and health ----------


class Health(BaseModel):
    status: str = Field(description='"ok" while the server answers')


class LoginAnswer(BaseModel):
    token: str
    token_type: str = "bearer"
    username: str
    role: str
    permissions: list[str]


class RecentClasses(BaseModel):
    class_ids: list[int] = Field(
        description="the classes the user picked last, most recent first (keys 1-9 pick them)"
    )


class Me(BaseModel):
    username: str
    role: str
    permissions: list[str]
    project: str | None = Field(
        default=None, description="the project this server serves, when the user may work in it"
    )
    projects: list[str] = Field(
        default_factory=list, description="the projects the user may work in"
    )


class Revoked(BaseModel):
    revoked: bool = Field(description="false when the token was already revoked")


class UserPublic(BaseModel):
    username: str
    role: Role
    active: bool
    created_at: str


class UserProjects(BaseModel):
    username: str
    projects: list[str] = Field(description="the projects the user is a member of")
    all_projects: bool = Field(description="true for admins, who may work in every project")


# ---------- images, annotations, predictions ----------


class ImageSummary(BaseModel):
    id: int
    file_name: str
    width: int
    height: int
    split: str
    status: ImageStatus
    annotation_version: int
    review_comment: str | None
    rejected_for: str | None = Field(
        default=None, description="while rejected: the author whose queue shows it first"
    )
    queue_score: float | None = Field(description="active-learning priority; higher first")
    import_order: int


class AnnotationOut(BaseModel):
    id: int
    class_id: int
    group: str
    geometry: list[PolygonJson]
    attributes: dict[str, Any] = Field(
        description="severity, part_id, fake, fake_note, occluded, ..."
    )
    source: str
    author: str | None
    prediction_id: int | None
    version: int
    updated_at: str | None
    review_state: str | None = Field(default=None, description="accepted / rejected / null")
    review_reason: str | None = None
    reviewed_by: str | None = None


class PredictionOut(BaseModel):
    id: int
    class_id: int
    group: str
    geometry: list[PolygonJson]
    score: float
    state: PredictionState
    model: str = Field(description="the model version that made it, e.g. yolo_seg-v2")
    extra: dict[str, Any]


class ImageDetail(ImageSummary):
    version: int = Field(description="send this back with a save; a stale one gets 409")
    annotations: list[AnnotationOut]
    predictions: list[PredictionOut]
    read_only: bool = Field(
        default=False, description="someone else holds the photo's queue lease: look, don't edit"
    )
    held_by: str | None = Field(default=None, description="who holds it, when read_only")


class FraudSuspectOut(BaseModel):
    annotation_id: int
    reason: str = Field(description="why this polygon is checked, in a sentence")


class FraudCheckOut(BaseModel):
    reasons: list[str] = Field(description="why the photo is in the fraud queue")
    suspects: list[FraudSuspectOut] = Field(description="the polygons those reasons are about")


class ImagePage(BaseModel):
    total: int = Field(description="images matching the filters")
    limit: int
    offset: int
    items: list[ImageSummary]


class PredictionStateOut(BaseModel):
    id: int
    state: PredictionState


class ImportReportOut(BaseModel):
    source: str
    images_added: int
    images_skipped: int
    images_failed: int
    instances_added: int
    instances_skipped: int
    instances_failed: int
    images_labelled: int = Field(
        default=0, description="photos this import moved to labelled (or reviewed)"
    )
    messages: list[str] = Field(description="one sentence per file that could not be added")


class QueueProgress(BaseModel):
    total: int
    done: int = Field(description="labelled + reviewed")
    open: int
    new: int
    in_progress: int
    labelled: int = Field(description="photos labelled or reviewed")
    reviewed: int
    rejected: int


class QueueStep(BaseModel):
    image: ImageDetail | None = Field(description="null at the end of the queue")
    position: int | None = Field(description="1-based place of the image in the queue")
    queue_length: int
    progress: QueueProgress
    rejections_waiting: int = Field(
        default=0, description="rejected photos waiting for the caller to fix them"
    )
    check_reasons: list[str] = Field(
        default_factory=list,
        description="the fraud queue (flagged=true): why the photo is queued for a check",
    )


class LabelClassOut(BaseModel):
    id: int
    name: str
    group: str
    display_name: str
    color: str
    synonyms: list[str] = Field(default=[], description="other words the class search accepts")


class TaxonomyOut(BaseModel):
    classes: list[LabelClassOut]
    counts: dict[str, int] = Field(description="classes per group")


# ---------- assistance ----------


class AssistPrepared(BaseModel):
    image_id: int
    backend: str | None = Field(description="sam_vit_b, mobile_sam, assist_net, grabcut, ...")


class AssistAnswer(BaseModel):
    geometry: list[PolygonJson] = Field(description="empty when the back end found nothing")
    score: float
    backend: str
    note: str | None = Field(
        default=None, description="set when the answer is no better than the prompt (the box)"
    )


class AssistanceChoice(BaseModel):
    label: str
    value: str = Field(description="auto, sam:<weights name>, assist_net or grabcut")


class AssistanceOut(BaseModel):
    choice: str = Field(description="the project's choice: auto, sam:<weights name>, ...")
    backend: str = Field(description="the back end in use: sam_vit_b, mobile_sam, grabcut, ...")
    source: Literal["env", "project", "default"] = Field(
        description="why: a setting/environment variable wins, the project's choice, or auto"
    )
    reason: str = Field(description="the same in a sentence")
    env: dict[str, str] = Field(description="assistance environment variables that are set")
    choices: list[AssistanceChoice]


class AssistanceIn(BaseModel):
    choice: str = Field(description="auto, sam:<weights name>, assist_net or grabcut")


# ---------- dashboard, models, jobs ----------


class ProjectStats(BaseModel):
    project: str
    images: int
    labelled: int = Field(description="photos labelled or reviewed")
    annotations: int
    per_group: dict[str, int]
    per_class: dict[str, int]
    per_split: dict[str, int]
    per_status: dict[str, int]


class Throughput(BaseModel):
    author: str
    photos: int
    instances: int
    active_hours: int
    photos_per_hour: float
    instances_per_hour: float


class ModelVersionRow(BaseModel):
    name: str
    stage: str
    version: int
    promoted: bool
    metrics: dict[str, Any]
    created_at: str


class Stats(BaseModel):
    stats: ProjectStats
    throughput: list[Throughput] = Field(description="per annotator, the last 7 days")
    models: list[ModelVersionRow]


class RetrainAnswer(BaseModel):
    job_id: int
    status: JobStatus
    plan: list[str] = Field(
        default_factory=list,
        description="a sentence per stage the round will train: which version it continues "
        "and on which configuration, or why it starts from scratch",
    )


class PrimaryMetric(BaseModel):
    name: str
    value: float


class VersionOut(BaseModel):
    id: int
    name: str
    stage: str
    version: int
    promoted: bool
    metrics: dict[str, Any]
    primary_metric: PrimaryMetric | None
    train_images: int
    parent_id: int | None
    sha256: str
    created_at: str | None


class Holdout(BaseModel):
    split: str
    image_ids: list[int]
    count: int


class JobOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    kind: str
    status: JobStatus
    params: dict[str, Any]
    stage: str | None
    progress: float = Field(description="0..1")
    epoch: int | None
    loss: float | None
    message: str | None
    error: str | None
    result: dict[str, Any]
    attempts: int
    created_by: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    retryable: bool


# ---------- review (services.review.decisions) ----------


class InstanceReviewIn(BaseModel):
    decision: Literal["accepted", "rejected"]
    reason: str | None = Field(default=None, description="required to reject")


class InstanceReviewOut(BaseModel):
    annotation: AnnotationOut
    image: ImageSummary = Field(description="the photo after the verdict (rejected with it)")


class RejectionsWaiting(BaseModel):
    count: int = Field(description="rejected photos waiting for the caller to fix them")
    images: list[ImageSummary]


class RejectionRate(BaseModel):
    annotator: str
    photos_reviewed: int
    photos_rejected: int
    photo_rejection_rate: float | None
    instances_reviewed: int
    instances_rejected: int
    instance_rejection_rate: float | None


class SideUnknownOut(BaseModel):
    annotation: AnnotationOut
    image: ImageSummary
    class_name: str = Field(description="the side the import chose")
    other_side: str | None = Field(description="the mirrored class")


class SideResolveIn(BaseModel):
    class_name: str = Field(description="the imported class or its mirror")
