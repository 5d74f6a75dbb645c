"""The project's photos and labels as ``ImageRecord``s with ``Instances``: what training
reads (``services.training.model_runs``) and what every export writes
(``services.data_io.exports``)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
from sqlalchemy import String, type_coerce
from sqlmodel import Session, select

from core.bulk import without_gc
from core.instances import Instances
from core.records import SPLITS, ImageRecord
from core.taxonomy import GROUPS
from db.models import Annotation, Image, ImageStatus, ModelVersion, Prediction, Project
from services.errors import Invalid
from services.labelling.readers import dicts_to_instances
from services.training.predictions import predictions_by_image


def check_filters(split: str | None, group: str | None, status: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise Invalid(f"--split {split!r} must be one of {', '.join(SPLITS)}")
    if group is not None and group not in GROUPS:
        raise Invalid(f"--group {group!r} must be one of {', '.join(GROUPS)}")
    if status is not None:
        for s in status.split(","):
            if s not in ImageStatus.__members__:
                raise Invalid(f"--status {s!r} must be one of {', '.join(ImageStatus.__members__)}")


@without_gc
def collect_records(
    session: Session,
    project: Project,
    *,
    split: str | None = None,
    group: str | None = None,
    status: str | None = None,
    include_predictions: bool = False,
) -> list[ImageRecord]:
    """The project's images with their current annotations as records.

    ``meta["path"]`` is the image file's absolute path and ``meta["image_id"]`` its id; with
    ``include_predictions``, ``meta["predictions"]`` is an :class:`Instances` of the image's
    pending predictions, each version's name in ``data["model_version"]``.
    """
    check_filters(split, group, status)
    img_stmt = select(Image).where(Image.project_id == project.id)
    if split:
        img_stmt = img_stmt.where(Image.split == split)
    if status:
        img_stmt = img_stmt.where(Image.status.in_([ImageStatus(s) for s in status.split(",")]))
    images = list(session.exec(img_stmt.order_by(Image.import_order, Image.id)))
    wanted = {img.id for img in images}

    # Attributes come back as text and are parsed only when not empty: most are "{}".
    ann_stmt = select(
        Annotation.image_id,
        Annotation.id,
        Annotation.class_id,
        Annotation.geometry,
        type_coerce(Annotation.attributes, String),
    ).where(Annotation.deleted == False)  # noqa: E712
    if group:
        ann_stmt = ann_stmt.where(Annotation.group == group)
    if split or status:
        ann_stmt = ann_stmt.where(Annotation.image_id.in_(wanted))
    by_image: dict[int, list[tuple]] = defaultdict(list)
    for image_id, ann_id, class_id, geometry, attributes in session.exec(
        ann_stmt.order_by(Annotation.id)
    ):
        if image_id in wanted:
            by_image[image_id].append((ann_id, class_id, geometry, attributes))

    preds_by_image = _pending_predictions(session, wanted, group) if include_predictions else {}
    records = []
    for img in images:
        instances = dicts_to_instances(
            [
                {"id": ann_id, "class_id": c, "geometry": g, "attributes": _attributes(a)}
                for ann_id, c, g, a in by_image.get(img.id, [])
            ]
        )
        meta: dict[str, Any] = {}
        # a photo's tags as CVAT gave them (kept with its source metadata at import), so a
        # CVAT export carries them back
        tags = ((img.meta or {}).get("source_meta") or {}).get("cvat_tags")
        if tags:
            meta["cvat_tags"] = list(tags)
        if include_predictions:
            meta["predictions"] = preds_by_image.get(img.id, Instances.empty())
        records.append(image_record(img, instances, **meta))
    return records


def image_record(img: Image, instances: Instances, **meta: Any) -> ImageRecord:
    """``img`` as a training record holding ``instances``; ``meta`` carries at least the
    photo's ``path``, ``image_id`` and ``status`` (more when given)."""
    return ImageRecord(
        file_name=img.file_name,
        width=img.width,
        height=img.height,
        instances=instances,
        split=img.split,
        sha256=img.sha256,
        meta={"path": img.path, "image_id": img.id, "status": img.status.value, **meta},
    )


def _attributes(raw: str | dict | None) -> dict[str, Any]:
    # SQLite hands back the text; PostgreSQL's driver has already decoded the JSON.
    if isinstance(raw, str):
        return orjson.loads(raw) if raw != "{}" else {}
    return dict(raw or {})


def _pending_predictions(
    session: Session, image_ids: set[int], group: str | None
) -> dict[int, Instances]:
    """Image id -> its pending predictions of every model version, with the version's name
    in ``data["model_version"]`` (see :func:`services.training.predictions.rows_to_instances`)."""
    stmt = (
        select(Prediction, ModelVersion.name)
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(Prediction.state == "pending")
    )
    if group:
        stmt = stmt.where(Prediction.group == group)
    rows, names = [], {}
    for pred, version_name in session.exec(stmt.order_by(Prediction.id)):
        if pred.image_id in image_ids:
            rows.append(pred)
            names[pred.model_version_id] = version_name
    out = predictions_by_image(rows)
    for inst in out.values():
        inst.data["model_version"] = [names[v] for v in inst.data["model_version_id"]]
    return out
