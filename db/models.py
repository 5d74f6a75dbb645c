"""SQLModel tables. Change them only together with a new Alembic migration
(``db/migrations/versions``); ``tests/test_db_migrations.py`` checks they agree.

Geometry is stored as JSON in the shape of ``core.geometry.Shape.to_json()``:
``[{"exterior": [[x, y], ...], "holes": [[[x, y], ...], ...]}, ...]`` in original pixels.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ImageStatus(str, Enum):
    new = "new"
    in_progress = "in_progress"
    labelled = "labelled"
    reviewed = "reviewed"
    rejected = "rejected"


class AnnotationSource(str, Enum):
    manual = "manual"
    assisted = "assisted"
    accepted_prediction = "accepted_prediction"
    imported = "imported"


class PredictionState(str, Enum):
    pending = "pending"
    accepted = "accepted"
    rejected = "rejected"
    edited = "edited"


class Role(str, Enum):
    annotator = "annotator"
    reviewer = "reviewer"
    fraud_analyst = "fraud_analyst"
    lead = "lead"
    admin = "admin"


class JobStatus(str, Enum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


class Project(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    #: The taxonomy file the project uses; None means the default 26/7/61 set.
    taxonomy_path: str | None = None
    #: The assistance back end chosen on the dashboard (``services.assist.set_assistance``):
    #: ``{"choice": "auto" | "sam:<weights name>" | "assist_net" | "grabcut", "by", "at"}``;
    #: None means ``auto``.
    assistance: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(index=True, unique=True)
    password_hash: str
    role: Role = Field(default=Role.annotator)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class ProjectMember(SQLModel, table=True):
    """That a user may work in a project (``services.projects``). Admins need no row: they
    may work in every project."""

    project_id: int = Field(foreign_key="project.id", primary_key=True)
    user_id: int = Field(foreign_key="user.id", primary_key=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class LoginThrottle(SQLModel, table=True):
    """Recent failed sign-ins of one user name or one client address (``services.throttle``).

    Kept in the database so that every web process sees the same counts.
    """

    #: ``user:<sha256 of the name>`` or ``address:<sha256 of the address>``: hashed, so a
    #: password typed into the name field is never stored.
    key: str = Field(primary_key=True)
    failures: int = 0
    #: Unix times (seconds).
    last_failure_at: float = Field(index=True)
    locked_until: float = 0.0


class ApiToken(SQLModel, table=True):
    """A bearer token; only its sha256 is stored."""

    id: int | None = Field(default=None, primary_key=True)
    token_sha256: str = Field(index=True, unique=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime


class Image(SQLModel, table=True):
    __table_args__ = (
        UniqueConstraint("project_id", "sha256", name="uq_image_project_sha256"),
        Index("ix_image_project_status", "project_id", "status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    #: Absolute path of the image file (imports reference files in place).
    path: str
    #: The name the source gave it (relative path in a COCO/VIA file or folder).
    file_name: str
    sha256: str = Field(index=True)
    width: int
    height: int
    split: str = Field(default="train", index=True)
    status: ImageStatus = Field(default=ImageStatus.new)
    #: Optimistic lock for whole-image annotation saves; bumped by every save.
    annotation_version: int = 0
    review_comment: str | None = None
    #: Order of arrival; the queue falls back to it when no active-learning score exists.
    import_order: int = Field(default=0, index=True)
    #: Current active-learning priority (higher first), mirrored from ``ImageScore``.
    queue_score: float | None = Field(default=None, index=True)
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Annotation(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="image.id", index=True)
    class_id: int = Field(index=True)
    group: str = Field(index=True)  # damage / fake / part
    geometry: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    #: severity, part_id, fake, fake_note, occluded (see core.instances.ATTRIBUTE_KEYS)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    source: AnnotationSource = Field(default=AnnotationSource.manual)
    author: str | None = None
    #: The prediction this annotation came from, when accepted or edited from one.
    prediction_id: int | None = Field(default=None, foreign_key="prediction.id")
    #: Optimistic lock for this one annotation; bumped whenever it changes.
    version: int = 1
    deleted: bool = Field(default=False, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AnnotationRevision(SQLModel, table=True):
    """The full annotation set of an image as it was before a save: the history."""

    __table_args__ = (UniqueConstraint("image_id", "revision", name="uq_revision_image"),)

    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="image.id", index=True)
    revision: int
    annotations: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    author: str | None = None
    reason: str = "save"
    created_at: datetime = Field(default_factory=utcnow)


class ModelVersion(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("stage", "version", name="uq_model_stage_version"),)

    id: int | None = Field(default=None, primary_key=True)
    stage: str = Field(index=True)  # albert, yolo_seg, part_classifier, mask_rcnn, assist_net
    version: int
    #: ``albert-v3``
    name: str = Field(index=True, unique=True)
    path: str
    sha256: str
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    metrics: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    #: Which image ids and annotation revisions it was trained on.
    train_snapshot: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    parent_id: int | None = Field(default=None, foreign_key="modelversion.id")
    promoted: bool = Field(default=False, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class Prediction(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="image.id", index=True)
    model_version_id: int = Field(foreign_key="modelversion.id", index=True)
    class_id: int
    group: str
    geometry: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    score: float
    #: head name -> full probability vector
    probs: dict[str, list[float]] = Field(default_factory=dict, sa_column=Column(JSON))
    #: float16 bytes of the instance embedding, if the stage gives one
    embedding: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    #: extra per-instance values a stage reports beside its classes and probabilities
    extra: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    state: PredictionState = Field(default=PredictionState.pending, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class ImagePrediction(SQLModel, table=True):
    """That a model version has processed an image (possibly with no instances),
    with its image-level embedding. Pre-annotation resumes from these rows."""

    __table_args__ = (
        UniqueConstraint("image_id", "model_version_id", name="uq_imagepred_image_model"),
    )

    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="image.id", index=True)
    model_version_id: int = Field(foreign_key="modelversion.id", index=True)
    embedding: bytes | None = Field(default=None, sa_column=Column(LargeBinary))
    created_at: datetime = Field(default_factory=utcnow)


class ImageScore(SQLModel, table=True):
    """An active-learning score of an image under one strategy and model version."""

    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="image.id", index=True)
    strategy: str = Field(index=True)
    model_version_id: int | None = Field(default=None, foreign_key="modelversion.id")
    score: float
    rank: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Job(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    #: The project the job works on; None only for jobs from before projects had jobs of
    #: their own (migration 0003 gives them the database's one project when there is one).
    project_id: int | None = Field(default=None, foreign_key="project.id", index=True)
    kind: str = Field(index=True)  # preannotate, embed, train, evaluate, select, round
    status: JobStatus = Field(default=JobStatus.queued, index=True)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    stage: str | None = None  # the step a running job is on
    progress: float = 0.0  # 0..1
    epoch: int | None = None
    loss: float | None = None
    message: str | None = None
    error: str | None = None
    log_path: str | None = None
    task_id: str | None = None  # the task queue's id
    attempts: int = 0
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
