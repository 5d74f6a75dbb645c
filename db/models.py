"""SQLModel tables. Change them only together with a new Alembic migration
(``db/migrations/versions``); ``tests/test_db_migrations.py`` checks they agree.

Geometry is stored as JSON in the shape of ``core.geometry.Shape.to_json()``:
``[{"exterior": [[x, y], ...], "holes": [[[x, y], ...], ...]}, ...]`` in original pixels.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from enum import Enum
from typing import Any

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint, event
from sqlmodel import Field, SQLModel

from core.names import fold_username


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class ImageStatus(str, Enum):
    new = "new"
    in_progress = "in_progress"
    labelled = "labelled"
    reviewed = "reviewed"
    rejected = "rejected"


#: Statuses of a photo whose labels are done: what training, exports and counts call labelled.
LABELLED_STATUSES = (ImageStatus.labelled, ImageStatus.reviewed)


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
    #: Its model version stopped being offered (rolled back, replaced, or below its bar to
    #: pre-annotate): kept as history, never shown to annotators
    #: (``services.training.withdrawal``).
    withdrawn = "withdrawn"


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
    #: The assistance back end chosen on the dashboard (``services.training.assist.set_assistance``):
    #: ``{"choice": "auto" | "sam:<weights name>" | "assist_net" | "grabcut", "by", "at"}``;
    #: None means ``auto``.
    assistance: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    #: Quality-check settings chosen by a lead (``services.labelling.routing.project_quality_settings``):
    #: overlap share and annotators, gold share and feedback, IoU threshold, quorum; None
    #: means the defaults of ``core.config``.
    quality: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    #: The name as shown and written into authors' columns; folded (``core.names``) for users
    #: created since 0011, as typed for older ones.
    username: str = Field(index=True, unique=True)
    #: ``core.names.fold_username(username)``, kept by :func:`_fold_username`: what a sign-in
    #: or an admin's command looks a name up by, so ``Ana`` finds ``ana``. Not unique: two
    #: accounts created before 0011 may fold alike, and are then told apart by the exact name.
    username_key: str = Field(default="", index=True)
    password_hash: str
    role: Role = Field(default=Role.annotator)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    #: The classes the user picked last, most recent first (``services.accounts.recent_classes``):
    #: the workspace's keys 1-9, in every browser the user signs in from.
    recent_classes: list[int] | None = Field(default=None, sa_column=Column(JSON))


@event.listens_for(User, "before_insert")
@event.listens_for(User, "before_update")
def _fold_username(_mapper: Any, _connection: Any, user: User) -> None:
    """Keep ``username_key`` the fold of ``username`` however a row is written."""
    user.username_key = fold_username(user.username)


class ProjectMember(SQLModel, table=True):
    """That a user may work in a project (``services.accounts.projects``). Admins need no row: they
    may work in every project."""

    project_id: int = Field(foreign_key="project.id", primary_key=True)
    user_id: int = Field(foreign_key="user.id", primary_key=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class LoginThrottle(SQLModel, table=True):
    """Recent failed sign-ins of one user name or one client address (``services.accounts.throttle``).

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
    #: While ``rejected``: the user name of the author the rejection returns to (the last
    #: annotator who saved it), whose queue shows it first (``services.review.decisions``).
    rejected_for: str | None = Field(default=None, index=True)
    #: A gold photo (``services.review.quality``): its gold labels are frozen in an ``AnnotationSet``
    #: of kind ``gold``, and it is mixed into annotators' queues to score them.
    gold: bool = Field(default=False, index=True)
    #: How many annotators label this photo independently (overlap); 0 = an ordinary photo.
    overlap_target: int = Field(default=0, index=True)
    #: Order of arrival; the queue falls back to it when no active-learning score exists.
    import_order: int = Field(default=0, index=True)
    #: Current active-learning priority (higher first), mirrored from ``ImageScore``.
    queue_score: float | None = Field(default=None, index=True)
    #: The queue's lease (``services.labelling.leases``): the user the photo was handed to, since and
    #: until when (Unix seconds); nobody else is handed it while ``lease_until`` is ahead.
    #: No foreign key, so that migration 0005 is an in-place ALTER of this large table.
    lease_user_id: int | None = Field(default=None, index=True)
    lease_since: float | None = None
    lease_until: float | None = None
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
    #: A reviewer's decision on this one instance (``services.review.decisions``): ``accepted`` or
    #: ``rejected`` (with ``review_reason``), by ``reviewed_by``; None until reviewed, and
    #: again after the instance changes.
    review_state: str | None = None
    review_reason: str | None = None
    reviewed_by: str | None = None
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


class ReviewDecision(SQLModel, table=True):
    """One review verdict, kept for the per-annotator rejection rates (``services.review.decisions``):
    on a whole photo (``annotation_id`` None) or on one instance."""

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    image_id: int = Field(foreign_key="image.id", index=True)
    annotation_id: int | None = Field(default=None, foreign_key="annotation.id")
    #: The annotator whose work was judged (None when nobody is recorded, e.g. imported).
    author: str | None = Field(default=None, index=True)
    reviewer: str
    decision: str  # accepted / rejected
    reason: str | None = None
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


class AnnotationSet(SQLModel, table=True):
    """One user's own annotation set of a photo, kept beside the photo's working set
    (``services.review.quality``): ``overlap`` (an annotator's independent labels of an overlap
    photo), ``gold_submission`` (an annotator's labels of a gold photo, scored) or ``gold``
    (the gold labels, frozen when a lead marked the photo; ``user_id`` is that lead)."""

    __table_args__ = (
        UniqueConstraint("image_id", "user_id", "kind", name="uq_annotationset_image_user_kind"),
    )

    id: int | None = Field(default=None, primary_key=True)
    image_id: int = Field(foreign_key="image.id", index=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    kind: str = Field(index=True)
    #: Annotations in the shape of ``services.labelling.readers.annotation_to_dict``.
    annotations: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    #: Optimistic lock of this set, as ``Image.annotation_version`` is for the working set.
    version: int = 0
    #: When its author marked it done (None while a draft).
    submitted_at: datetime | None = Field(default=None, index=True)
    #: Gold scores of a ``gold_submission`` (``services.review.gold.score``).
    scores: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class PhotoAgreement(SQLModel, table=True):
    """Agreement of the annotators of an overlap photo, computed once all their sets were in
    (``services.review.agreement``)."""

    image_id: int = Field(foreign_key="image.id", primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    #: Pooled F1 of matched instances over every pair of annotators (1 = full agreement).
    f1: float
    mean_iou: float | None = None
    label_disagreements: int = 0
    annotators: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    #: class id (as text) -> ``ClassFigures.as_dict()``
    per_class: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    #: ``[{"a", "b", "per_class"}]`` for every pair of annotators
    pairs: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON))
    computed_at: datetime = Field(default_factory=utcnow, index=True)


class InspectionKind(str, Enum):
    pick_up = "pick_up"
    return_ = "return"
    claim = "claim"


class Vehicle(SQLModel, table=True):
    """A car photographed at inspections (``services.claims.inspections``): known by its plate, its
    VIN, or both (at least one)."""

    __table_args__ = (
        UniqueConstraint("project_id", "plate", name="uq_vehicle_project_plate"),
        UniqueConstraint("project_id", "vin", name="uq_vehicle_project_vin"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    plate: str | None = Field(default=None, index=True)
    vin: str | None = Field(default=None, index=True)
    make: str | None = None
    vehicle_model: str | None = None
    notes: str | None = None
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Inspection(SQLModel, table=True):
    """One walk-around of a vehicle: at pick-up, at return, or for a claim. ``name`` is how
    imports refer to it (the folder name), unique per vehicle."""

    __table_args__ = (UniqueConstraint("vehicle_id", "name", name="uq_inspection_vehicle_name"),)

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    vehicle_id: int = Field(foreign_key="vehicle.id", index=True)
    name: str
    kind: str = Field(default="claim", index=True)  # pick_up / return / claim
    inspected_on: date | None = None
    claim_number: str | None = Field(default=None, index=True)
    notes: str | None = None
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class InspectionPhoto(SQLModel, table=True):
    """A photo's slot in an inspection (front, rear_left, closeup_2, ...). The image is the
    key, so a photo belongs to at most one inspection slot; a slot holds one photo."""

    __table_args__ = (UniqueConstraint("inspection_id", "slot", name="uq_inspectionphoto_slot"),)

    image_id: int = Field(foreign_key="image.id", primary_key=True)
    inspection_id: int = Field(foreign_key="inspection.id", index=True)
    slot: str
    created_at: datetime = Field(default_factory=utcnow)


class DamageFlag(SQLModel, table=True):
    """A return photo's damage instance compared with the pick-up inspection
    (``services.claims.new_damage``): ``new_since_pick_up``, ``pre_existing`` or ``unverified``
    (no alignment held), and an analyst's ``confirmed``/``dismissed`` verdict with a note."""

    __table_args__ = (
        UniqueConstraint("image_id", "source", "source_id", name="uq_damageflag_instance"),
    )

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="project.id", index=True)
    inspection_id: int = Field(foreign_key="inspection.id", index=True)
    image_id: int = Field(foreign_key="image.id", index=True)
    #: ``annotation`` or ``prediction``, and that row's id
    source: str
    source_id: int
    class_id: int
    geometry: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    compared_inspection_id: int | None = Field(default=None, foreign_key="inspection.id")
    compared_image_id: int | None = Field(default=None, foreign_key="image.id")
    state: str = Field(index=True)
    best_iou: float | None = None
    #: ``{"method", "inliers", "confidence", "homography", "reason"}``
    alignment: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    decision: str | None = None
    note: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None
    computed_at: datetime = Field(default_factory=utcnow)
