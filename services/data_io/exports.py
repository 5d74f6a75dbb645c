"""Exporting a project's labels as COCO, YOLO segmentation, Label Studio JSON or CVAT XML.

``services.training.records.collect_records`` reads the store into format-neutral ``ImageRecord``s; the pure
converters in ``exports/`` turn those into files. Files are written to a temporary name
and renamed, so a failed export never leaves a half-written file behind; a stored number an
exporter will not write (NaN, infinite, far outside its photo: ``exports.bounds``) refuses the
export as Invalid, naming the photo and the annotation.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import orjson
from sqlmodel import Session

from core.bulk import without_gc
from core.config import env_name, get_settings
from core.files import write_bytes_atomic, write_text_atomic
from core.records import ImageRecord
from db.models import Project, User
from exports.errors import ExportRefused
from services.accounts.projects import project_taxonomy, require_member
from services.accounts.users import Permission, can
from services.errors import Forbidden, Invalid, NotFound
from services.training.records import collect_records


@contextmanager
def refused_as_invalid() -> Iterator[None]:
    """An exporter's refusal of a number it will not write (``exports.bounds``) as Invalid,
    its sentence naming the photo and the instance."""
    try:
        yield
    except ExportRefused as e:
        raise Invalid(f"export refused: {e}") from None


@without_gc
def export_coco(
    session: Session, project: Project, out_path: str | Path, **filters
) -> dict[str, int]:
    from exports import coco

    records = collect_records(session, project, **filters)
    with refused_as_invalid():
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
    with refused_as_invalid():
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
    image_url_fn: Callable[[ImageRecord], str] | None = None,
    **filters,
) -> dict[str, int]:
    """Label Studio tasks at ``out_path``, the labelling config beside it (``.config.xml``)
    and a ``.README.txt`` that says how to load both and where the images are served from.

    Each task's image URL is ``image_url_fn(record)`` when given, else the photo's path
    below the document root (:func:`label_studio_document_root`), after the setting
    ``label_studio_image_url`` when set, else as Label Studio's ``/data/local-files/?d=``.
    Raises Invalid when a photo lies outside the document root the settings name.
    """
    from exports import label_studio

    records = collect_records(session, project, include_predictions=include_predictions, **filters)
    taxonomy = project_taxonomy(project)
    root = label_studio_document_root(records)
    with refused_as_invalid():
        tasks = label_studio.build_tasks(
            records,
            taxonomy,
            include_predictions=include_predictions,
            image_url_fn=image_url_fn or (lambda r: _label_studio_url(r, root)),
        )
    out_path = Path(out_path)
    write_text_atomic(out_path, json.dumps(tasks, indent=1))
    write_text_atomic(out_path.with_suffix(".config.xml"), label_studio.labeling_config(taxonomy))
    write_text_atomic(out_path.with_suffix(".README.txt"), _label_studio_readme(out_path, root))
    return {"tasks": len(tasks), "annotations": sum(len(r.instances) for r in records)}


@without_gc
def export_cvat(
    session: Session,
    project: Project,
    out_path: str | Path,
    *,
    zipped: bool | None = None,
    **filters,
) -> dict[str, int]:
    """CVAT for images 1.1 XML at ``out_path``; with ``zipped`` (the default for a ``.zip``
    path) a zip as CVAT's own export lays it out, ``annotations.xml`` and ``images/``.
    Raises Invalid, writing nothing, for a number it will not write or a missing photo."""
    from exports import cvat
    from exports.errors import FormatError

    out_path = Path(out_path)
    records = collect_records(session, project, **filters)
    zipped = out_path.suffix.lower() == ".zip" if zipped is None else zipped
    with refused_as_invalid():
        try:
            cvat.write(records, project_taxonomy(project), out_path, zipped=zipped)
        except FormatError as e:
            raise Invalid(f"export refused: {e}") from None
    return {"images": len(records), "annotations": sum(len(r.instances) for r in records)}


def label_studio_document_root(records: list[ImageRecord]) -> Path:
    """The folder a Label Studio export's image URLs are relative to: the setting
    ``label_studio_document_root`` when set, else the deepest folder that holds every
    exported photo (``meta["path"]``; the data dir when there are none).

    Raises Invalid naming the setting when the photos share no folder but the file
    system's root, which Label Studio refuses to serve.
    """
    settings = get_settings()
    if settings.label_studio_document_root is not None:
        return settings.label_studio_document_root.expanduser().resolve()
    folders = [str(Path(r.meta["path"]).resolve().parent) for r in records]
    if not folders:
        return settings.data_dir.expanduser().resolve()
    root = Path(os.path.commonpath(folders))
    if root == Path(root.anchor):
        raise Invalid(
            "the photos to export share no folder but the root of the file system, which "
            "Label Studio will not serve; set "
            f"{env_name('label_studio_document_root')} to a folder that holds them all "
            "(or move them into one), or export fewer photos with the filters"
        )
    return root


def _label_studio_url(record: ImageRecord, root: Path) -> str:
    from exports import label_studio

    try:
        return label_studio.image_url(
            record.meta["path"], root, get_settings().label_studio_image_url
        )
    except ValueError as e:
        raise Invalid(
            f"photo {record.file_name} ({record.meta['path']}) is not below the Label Studio "
            f"document root {root} (setting {env_name('label_studio_document_root')}); set "
            "it to a folder that holds every photo, or leave it unset to use the folder the "
            "exported photos share"
        ) from e


def _label_studio_readme(tasks: Path, root: Path) -> str:
    """How to load a Label Studio export into Label Studio, naming its files and the
    document root its image URLs assume."""
    base_url = get_settings().label_studio_image_url
    if base_url:
        where = (
            f"3. The image URLs are {base_url.rstrip('/')}/<path below {root}> (setting "
            f"{env_name('label_studio_image_url')}): that server must serve {root}."
        )
    else:
        where = (
            "3. The image URLs are Label Studio's own /data/local-files/?d=<path below the "
            f"document root>, with the document root {root}. Start Label Studio with\n"
            "   LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true\n"
            f"   LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root}\n"
            "   and add a Local files storage (Settings > Cloud Storage) whose path is that "
            "folder or one below it holding the photos; do not sync it, the tasks are "
            "imported already."
        )
    return (
        "Label Studio tasks exported by panelbeater.\n"
        f"1. Create a project; under Settings > Labeling Interface > Code, paste "
        f"{tasks.with_suffix('.config.xml').name}.\n"
        f"2. Import {tasks.name} (Import > Upload files).\n"
        f"{where}\n"
    )


#: The formats :func:`export_archive` writes, as the API and the dashboard name them.
EXPORT_FORMATS = ("coco", "yolo", "label-studio", "cvat")


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
        ``<project>-coco.json``, ``<project>-label-studio.zip`` (the tasks JSON, the labelling
        config XML and a README saying how to load them and where the photos are served from)
        ``<project>-yolo.zip`` (the YOLO folder, zipped) or ``<project>-cvat.zip`` (CVAT for images
    1.1: ``annotations.xml`` and the photos in ``images/``, as CVAT's own export). Empty filters are ignored.

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
    if fmt == "cvat":
        out = out_dir / f"{project.name}-cvat.zip"
        export_cvat(session, project, out, zipped=True, **filters)
        return ExportFile(out, "application/zip")
    if fmt == "label-studio":
        folder = out_dir / "label-studio"
        folder.mkdir()
        tasks = folder / f"{project.name}-label-studio.json"
        export_label_studio(session, project, tasks, **filters)
        zipped = shutil.make_archive(str(out_dir / f"{project.name}-label-studio"), "zip", folder)
        return ExportFile(Path(zipped), "application/zip")
    export_yolo(session, project, out_dir / "yolo", **filters)
    zipped = shutil.make_archive(str(out_dir / f"{project.name}-yolo"), "zip", out_dir / "yolo")
    return ExportFile(Path(zipped), "application/zip")


def check_export_download(session: Session, user: User, project_id: int) -> Project:
    """The project whose export ``user`` fetches by its link, once they may: an export holds
    a whole project's labels, so it takes what making one takes, the export permission and
    membership of that project. Raises Forbidden, or NotFound for a project that is gone."""
    if not can(user, Permission.export):
        raise Forbidden(
            f"Your role ({user.role.value}) may not download exports; ask a lead or admin."
        )
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound("This export's project no longer exists.")
    require_member(session, user, project)
    return project
