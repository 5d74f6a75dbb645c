"""Exporting a project's labels as COCO, YOLO segmentation or Label Studio JSON.

``collect_records`` reads the store into format-neutral ``ImageRecord``s; the pure
converters in ``exports/`` turn those into files. Files are written to a temporary name
and renamed, so a failed export never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sqlalchemy import String, type_coerce
from sqlmodel import Session, select

from core.files import write_bytes_atomic, write_text_atomic
from core.geometry import Shape
from core.instances import Instances
from core.records import SPLITS, ImageRecord
from core.taxonomy import GROUPS
from db.models import Annotation, Image, ImageStatus, ModelVersion, Prediction, Project
from services.bulk import without_gc
from services.errors import Invalid, NotFound
from services.predictions import predictions_by_image
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
    ``include_predictions``, ``meta["predictions"]`` is an :class:`Instances` of the image's
    pending predictions, each version's name in ``data["model_version"]``.
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
            meta["predictions"] = preds_by_image.get(img.id, Instances.empty())
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
) -> dict[int, Instances]:
    """Image id -> its pending predictions of every model version, with the version's name
    in ``data["model_version"]`` (see :func:`services.predictions.rows_to_instances`)."""
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


@without_gc
def export_coco(
    session: Session, project: Project, out_path: str | Path, **filters
) -> dict[str, int]:
    from exports import coco

    records = collect_records(session, project, **filters)
    data = coco.build(records, project_taxonomy(project))
    write_bytes_atomic(Path(out_path), orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY))
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
    write_text_atomic(out_path, json.dumps(tasks, indent=1))
    write_text_atomic(out_path.with_suffix(".config.xml"), label_studio.labeling_config(taxonomy))
    return {"tasks": len(tasks), "annotations": sum(len(r.instances) for r in records)}


#: The formats :func:`export_archive` writes, as the API and the dashboard name them.
EXPORT_FORMATS = ("coco", "yolo", "label-studio")


@dataclass(frozen=True)
class ExportFile:
    """One downloadable file: its path and its media type."""

    path: Path
    media_type: str


def export_archive(
    session: Session,
    project: Project,
    fmt: str,
    out_dir: str | Path,
    *,
    split: str | None = None,
    group: str | None = None,
    status: str | None = None,
) -> ExportFile:
    """The project's labels in ``fmt`` as one file in ``out_dir``, ready to download:
    ``<project>-coco.json``, ``<project>-label-studio.json`` (its labelling config beside it)
    or ``<project>-yolo.zip`` (the YOLO folder, zipped). Empty filters are ignored.

    Raises NotFound naming the formats for an unknown ``fmt``, Invalid for a bad filter.
    """
    if fmt not in EXPORT_FORMATS:
        raise NotFound(f"unknown export format {fmt!r}; use one of {', '.join(EXPORT_FORMATS)}")
    out_dir = Path(out_dir)
    filters = {k: v for k, v in {"split": split, "group": group, "status": status}.items() if v}
    if fmt == "coco":
        out = out_dir / f"{project.name}-coco.json"
        export_coco(session, project, out, **filters)
        return ExportFile(out, "application/json")
    if fmt == "label-studio":
        out = out_dir / f"{project.name}-label-studio.json"
        export_label_studio(session, project, out, **filters)
        return ExportFile(out, "application/json")
    export_yolo(session, project, out_dir / "yolo", **filters)
    zipped = shutil.make_archive(str(out_dir / f"{project.name}-yolo"), "zip", out_dir / "yolo")
    return ExportFile(Path(zipped), "application/zip")
