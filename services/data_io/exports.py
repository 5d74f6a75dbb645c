"""Exporting a project's labels as COCO, YOLO segmentation or Label Studio JSON.

``services.training.records.collect_records`` reads the store into format-neutral ``ImageRecord``s; the pure
converters in ``exports/`` turn those into files. Files are written to a temporary name
and renamed, so a failed export never leaves a half-written file behind.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlmodel import Session

from core.bulk import without_gc
from core.files import write_bytes_atomic, write_text_atomic
from db.models import Project
from services.accounts.projects import project_taxonomy
from services.errors import NotFound
from services.training.records import collect_records


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
