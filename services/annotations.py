"""Reading and saving an image's annotations, with optimistic locking and history.

A save replaces the image's whole annotation set at once (what the workspace autosaves).
It succeeds only if the caller saw the current ``Image.annotation_version``; the set as it
was before is kept as an ``AnnotationRevision``, and removed annotations are soft-deleted,
so no save can destroy earlier work.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sqlalchemy import update
from sqlmodel import Session, select

from core.geometry import GeometryError, Shape
from core.instances import SEVERITIES, Instances
from core.taxonomy import Taxonomy, TaxonomyError
from db.models import (
    Annotation,
    AnnotationRevision,
    AnnotationSource,
    Image,
    ImageStatus,
    Prediction,
    PredictionState,
    utcnow,
)
from services.errors import Invalid, NotFound, VersionConflict
from services.projects import project_taxonomy

__all__ = [
    "AnnotationInvalid",
    "VersionConflict",
    "annotation_dicts",
    "get_image",
    "image_instances",
    "normalise_annotation",
    "save_annotations",
    "set_prediction_state",
    "set_status",
]

MAX_NOTE_LENGTH = 2000


class AnnotationInvalid(Invalid):
    """An annotation in a save request that cannot be stored."""


def get_image(session: Session, image_id: int) -> Image:
    image = session.get(Image, image_id)
    if image is None:
        raise NotFound(f"image {image_id} does not exist")
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


def image_instances(session: Session, image_id: int) -> Instances:
    rows = current_annotations(session, image_id)
    if not rows:
        return Instances.empty()
    return Instances(
        shapes=[Shape.from_json(a.geometry, trusted=True) for a in rows],
        class_ids=np.array([a.class_id for a in rows]),
        attributes=[dict(a.attributes or {}) for a in rows],
        data={"annotation_id": [a.id for a in rows], "source": [a.source for a in rows]},
    )


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
    note = out.get("fake_note")
    if note is not None:
        if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH:
            raise AnnotationInvalid(
                f"{where}: fake_note must be text of at most {MAX_NOTE_LENGTH} characters"
            )
    return out


def normalise_annotation(
    raw: dict[str, Any], taxonomy: Taxonomy, index: int, image: Image
) -> dict[str, Any]:
    """Validate one incoming annotation; raises AnnotationInvalid naming the field."""
    where = f"annotation {index + 1}"
    if not isinstance(raw, dict):
        raise AnnotationInvalid(f"{where}: expected an object")
    cls = None
    if raw.get("class_id") is not None:
        try:
            cls = taxonomy.by_id(int(raw["class_id"]))
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
        shape = Shape.from_json(raw.get("geometry"))
    except GeometryError as e:
        raise AnnotationInvalid(f"{where}: {e}") from None
    x0, y0, x1, y1 = shape.bbox
    # partly-outside polygons are fine; far-off ones are a bug
    slack = 0.5 * max(image.width, image.height)
    if x1 < -slack or y1 < -slack or x0 > image.width + slack or y0 > image.height + slack:
        raise AnnotationInvalid(
            f"{where}: polygon lies outside the {image.width}x{image.height} image"
        )
    if not math.isfinite(shape.area) or shape.area <= 0:
        raise AnnotationInvalid(f"{where}: polygon has zero area")
    source = raw.get("source") or AnnotationSource.manual.value
    try:
        source = AnnotationSource(source)
    except ValueError:
        raise AnnotationInvalid(
            f"{where}: source {source!r} must be one of {', '.join(s.value for s in AnnotationSource)}"
        ) from None
    return {
        "id": raw.get("id"),
        "class_id": cls.id,
        "group": cls.group,
        "geometry": shape.to_json(),
        "attributes": normalise_attributes(raw.get("attributes"), taxonomy, where),
        "source": source,
        "prediction_id": raw.get("prediction_id"),
    }


def save_annotations(
    session: Session,
    *,
    image_id: int,
    expected_version: int,
    annotations: list[dict[str, Any]],
    author: str | None,
    reason: str = "save",
) -> int:
    """Replace the image's annotation set; returns the new ``annotation_version``.

    Raises VersionConflict when ``expected_version`` is stale, AnnotationInvalid when an
    annotation is malformed (nothing is written then).
    """
    image = get_image(session, image_id)
    from db.models import Project

    taxonomy = project_taxonomy(session.get(Project, image.project_id))
    incoming = [normalise_annotation(a, taxonomy, i, image) for i, a in enumerate(annotations)]

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

    existing = {a.id: a for a in current_annotations(session, image_id)}
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
    kept: set[int] = set()
    for item in incoming:
        row = existing.get(item["id"]) if item["id"] is not None else None
        if item["id"] is not None and row is None:
            raise AnnotationInvalid(
                f"annotation id {item['id']} does not belong to image {image_id} (or was deleted)"
            )
        if row is None:
            session.add(
                Annotation(
                    image_id=image_id,
                    class_id=item["class_id"],
                    group=item["group"],
                    geometry=item["geometry"],
                    attributes=item["attributes"],
                    source=item["source"],
                    author=author,
                    prediction_id=item["prediction_id"],
                )
            )
            continue
        kept.add(row.id)
        changed = (
            row.class_id != item["class_id"]
            or row.geometry != item["geometry"]
            or (row.attributes or {}) != item["attributes"]
        )
        if changed:
            row.class_id, row.group = item["class_id"], item["group"]
            row.geometry, row.attributes = item["geometry"], item["attributes"]
            row.version += 1
            row.updated_at = now
            row.author = author
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
    session.flush()
    return expected_version + 1


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
    try:
        status = ImageStatus(status)
    except ValueError:
        raise Invalid(
            f"status {status!r} must be one of {', '.join(s.value for s in ImageStatus)}"
        ) from None
    if status == ImageStatus.rejected and not (comment and comment.strip()):
        raise Invalid("rejecting a photo needs a comment that tells the annotator what to fix")
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
    session: Session, *, prediction_id: int, state: PredictionState | str
) -> Prediction:
    pred = session.get(Prediction, prediction_id)
    if pred is None:
        raise NotFound(f"prediction {prediction_id} does not exist")
    try:
        pred.state = PredictionState(state)
    except ValueError:
        raise Invalid(
            f"state {state!r} must be one of {', '.join(s.value for s in PredictionState)}"
        ) from None
    session.add(pred)
    session.flush()
    return pred
