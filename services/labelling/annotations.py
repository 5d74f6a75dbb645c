"""Reading and saving an image's annotations, with optimistic locking and history.

A save replaces the image's whole annotation set at once (what the workspace autosaves).
It succeeds only if the caller saw the current ``Image.annotation_version``; the set as it
was before is kept as an ``AnnotationRevision``, and removed annotations are soft-deleted,
so no save can destroy earlier work. With ``keep_going`` (what the workspace sends) one bad
instance does not refuse the set: the others are saved and each refused one is reported with
its reason (:func:`save_annotation_set`), so no edit is dropped without a word.

The rules about who may do what to an image live here too, so the REST API, the UI and the
CLI apply the same ones: :func:`save_annotations_as` (only fraud analysts may change the
fake-damage verdict; predictions follow the annotations made from them) and
:func:`set_status_as` (:data:`STATUS_PERMISSION`).

Projects are a boundary: what a user asks for by id is looked up within the project the
server serves (``project=``), so an id of another project is NotFound, exactly like an id
that does not exist, and the ``*_as`` functions check the user's membership too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import update
from sqlmodel import Session, select

from core.config import env_name, get_settings
from core.geometry import GeometryError, Shape, check_geometry, repair_geometry
from core.instances import SEVERITIES, Instances
from core.taxonomy import Taxonomy, TaxonomyError
from db.models import (
    Annotation,
    AnnotationRevision,
    AnnotationSource,
    Image,
    ImageStatus,
    ModelVersion,
    Prediction,
    PredictionState,
    Project,
    User,
    utcnow,
)
from services.accounts import users as user_service
from services.accounts.projects import project_taxonomy, require_member
from services.accounts.users import Permission
from services.errors import Forbidden, Invalid, NotFound, VersionConflict, check_comment_length
from services.events import labels_changed
from services.labelling import rejections

__all__ = [
    "STATUS_PERMISSION",
    "AnnotationInvalid",
    "VersionConflict",
    "annotation_dicts",
    "check_fake_edits",
    "check_status_permission",
    "get_image",
    "image_detail",
    "image_instances",
    "image_summary",
    "normalise_annotation",
    "prediction_dicts",
    "SaveOutcome",
    "save_annotation_set",
    "save_annotations",
    "save_annotations_as",
    "set_prediction_state",
    "set_status",
    "set_status_as",
    "sync_prediction_states",
]

#: Largest id a client may send (the database's 32-bit integer columns).
MAX_ID = 2**31 - 1


class AnnotationInvalid(Invalid):
    """An annotation in a save request that cannot be stored."""


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
    ``Instances`` with ``data["annotation_id"]`` and ``data["source"]``."""
    if not items:
        return Instances.empty()
    return Instances(
        shapes=[Shape.from_json(a["geometry"], trusted=True) for a in items],
        class_ids=np.array([a["class_id"] for a in items]),
        attributes=[dict(a.get("attributes") or {}) for a in items],
        data={
            "annotation_id": [a.get("id") for a in items],
            "source": [a.get("source") for a in items],
        },
    )


def image_instances(session: Session, image_id: int) -> Instances:
    return dicts_to_instances(annotation_dicts(session, image_id))


def normalise_attributes(raw: object, taxonomy: Taxonomy, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise AnnotationInvalid(f"{where}: 'attributes' must be an object")
    out = dict(raw)
    sev = out.get("severity")
    if sev is not None and sev not in SEVERITIES:
        raise AnnotationInvalid(f"{where}: severity {sev!r} must be one of {', '.join(SEVERITIES)}")
    part = out.get("part_id")
    if part is not None:
        try:
            cls = taxonomy.by_id(int(part))
        except (TaxonomyError, TypeError, ValueError):
            raise AnnotationInvalid(f"{where}: part_id {part!r} is not a class id") from None
        if cls.group != "part":
            raise AnnotationInvalid(f"{where}: part_id {part} is {cls.name!r}, not a part")
        out["part_id"] = cls.id
    for flag in ("fake", "occluded"):
        if flag in out and not isinstance(out[flag], bool):
            raise AnnotationInvalid(f"{where}: {flag!r} must be true or false")
    limits = get_settings()
    note = out.get("fake_note")
    if note is not None and not isinstance(note, str):
        raise AnnotationInvalid(f"{where}: fake_note must be text")
    check_comment_length(note, f"{where}: fake_note", error=AnnotationInvalid)
    size = len(json.dumps(out, default=str))
    if size > limits.max_attribute_chars:
        raise AnnotationInvalid(
            f"{where}: 'attributes' is {size:,} characters as JSON, more than the limit of "
            f"{limits.max_attribute_chars:,} (setting {env_name('max_attribute_chars')})"
        )
    return out


def whole_number(value: object, field: str, *, low: int = 0, high: int = MAX_ID) -> int:
    """``value`` as an int when it is one (not a bool, not 1.5, not "3") within
    [low, high]; else AnnotationInvalid naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AnnotationInvalid(f"{field} must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise AnnotationInvalid(f"{field} must be between {low} and {high}, not {value}")
    return value


def normalise_annotation(
    raw: dict[str, Any], taxonomy: Taxonomy, index: int, image: Image
) -> dict[str, Any]:
    """Validate one incoming annotation; raises AnnotationInvalid naming the field."""
    where = f"annotation {index + 1}"
    if not isinstance(raw, dict):
        raise AnnotationInvalid(f"{where}: expected an object")
    cls = None
    if raw.get("class_id") is not None:
        class_id = whole_number(raw["class_id"], f"{where}: class_id")
        try:
            cls = taxonomy.by_id(class_id)
        except (TaxonomyError, TypeError, ValueError):
            raise AnnotationInvalid(
                f"{where}: class_id {raw['class_id']!r} is not in the taxonomy"
            ) from None
    elif raw.get("class_name") is not None:
        cls = taxonomy.get(str(raw["class_name"]))
        if cls is None:
            raise AnnotationInvalid(f"{where}: class {raw['class_name']!r} is not in the taxonomy")
    else:
        raise AnnotationInvalid(f"{where}: needs 'class_id' or 'class_name'")
    try:
        # Partly-outside polygons are fine; far-off ones are a bug. The canvas checks the same
        # rules before it sends (geometry.js check).
        shape = check_geometry(
            raw.get("geometry"),
            image.width,
            image.height,
            max_vertices=get_settings().max_vertices_per_polygon,
        )
    except GeometryError as e:
        raise AnnotationInvalid(f"{where}: {e}") from None
    source = raw.get("source") or AnnotationSource.manual.value
    try:
        source = AnnotationSource(source)
    except ValueError:
        raise AnnotationInvalid(
            f"{where}: source {source!r} must be one of {', '.join(s.value for s in AnnotationSource)}"
        ) from None
    ann_id = raw.get("id")
    prediction_id = raw.get("prediction_id")
    return {
        "id": None if ann_id is None else whole_number(ann_id, f"{where}: id", low=1),
        "class_id": cls.id,
        "group": cls.group,
        "geometry": shape.to_json(),
        "attributes": normalise_attributes(raw.get("attributes"), taxonomy, where),
        "source": source,
        "prediction_id": None
        if prediction_id is None
        else whole_number(prediction_id, f"{where}: prediction_id", low=1),
    }


@dataclass
class SaveOutcome:
    """What a save did: the new version, the instances it refused (``keep_going``) and the
    ids it gave the new ones."""

    version: int
    #: ``{"index", "client_id", "id", "reason"}`` per refused instance, in request order.
    rejected: list[dict[str, Any]] = field(default_factory=list)
    #: ``{"index", "client_id", "id"}`` per annotation this save created, in request order.
    created: list[dict[str, Any]] = field(default_factory=list)


def save_annotations(
    session: Session,
    *,
    image_id: int,
    expected_version: int,
    annotations: list[dict[str, Any]],
    author: str | None,
    reason: str = "save",
    reopen_reviewed: bool = False,
) -> int:
    """Replace the image's annotation set; returns the new ``annotation_version``.

    A save that changes nothing writes nothing (no revision) and returns the version as it
    is. With ``reopen_reviewed`` (an author who may not review), a change to a ``reviewed``
    photo sends it back to ``labelled``, and its history says so.

    Raises VersionConflict when ``expected_version`` is stale, AnnotationInvalid when an
    annotation is malformed (nothing is written then).
    """
    return save_annotation_set(
        session,
        image_id=image_id,
        expected_version=expected_version,
        annotations=annotations,
        author=author,
        reason=reason,
        reopen_reviewed=reopen_reviewed,
    ).version


def save_annotation_set(
    session: Session,
    *,
    image_id: int,
    expected_version: int,
    annotations: list[dict[str, Any]],
    author: str | None,
    reason: str = "save",
    reopen_reviewed: bool = False,
    keep_going: bool = False,
) -> SaveOutcome:
    """:func:`save_annotations`, and with ``keep_going`` one bad instance does not refuse the
    rest: each instance that breaks a rule is left out and reported in
    :attr:`SaveOutcome.rejected` with the reason, the rest is saved in one write. A refused
    instance that was saved before keeps its stored version (it is not deleted); a refused
    new one is not created. Nothing is dropped without a word: the caller gets every refusal.
    An instance may carry ``client_id`` (any JSON scalar), echoed in the outcome.
    """
    image = get_image(session, image_id)
    whole_number(expected_version, "version")
    taxonomy = project_taxonomy(session.get(Project, image.project_id))
    limit = get_settings().max_polygons_per_image
    if len(annotations) > limit:
        raise AnnotationInvalid(
            f"{len(annotations):,} annotations on one photo is more than the limit of {limit:,} "
            f"(setting {env_name('max_polygons_per_image')})"
        )
    # Read once: a save that claims the version below is the only writer of these rows.
    rows = current_annotations(session, image_id)
    existing = {a.id: a for a in rows}
    predictions = _image_prediction_ids(session, image_id, annotations)
    rejected: list[dict[str, Any]] = []
    incoming: list[dict[str, Any]] = []
    order: list[int] = []  # request index of each item of incoming
    for i, raw in enumerate(annotations):
        try:
            item = normalise_annotation(raw, taxonomy, i, image)
            if item["id"] is not None and item["id"] not in existing:
                raise AnnotationInvalid(
                    f"annotation id {item['id']} does not belong to image {image_id} "
                    "(or was deleted)"
                )
            if item["prediction_id"] is not None and item["prediction_id"] not in predictions:
                raise AnnotationInvalid(
                    f"annotation {i + 1}: prediction_id {item['prediction_id']} is not a "
                    f"prediction of image {image_id}; leave it out for a shape you drew yourself"
                )
        except AnnotationInvalid as e:
            if not keep_going:
                raise
            rejected.append(_rejection(raw, i, str(e), existing))
            continue
        incoming.append(item)
        order.append(i)
    # A refused instance that is stored stays as it is stored.
    refused_ids = {r["id"] for r in rejected if r["id"] is not None}
    kept_rows = [existing[i] for i in sorted(refused_ids)]
    if image.annotation_version == expected_version and _unchanged(
        [r for r in rows if r.id not in refused_ids], incoming
    ):
        return SaveOutcome(expected_version, rejected)
    reopen = reopen_reviewed and image.status == ImageStatus.reviewed
    if reopen:
        reason = f"{reason}; edited after review, so reviewed -> labelled"

    # Claim the version atomically: of two concurrent saves only one matches.
    claimed = session.execute(
        update(Image)
        .where(Image.id == image_id, Image.annotation_version == expected_version)
        .values(annotation_version=expected_version + 1, updated_at=utcnow())
    )
    if claimed.rowcount != 1:
        session.rollback()
        image = get_image(session, image_id)
        session.refresh(image)
        raise VersionConflict(
            image_id,
            expected_version,
            image.annotation_version,
            annotation_dicts(session, image_id),
        )

    session.add(
        AnnotationRevision(
            image_id=image_id,
            revision=expected_version,
            annotations=[annotation_to_dict(a) for a in existing.values()],
            author=author,
            reason=reason,
        )
    )
    now = utcnow()
    kept: set[int] = {r.id for r in kept_rows}
    created: list[tuple[int, Annotation]] = []
    for index, item in zip(order, incoming, strict=True):
        row = existing.get(item["id"]) if item["id"] is not None else None
        if row is None:
            new_row = Annotation(
                image_id=image_id,
                class_id=item["class_id"],
                group=item["group"],
                geometry=item["geometry"],
                attributes=item["attributes"],
                source=item["source"],
                author=author,
                prediction_id=item["prediction_id"],
            )
            session.add(new_row)
            created.append((index, new_row))
            continue
        kept.add(row.id)
        if not _same(row, item):
            row.class_id, row.group = item["class_id"], item["group"]
            row.geometry, row.attributes = item["geometry"], item["attributes"]
            row.version += 1
            row.updated_at = now
            row.author = author
            # A changed instance is new work: a reviewer's verdict on the old one no longer holds.
            row.review_state = row.review_reason = row.reviewed_by = None
            session.add(row)
    for row_id, row in existing.items():
        if row_id not in kept:
            row.deleted = True
            row.version += 1
            row.updated_at = now
            session.add(row)
    session.refresh(image)
    if image.status == ImageStatus.new:
        image.status = ImageStatus.in_progress
        session.add(image)
    elif reopen:
        image.status = ImageStatus.labelled
        image.meta = {**(image.meta or {}), "status_by": author}
        session.add(image)
    session.flush()
    return SaveOutcome(
        expected_version + 1,
        rejected,
        [{"index": i, "client_id": _client_id(annotations[i]), "id": r.id} for i, r in created],
    )


def _client_id(raw: object) -> Any:
    """The caller's own name for an instance, echoed back; only a short scalar."""
    cid = raw.get("client_id") if isinstance(raw, dict) else None
    if isinstance(cid, bool) or not isinstance(cid, int | str) or len(str(cid)) > 100:
        return None
    return cid


def _rejection(
    raw: object, index: int, reason: str, existing: dict[int, Annotation]
) -> dict[str, Any]:
    ann_id = raw.get("id") if isinstance(raw, dict) else None
    stored = ann_id if isinstance(ann_id, int) and ann_id in existing else None
    return {"index": index, "client_id": _client_id(raw), "id": stored, "reason": reason}


def _same(row: Annotation, item: dict[str, Any]) -> bool:
    return (
        row.class_id == item["class_id"]
        and row.geometry == item["geometry"]
        and (row.attributes or {}) == item["attributes"]
    )


def _unchanged(rows: list[Annotation], incoming: list[dict[str, Any]]) -> bool:
    """True when saving ``incoming`` over ``rows`` would change nothing."""
    by_id = {r.id: r for r in rows}
    return len(rows) == len(incoming) and all(
        item["id"] in by_id and _same(by_id[item["id"]], item) for item in incoming
    )


def _image_prediction_ids(
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


def _status(status: ImageStatus | str) -> ImageStatus:
    try:
        return ImageStatus(status)
    except ValueError:
        raise Invalid(
            f"status {status!r} must be one of {', '.join(s.value for s in ImageStatus)}"
        ) from None


def set_status(
    session: Session,
    *,
    image_id: int,
    status: ImageStatus | str,
    author: str | None,
    comment: str | None = None,
) -> Image:
    """Move an image through new → in progress → labelled → reviewed or rejected."""
    image = get_image(session, image_id)
    status = _status(status)
    check_comment_length(comment, "comment")
    if status == ImageStatus.rejected and not (comment and comment.strip()):
        raise Invalid("rejecting a photo needs a comment that tells the annotator what to fix")
    rejections.note_status_change(session, image, status, author, comment)
    image.status = status
    image.review_comment = (
        comment if status in (ImageStatus.rejected, ImageStatus.reviewed) else image.review_comment
    )
    image.updated_at = utcnow()
    image.meta = {**(image.meta or {}), "status_by": author}
    session.add(image)
    session.flush()
    return image


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
    try:
        pred.state = PredictionState(state)
    except ValueError:
        raise Invalid(
            f"state {state!r} must be one of {', '.join(s.value for s in PredictionState)}"
        ) from None
    session.add(pred)
    session.flush()
    return pred


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


# ---------- what a client sees of an image ----------


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
    """The image's predictions, best score first, each with the name of its model version."""
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
    """The summary plus ``version`` (to send back with a save), annotations and predictions."""
    return {
        **image_summary(image),
        "version": image.annotation_version,
        "annotations": annotation_dicts(session, image.id),
        "predictions": prediction_dicts(session, image.id),
    }


# ---------- rules about who may change what ----------


def _verdict(attrs: object) -> tuple[bool, str]:
    attrs = attrs if isinstance(attrs, dict) else {}
    return bool(attrs.get("fake")), str(attrs.get("fake_note") or "")


def _flagged(item: dict[str, Any]) -> bool:
    """A fake-damage flag: the verdict attribute, or a class of the fake group."""
    return _verdict(item.get("attributes"))[0] or item.get("group") == "fake"


def check_fake_edits(
    session: Session, image_id: int, incoming: list[dict[str, Any]], user: User
) -> None:
    """Raise Forbidden when ``user`` may not make the fake-damage changes in ``incoming``.

    Only fraud analysts (and leads/admins) may flag fake damage, or remove or change a flagged
    instance: its verdict, its note, its class. Others may still refine a flagged polygon's
    outline. Deleting a flagged annotation and adding it again unflagged in the same save, or
    relabelling a fake-damage class as damage, is removing the flag and needs the same role.
    """
    if user_service.can(user, Permission.fraud):
        return
    old = {a["id"]: a for a in annotation_dicts(session, image_id)}
    taxonomy = project_taxonomy(session.get(Project, get_image(session, image_id).project_id))
    kept = set()
    for i, a in enumerate(incoming):
        if not isinstance(a, dict):
            continue
        before = old.get(a.get("id"))
        kept.add(a.get("id"))
        group = _class_group(a, taxonomy)
        if before is None:
            if _flagged({**a, "group": group}):
                raise Forbidden(
                    f"annotation {i + 1}: only fraud analysts may flag fake damage (the fake "
                    "flag, a note, or a fake-damage class)"
                )
            continue
        if _verdict(a.get("attributes")) != _verdict(before["attributes"]):
            raise Forbidden(
                f"annotation {i + 1}: only fraud analysts may set or clear the fake-damage "
                "flag and note"
            )
        if _flagged(before) and _class_id(a, taxonomy) != before["class_id"]:
            raise Forbidden(
                f"annotation {i + 1} is flagged as fake damage; only fraud analysts may change "
                "its class"
            )
    for ann_id, before in old.items():
        if ann_id not in kept and _flagged(before):
            raise Forbidden(
                f"annotation {ann_id} is flagged as fake damage; only fraud analysts may delete it"
            )


def _class_id(raw: dict[str, Any], taxonomy: Taxonomy) -> int | None:
    if raw.get("class_id") is not None:
        return raw["class_id"] if isinstance(raw["class_id"], int) else None
    cls = taxonomy.get(str(raw.get("class_name")))
    return cls.id if cls else None


def _class_group(raw: dict[str, Any], taxonomy: Taxonomy) -> str | None:
    class_id = _class_id(raw, taxonomy)
    if class_id is None or isinstance(class_id, bool) or class_id not in taxonomy:
        return None
    return taxonomy.by_id(class_id).group


def _has_nonfinite(value: Any) -> bool:
    """True when a NaN or infinity hides anywhere in ``value`` (json's C encoder finds it fast)."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return True
    return False


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


def save_annotations_as(
    session: Session,
    user: User,
    *,
    project: Project,
    image_id: int,
    expected_version: int,
    annotations: list[dict[str, Any]],
    keep_going: bool = False,
) -> dict[str, Any]:
    """``user``'s save of the image's whole annotation set; returns :func:`image_detail` after it,
    plus ``rejected`` and ``created`` (:class:`SaveOutcome`).

    An outline that crosses itself, new or changed in this save, is split where it crosses
    (:func:`core.geometry.repair_geometry`, which the canvas applies too): a bow-tie becomes
    two parts rather than a zero or wrong area. With ``keep_going`` an instance that breaks a
    rule is refused alone and reported, and the rest is saved (:func:`save_annotation_set`).

    Raises NotFound for an image of another ``project``, Forbidden when the user is not a
    member of it or changes a fake-damage verdict they may not (:func:`check_fake_edits`),
    Invalid for a malformed annotation (without ``keep_going``), VersionConflict when
    ``expected_version`` is stale. Nothing is written when it raises.
    """
    require_member(session, user, project)
    get_image(session, image_id, project)
    if not keep_going:
        for i, a in enumerate(annotations):
            if not isinstance(a, dict):
                raise AnnotationInvalid(f"annotation {i + 1}: expected an object")
            if not isinstance(a.get("geometry"), list):
                raise AnnotationInvalid(
                    f"annotation {i + 1}: 'geometry' must be a list of polygons"
                )
            if _has_nonfinite(a.get("geometry")):
                raise AnnotationInvalid(f"annotation {i + 1}: a coordinate is NaN or infinite")
    check_fake_edits(session, image_id, annotations, user)
    annotations = _repaired(session, image_id, annotations)
    outcome = save_annotation_set(
        session,
        image_id=image_id,
        expected_version=expected_version,
        annotations=annotations,
        author=user.username,
        reopen_reviewed=not user_service.can(user, Permission.review),
        keep_going=keep_going,
    )
    sync_prediction_states(session, image_id, annotation_dicts(session, image_id))
    labels_changed(session, project.id)  # auto-training checks run on commit (jobs.autotrain)
    image = get_image(session, image_id)
    session.refresh(image)
    return {
        **image_detail(session, image),
        "version": outcome.version,
        "rejected": outcome.rejected,
        "created": outcome.created,
    }


def _repaired(
    session: Session, image_id: int, annotations: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``annotations`` with the self-crossing outlines of new or changed geometry split; what is
    stored unchanged stays as it is (an imported outline is the importer's business)."""
    stored = {a.id: a.geometry for a in current_annotations(session, image_id)}
    out = []
    for a in annotations:
        geom = a.get("geometry") if isinstance(a, dict) else None
        ann_id = a.get("id") if isinstance(a, dict) else None
        same = isinstance(ann_id, int) and stored.get(ann_id) == geom
        if isinstance(geom, list) and not same:
            try:
                Shape.from_json(geom)  # malformed: left for the rules to name
                a = {**a, "geometry": repair_geometry(geom)}
            except (GeometryError, TypeError, ValueError):
                pass
        out.append(a)
    return out


#: Who may move an image to each status (a permission of ``services.accounts.users``).
STATUS_PERMISSION: dict[ImageStatus, Permission] = {
    ImageStatus.new: Permission.review,
    ImageStatus.in_progress: Permission.annotate,
    ImageStatus.labelled: Permission.annotate,
    ImageStatus.reviewed: Permission.review,
    ImageStatus.rejected: Permission.review,
}


def check_status_permission(user: User, status: ImageStatus | str) -> None:
    """Raise Forbidden when ``user``'s role may not move an image to ``status``."""
    status = _status(status)
    if not user_service.can(user, STATUS_PERMISSION[status]):
        raise Forbidden(f"Your role ({user.role.value}) may not set status {status.value}.")


def set_status_as(
    session: Session,
    user: User,
    *,
    project: Project,
    image_id: int,
    status: ImageStatus | str,
    comment: str | None = None,
) -> Image:
    """:func:`set_status` of an image of ``project`` (else NotFound) after
    :func:`check_status_permission` and the user's membership, recorded as ``user``'s."""
    require_member(session, user, project)
    get_image(session, image_id, project)
    check_status_permission(user, status)
    if _status(status) == ImageStatus.reviewed and (
        refused := rejections.rejected_instances(session, image_id)
    ):
        raise Invalid(
            f"{len(refused)} instance(s) of this photo are rejected (ids "
            f"{', '.join(str(a.id) for a in refused)}); accept them, or reject the photo"
        )
    image = set_status(
        session, image_id=image_id, status=status, author=user.username, comment=comment
    )
    labels_changed(session, project.id)  # a photo marked labelled adds its polygons
    return image
