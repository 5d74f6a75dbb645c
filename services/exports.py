"""Exporting a project's labels as COCO, YOLO segmentation or Label Studio JSON.

``collect_records`` reads the store into format-neutral ``ImageRecord``s; the pure
converters in ``exports/`` turn those into files. Files are written to a temporary name
and renamed, so a failed export never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sqlalchemy import String, type_coerce
from sqlmodel import Session, select

from core.geometry import Shape
from core.instances import Instances
from core.records import SPLITS, ImageRecord
from core.taxonomy import GROUPS
from db.models import Annotation, Image, ImageStatus, ModelVersion, Prediction, Project
from services.bulk import without_gc
from services.errors import Invalid
from services.projects import project_taxonomy


def _check_filters(split: str | None, group: str | None, status: str | None) -> None:
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
    ``include_predictions``, ``meta["predictions"]`` is a list of
    ``{"model_version": name, "instances": Instances}`` of pending predictions.
    """
    _check_filters(split, group, status)
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
        rows = by_image.get(img.id, [])
        instances = (
            Instances(
                shapes=[Shape.from_json(g, trusted=True) for _, _, g, _ in rows],
                class_ids=np.array([c for _, c, _, _ in rows], dtype=np.int64),
                attributes=[_attributes(a) for *_, a in rows],
                data={"annotation_id": [i for i, *_ in rows]},
            )
            if rows
            else Instances.empty()
        )
        meta: dict[str, Any] = {"path": img.path, "image_id": img.id, "status": img.status.value}
        if include_predictions:
            meta["predictions"] = preds_by_image.get(img.id, [])
        records.append(
            ImageRecord(
                file_name=img.file_name,
                width=img.width,
                height=img.height,
                instances=instances,
                split=img.split,
                sha256=img.sha256,
                meta=meta,
            )
        )
    return records


def _attributes(raw: str | dict | None) -> dict[str, Any]:
    # SQLite hands back the text; PostgreSQL's driver has already decoded the JSON.
    if isinstance(raw, str):
        return orjson.loads(raw) if raw != "{}" else {}
    return dict(raw or {})


def _pending_predictions(
    session: Session, image_ids: set[int], group: str | None
) -> dict[int, list[dict]]:
    stmt = (
        select(Prediction, ModelVersion.name)
        .join(ModelVersion, ModelVersion.id == Prediction.model_version_id)
        .where(Prediction.state == "pending")
    )
    if group:
        stmt = stmt.where(Prediction.group == group)
    grouped: dict[tuple[int, str], list[Prediction]] = defaultdict(list)
    for pred, version_name in session.exec(stmt):
        if pred.image_id in image_ids:
            grouped[(pred.image_id, version_name)].append(pred)
    out: dict[int, list[dict]] = defaultdict(list)
    for (image_id, version_name), preds in grouped.items():
        out[image_id].append(
            {
                "model_version": version_name,
                "instances": Instances(
                    shapes=[Shape.from_json(p.geometry, trusted=True) for p in preds],
                    class_ids=np.array([p.class_id for p in preds]),
                    scores=np.array([p.score for p in preds]),
                    data={"prediction_id": [p.id for p in preds]},
                ),
            }
        )
    return out


def _atomic_write_text(path: Path, text: str) -> None:
    _atomic_write_bytes(path, text.encode("utf-8"))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@without_gc
def export_coco(
    session: Session, project: Project, out_path: str | Path, **filters
) -> dict[str, int]:
    from exports import coco

    records = collect_records(session, project, **filters)
    data = coco.build(records, project_taxonomy(project))
    _atomic_write_bytes(Path(out_path), orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY))
    return {"images": len(data["images"]), "annotations": len(data["annotations"])}


@without_gc
def export_yolo(
    session: Session, project: Project, out_dir: str | Path, *, copy_images: bool = True, **filters
) -> dict[str, int]:
    from exports import yolo

    group = filters.get("group")
    records = collect_records(session, project, **filters)
    yolo.write(
        records, project_taxonomy(project), Path(out_dir), copy_images=copy_images, group=group
    )
    return {"images": len(records), "annotations": sum(len(r.instances) for r in records)}


@without_gc
def export_label_studio(
    session: Session,
    project: Project,
    out_path: str | Path,
    *,
    include_predictions: bool = False,
    image_url_fn=None,
    **filters,
) -> dict[str, int]:
    from exports import label_studio

    records = collect_records(session, project, include_predictions=include_predictions, **filters)
    taxonomy = project_taxonomy(project)
    kwargs = {"include_predictions": include_predictions}
    if image_url_fn is not None:
        kwargs["image_url_fn"] = image_url_fn
    tasks = label_studio.build_tasks(records, taxonomy, **kwargs)
    out_path = Path(out_path)
    _atomic_write_text(out_path, json.dumps(tasks, indent=1))
    _atomic_write_text(out_path.with_suffix(".config.xml"), label_studio.labeling_config(taxonomy))
    return {"tasks": len(tasks), "annotations": sum(len(r.instances) for r in records)}
