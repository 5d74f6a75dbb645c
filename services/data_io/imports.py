"""Importing images and labels into a project, all-or-nothing per import.

Each ``import_*`` function parses its format with the pure converter in ``exports/``,
resolves labels through the taxonomy and an optional map file (an unknown label stops
the import before anything is written, listing every unknown label), reads and hashes
each image (a corrupt or missing file is reported by name and the rest goes on), and then
writes everything in one transaction. Importing the same file twice changes nothing:
images are deduplicated by content hash and instances by class and geometry. Two photos of
one import with the same bytes are kept once, and the second one's labels are left out (and
reported) unless the first has them too: the same photo labelled twice would otherwise hold
every part twice. The ``duplicates="merge"`` option adds them to the kept photo instead.

Inputs are bounded, and a bad entry is reported by name while the rest is imported:

- every image path must stay inside the images folder (``../x``, absolute paths and
  symbolic links that lead out are refused, with the same words whether or not the
  outside file exists);
- images are read only from regular files, within the byte and pixel limits of the
  settings (``exports.image_files``), so a pipe, a device or a decompression bomb is one
  reported bad file;
- instances are checked as the save path checks them (``core.geometry.fit_to_image`` and
  ``services.labelling.validation.normalise_attributes``), so every imported photo saves again as
  it is; a polygon reaching far outside its image is clipped to it, and a photo holds at
  most ``max_polygons_per_image`` polygons (each part and each hole counted).

Statuses (``import_status`` and ``_status_after_import``): a photo whose entry in a label
file brings at least one instance becomes ``labelled``, so a labelled dataset trains at
once; a photo without labels (none in the file, a folder, an upload) stays ``new``. The
``status`` option (``new``, ``in_progress``, ``labelled`` or ``reviewed``) sets every photo
of the import to that status instead. Either way an import only moves a photo forward
along new < in_progress < labelled < reviewed, never back, and never moves a ``rejected``
photo: a reviewer's rejection and its comment stand until someone fixes the photo. A
change is recorded as any status change is (``meta["status_by"] = "import:<file>"``).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import func
from sqlmodel import Session, select

from core.bulk import without_gc
from core.config import env_name, get_settings
from core.files import write_bytes_atomic
from core.geometry import GeometryError, fit_to_image, geometry_counts
from core.records import ImageRecord, LabelResolver, ParseReport
from core.taxonomy import Taxonomy
from db.models import (
    LABELLED_STATUSES,
    Annotation,
    AnnotationSource,
    Image,
    ImageStatus,
    Project,
    utcnow,
)
from exports.errors import FormatError, ImageReadError
from exports.file_names import safe_base_name, safe_file_name
from exports.image_files import (
    ImageInfo,
    image_info_from_bytes,
    is_image_file,
    list_image_files,
    read_image_info,
    read_regular_file,
    resolve_inside,
)
from exports.splits import split_for
from services.accounts.projects import project_taxonomy
from services.errors import Invalid
from services.events import labels_changed
from services.labelling.validation import normalise_attributes

Progress = Callable[[int, int], None]


@dataclass
class ImportReport:
    source: str
    images_added: int = 0
    images_skipped: int = 0
    images_failed: int = 0
    instances_added: int = 0
    instances_skipped: int = 0
    instances_failed: int = 0
    #: Photos this import made count as labelled (moved to labelled, or to reviewed).
    images_labelled: int = 0
    #: The photos this import names, counted by their status after it (a labelled import).
    statuses: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def summary(self) -> str:
        return (
            f"{self.source}: images {self.images_added} added, {self.images_skipped} skipped, "
            f"{self.images_failed} failed; instances {self.instances_added} added, "
            f"{self.instances_skipped} skipped, {self.instances_failed} failed; "
            f"{self.images_labelled} photo(s) now labelled"
        )


#: The order an import may move a photo along; it never moves one back.
_STATUS_RANK = {
    ImageStatus.new: 0,
    ImageStatus.in_progress: 1,
    ImageStatus.labelled: 2,
    ImageStatus.reviewed: 3,
}
#: The statuses an import may set (``rejected`` needs a reviewer's comment).
IMPORT_STATUSES: tuple[str, ...] = tuple(s.value for s in _STATUS_RANK)

#: What an import does with the labels of a photo whose bytes an earlier photo of the same
#: import has: ``skip`` leaves them out (reported) unless they match the kept photo's labels;
#: ``merge`` adds them to the kept photo.
DUPLICATES_SKIP, DUPLICATES_MERGE = "skip", "merge"
DUPLICATE_RULES: tuple[str, ...] = (DUPLICATES_SKIP, DUPLICATES_MERGE)


def duplicates_rule(value: str | None) -> str:
    """The ``duplicates`` option of an import, checked; None (or "") means ``skip``."""
    if value is None or value == "":
        return DUPLICATES_SKIP
    if value not in DUPLICATE_RULES:
        raise Invalid(
            f"duplicates {value!r} must be skip (leave out the labels of a photo whose bytes "
            "another photo of the import has, unless they match its labels) or merge (add "
            "them to that photo)"
        )
    return value


def import_status(status: ImageStatus | str | None) -> ImageStatus | None:
    """The ``status`` option of an import, checked; None (or "") means the default rule:
    ``labelled`` for a photo that arrives with labels, ``new`` for one without."""
    if status is None or status == "":
        return None
    try:
        checked = ImageStatus(status)
    except ValueError:
        checked = None
    if checked not in _STATUS_RANK:
        raise Invalid(
            f"status {getattr(status, 'value', status)!r} must be one of "
            f"{', '.join(IMPORT_STATUSES)} (or left out: labelled photos become labelled, "
            "the others stay new)"
        )
    return checked


def _status_after_import(current: ImageStatus | None, target: ImageStatus) -> ImageStatus | None:
    """The status a photo takes when an import asks for ``target``, or None to leave it:
    a new photo takes ``target``; a known one only moves forward, and a rejected one not
    at all (its rejection waits for a fix, not for a re-import)."""
    if current is None:
        return target
    if current not in _STATUS_RANK or _STATUS_RANK[target] <= _STATUS_RANK[current]:
        return None
    return target


def read_json(path: Path) -> Any:
    try:
        raw = read_regular_file(
            path,
            limit=get_settings().max_label_file_bytes,
            what="label file",
            setting="max_label_file_bytes",
        )
    except ImageReadError as e:
        raise FormatError(str(e)) from e
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise FormatError(f"{path}: not valid JSON ({e}); is it the right file?") from e


@without_gc
def import_folder(
    session: Session,
    project: Project,
    path: str | Path,
    *,
    label_map=None,
    progress: Progress | None = None,
    status: ImageStatus | str | None = None,
    **_,
) -> ImportReport:
    """Every image under ``path`` (recursively), without labels: ``new`` unless ``status``
    says otherwise."""
    asked = import_status(status)
    folder = Path(path)
    if not folder.is_dir():
        raise FormatError(f"{folder}: not a folder")
    records = [
        ImageRecord(file_name=str(p.relative_to(folder)), width=0, height=0)
        for p in list_image_files(folder)
    ]
    return store_photo(
        session,
        project,
        records,
        ParseReport(),
        folder,
        str(folder),
        AnnotationSource.imported,
        progress,
        status=asked,
    )


def _import_labelled(
    session: Session,
    project: Project,
    path: str | Path,
    parse: Callable[..., tuple[list[ImageRecord], ParseReport]],
    *,
    images_dir: str | Path | None,
    label_map: dict[str, str] | None,
    progress: Progress | None,
    reads_json: bool = True,
    passes_images_dir: bool = False,
    status: ImageStatus | str | None = None,
    duplicates: str | None = None,
) -> ImportReport:
    """Parse a label file with ``parse``, stop on unknown labels, then store it."""
    asked = import_status(status)
    rule = duplicates_rule(duplicates)
    path = Path(path)
    images_dir = Path(images_dir or path.parent)
    resolver = LabelResolver(project_taxonomy(project), label_map)
    source = read_json(path) if reads_json else path
    extra = {"images_dir": images_dir} if passes_images_dir else {}
    records, report = parse(source, resolver, source=str(path), **extra)
    resolver.raise_if_unknown(str(path))
    resolver.finish(records)  # side-less labels: their class with ``side: unknown``
    return store_photo(
        session,
        project,
        records,
        report,
        images_dir,
        str(path),
        AnnotationSource.imported,
        progress,
        status=asked,
        duplicates=rule,
    )


def _labelled_importer(
    fmt: str, doc: str, *, reads_json: bool = True, passes_images_dir: bool = False
) -> Callable[..., ImportReport]:
    """``import_<fmt>(session, project, path, *, images_dir=None, label_map=None,
    progress=None, status=None, duplicates=None)`` over the pure converter
    ``exports.<fmt>.parse``."""

    @without_gc
    def run(
        session,
        project,
        path,
        *,
        images_dir=None,
        label_map=None,
        progress=None,
        status=None,
        duplicates=None,
    ) -> ImportReport:
        parse = importlib.import_module(f"exports.{fmt}").parse
        return _import_labelled(
            session,
            project,
            path,
            parse,
            images_dir=images_dir,
            label_map=label_map,
            progress=progress,
            reads_json=reads_json,
            passes_images_dir=passes_images_dir,
            status=status,
            duplicates=duplicates,
        )

    run.__name__ = run.__qualname__ = f"import_{fmt}"
    run.__doc__ = doc
    return run


import_coco = _labelled_importer(
    "coco", "A COCO instances file (polygons, RLE; also COCO-Annotator's flavour)."
)
import_via = _labelled_importer(
    "via",
    "A VGG Image Annotator 1.x/2.x file; entries whose image is missing are reported.",
    passes_images_dir=True,
)
import_yolo = _labelled_importer(
    "yolo",
    "An Ultralytics segmentation dataset, from its data.yaml.",
    reads_json=False,
    passes_images_dir=True,
)
import_label_studio = _labelled_importer(
    "label_studio",
    "A Label Studio JSON export (polygons, brush RLE, rectangles).",
    passes_images_dir=True,
)
import_cvat = _labelled_importer(
    "cvat",
    "A CVAT for images 1.1 XML file (polygons, masks, boxes; photos beside it or in images/).",
    reads_json=False,
    passes_images_dir=True,
)


@without_gc
def import_uploads(
    session: Session,
    project: Project,
    files: Iterable[tuple[str, bytes]],
    *,
    progress: Progress | None = None,
    status: ImageStatus | str | None = None,
) -> ImportReport:
    """Images uploaded through the browser or the API: stored under the data dir's media
    folder by content hash (so a re-upload is a no-op), then imported like a folder
    (``new`` unless ``status`` says otherwise).

    Each file is checked (name, byte and pixel limits, a full decode) before it is written,
    so a bad upload is reported by name and leaves no file behind; when the import fails
    as a whole, the files it wrote are removed again.
    """
    asked = import_status(status)
    media = get_settings().media_dir
    media.mkdir(parents=True, exist_ok=True)
    records: list[ImageRecord] = []
    rejected: list[str] = []
    written: list[Path] = []
    try:
        for name, data in files:
            shown = safe_base_name(name)  # the client's folders, either separator, are dropped
            if not is_image_file(shown):
                rejected.append(
                    f"{name}: not an image file name (jpg, png, webp, bmp or tiff); skipped"
                )
                continue
            try:
                info = image_info_from_bytes(data, shown)
            except ImageReadError as e:
                rejected.append(f"{e}; the upload was not stored")
                continue
            target = media / f"{info.sha256}{Path(shown).suffix.lower()}"
            if not target.exists():
                write_bytes_atomic(target, data)
                written.append(target)
            records.append(
                ImageRecord(file_name=shown, width=0, height=0, meta={"path": str(target)})
            )
        report = store_photo(
            session,
            project,
            records,
            ParseReport(),
            media,
            "upload",
            AnnotationSource.imported,
            progress,
            status=asked,
        )
        if written:  # a file no image row points to is an upload that failed after all
            kept = set(
                session.exec(
                    select(Image.path).where(
                        Image.project_id == project.id,
                        Image.path.in_([str(p.resolve()) for p in written]),
                    )
                )
            )
            for p in written:
                if str(p.resolve()) not in kept:
                    p.unlink(missing_ok=True)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    report.images_failed += len(rejected)
    report.messages += rejected
    return report


IMPORTERS: dict[str, Callable[..., ImportReport]] = {
    "folder": import_folder,
    "coco": import_coco,
    "via": import_via,
    "yolo": import_yolo,
    "label-studio": import_label_studio,
    "cvat": import_cvat,
}


def resolve_path(images_dir: Path, record: ImageRecord) -> Path | ImageReadError:
    """The record's image file, resolved inside ``images_dir``, or why it is refused."""
    try:
        return resolve_inside(images_dir, record.meta.get("path") or record.file_name)
    except ImageReadError as e:
        return e


def read_all(paths: list[Path | ImageReadError]) -> list[ImageInfo | ImageReadError]:
    def one(p: Path | ImageReadError) -> ImageInfo | ImageReadError:
        if isinstance(p, ImageReadError):
            return p
        try:
            return read_image_info(p)
        except ImageReadError as e:
            return e

    # Pillow releases the GIL while decoding, so threads overlap hashing and decoding.
    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, paths, chunksize=16))


def _geometry_key(class_id: int, geometry: list[dict]) -> str:
    return f"{class_id}:{orjson.dumps(geometry, option=orjson.OPT_SERIALIZE_NUMPY).decode()}"


def _row_key(row: dict[str, Any]) -> str:
    return _geometry_key(row["class_id"], row["geometry"])


def _duplicate_rows(
    file_name: str,
    rows: list[dict[str, Any]],
    kept: tuple[str, set[str]],
    duplicates: str,
    out: ImportReport,
) -> list[dict[str, Any]]:
    """The rows to add for a photo whose bytes an earlier photo of the import has (``kept``:
    its file name and label keys). With ``skip`` they are left out and reported unless the
    kept photo already has every one of them; ``merge`` adds them to the kept photo."""
    kept_name, kept_keys = kept
    differ = rows and not {_row_key(r) for r in rows} <= kept_keys
    if duplicates == DUPLICATES_SKIP and differ:
        out.instances_skipped += len(rows)
        out.messages.append(
            f"{file_name}: same bytes as {kept_name}; kept once, and its {len(rows)} "
            f"instance(s) left out because they differ from {kept_name}'s labels; fix the "
            "label file, or import with duplicates set to merge to add them to that photo"
        )
        return []
    out.messages.append(f"{file_name}: same bytes as {kept_name}; kept once")
    return rows


def _instance_rows(
    record: ImageRecord, info: ImageInfo, taxonomy: Taxonomy, max_vertices: int, out: ImportReport
) -> list[dict[str, Any]]:
    """The record's instances as annotation rows, each checked as the save path checks it;
    an instance that fails is reported by file and index, and the others are kept."""
    rows = []
    inst = record.instances
    group_of = {c.id: c.group for c in taxonomy}
    for k, (shape, cid, attrs) in enumerate(
        zip(inst.shapes, inst.class_ids.tolist(), inst.attributes, strict=True)
    ):
        where = f"{record.file_name}: instance {k + 1}"
        try:
            shape, clipped = fit_to_image(shape, info.width, info.height, max_vertices=max_vertices)
            attributes = normalise_attributes(attrs or {}, taxonomy, where)
        except GeometryError as e:
            out.instances_failed += 1
            out.messages.append(f"{where}: {e}; fix or delete it in the label file")
            continue
        except Invalid as e:
            out.instances_failed += 1
            out.messages.append(f"{e}; fix or delete it in the label file")
            continue
        if clipped:
            out.messages.append(
                f"{where}: reached far outside the {info.width}x{info.height} image; "
                "clipped to the image"
            )
        rows.append(
            {
                "class_id": int(cid),
                "group": group_of[int(cid)],
                "geometry": shape.to_json(arrays=True),  # the engine's orjson writes numpy
                "attributes": attributes,
            }
        )
    return rows


def store_photo(
    session: Session,
    project: Project,
    records: list[ImageRecord],
    report: ParseReport,
    images_dir: Path,
    source: str,
    annotation_source: AnnotationSource,
    progress: Progress | None,
    *,
    status: ImageStatus | None = None,
    duplicates: str = DUPLICATES_SKIP,
) -> ImportReport:
    """Write ``records`` in one go. ``status`` (checked by ``import_status``) is the status
    every photo of the import asks for; None asks ``labelled`` for a photo with instances
    and ``new`` for one without. ``_status_after_import`` decides what a photo gets.

    A photo whose bytes an earlier record of the import has is kept once; ``duplicates``
    (checked by ``duplicates_rule``) says what becomes of its labels (``_duplicate_rows``)."""
    out = ImportReport(source=source)
    out.messages += report.notes + report.skipped + report.failed
    out.instances_failed += len(report.failed)
    out.instances_skipped += len(report.skipped)

    settings = get_settings()
    taxonomy = project_taxonomy(project)
    paths = [resolve_path(images_dir, r) for r in records]
    infos = read_all(paths)

    existing_by_hash: dict[str, Image] = {
        img.sha256: img for img in session.exec(select(Image).where(Image.project_id == project.id))
    }
    next_order = (
        session.exec(
            select(func.max(Image.import_order)).where(Image.project_id == project.id)
        ).one()
        or 0
    ) + 1
    now = utcnow()
    new_images: list[dict[str, Any]] = []
    pending_annotations: list[tuple[str, str, list[dict[str, Any]]]] = []  # (sha, name, rows)
    # sha -> the file name and label keys of the first photo of the import with those bytes
    first_of: dict[str, tuple[str, set[str]]] = {}
    wanted: dict[str, ImageStatus] = {}  # sha -> the status this import asks for

    for i, (record, path, info) in enumerate(zip(records, paths, infos, strict=True)):
        if progress:
            progress(i + 1, len(records))
        n = len(record.instances)
        if isinstance(info, ImageReadError):
            out.images_failed += 1
            out.instances_failed += n
            out.messages.append(f"{record.file_name}: {info}")
            continue
        if (
            record.width
            and record.height
            and (record.width, record.height) != (info.width, info.height)
        ):
            out.messages.append(
                f"{record.file_name}: the labels say {record.width}x{record.height} but the file is "
                f"{info.width}x{info.height}; labels kept in the file's pixel space as given"
            )
        rows = _instance_rows(record, info, taxonomy, settings.max_vertices_per_polygon, out)
        image = existing_by_hash.get(info.sha256)
        kept = first_of.get(info.sha256)
        if kept is not None:
            out.images_skipped += 1
            rows = _duplicate_rows(record.file_name, rows, kept, duplicates, out)
        elif image is not None:
            out.images_skipped += 1
        else:
            new_images.append(
                {
                    "project_id": project.id,
                    "path": str(path),
                    # what the source called it, less any way out of a folder (exports/file_names)
                    "file_name": safe_file_name(record.file_name) or Path(path).name,
                    "sha256": info.sha256,
                    "width": info.width,
                    "height": info.height,
                    "split": split_for(info.sha256),
                    "status": "new",
                    "annotation_version": 0,
                    "import_order": next_order + len(new_images),
                    "meta": {
                        "source": source,
                        **({"source_meta": record.meta} if record.meta else {}),
                    },
                    "created_at": now,
                    "updated_at": now,
                }
            )
        if kept is None:
            first_of[info.sha256] = (record.file_name, {_row_key(r) for r in rows})
        want = status or (ImageStatus.labelled if rows else ImageStatus.new)
        wanted[info.sha256] = max(want, wanted.get(info.sha256, want), key=_STATUS_RANK.get)
        if rows:
            pending_annotations.append((info.sha256, record.file_name, rows))

    status_by = f"import:{Path(source).name}"
    now_labelled = LABELLED_STATUSES
    for row in new_images:
        row["status"] = wanted[row["sha256"]].name
        if wanted[row["sha256"]] != ImageStatus.new:
            row["meta"]["status_by"] = status_by
        out.images_labelled += wanted[row["sha256"]] in now_labelled
    for sha, want in wanted.items():
        image = existing_by_hash.get(sha)
        moved = image and _status_after_import(image.status, want)
        if moved:
            out.images_labelled += moved in now_labelled and image.status not in now_labelled
            image.status = moved
            image.meta = {**(image.meta or {}), "status_by": status_by}
            image.updated_at = now
            session.add(image)
        final = ImageStatus(image.status if image else want).value
        out.statuses[final] = out.statuses.get(final, 0) + 1
    if new_images:
        session.connection().execute(Image.__table__.insert(), new_images)
    image_ids = dict(
        session.exec(select(Image.sha256, Image.id).where(Image.project_id == project.id)).all()
    )
    # Instances already stored on an image are not added again (idempotent re-import).
    touched = {image_ids[h] for h, _, _ in pending_annotations}
    known: set[tuple[int, str]] = set()
    held: dict[int, int] = dict.fromkeys(touched, 0)  # instances each photo holds
    if touched:
        for image_id, class_id, geometry in session.exec(
            select(Annotation.image_id, Annotation.class_id, Annotation.geometry).where(
                Annotation.image_id.in_(touched),
                Annotation.deleted == False,  # noqa: E712
            )
        ):
            known.add((image_id, _geometry_key(class_id, geometry)))
            held[image_id] += geometry_counts(geometry)[0]
    limit = settings.max_polygons_per_image
    new_annotations = []
    for sha, file_name, rows in pending_annotations:
        image_id = image_ids[sha]
        left_out = 0
        for row in rows:
            key = (image_id, _geometry_key(row["class_id"], row["geometry"]))
            if key in known:
                out.instances_skipped += 1
                continue
            rings = geometry_counts(row["geometry"])[0]
            if held[image_id] + rings > limit:
                left_out += 1
                continue
            known.add(key)
            held[image_id] += rings
            new_annotations.append(
                {
                    **row,
                    "image_id": image_id,
                    "source": annotation_source.name,
                    "author": f"import:{Path(source).name}",
                    "version": 1,
                    "deleted": False,
                    "created_at": now,
                    "updated_at": now,
                }
            )
        if left_out:
            out.instances_failed += left_out
            out.messages.append(
                f"{file_name}: {left_out} instance(s) left out, because a photo holds at most "
                f"{limit:,} polygons, each part and each hole counted (setting "
                f"{env_name('max_polygons_per_image')}); split the labels or raise the limit"
            )
    if new_annotations:
        session.connection().execute(Annotation.__table__.insert(), new_annotations)
    out.images_added = len(new_images)
    out.instances_added = len(new_annotations)
    session.flush()
    labels_changed(session, project.id)  # auto-training checks run on commit (jobs.autotrain)
    return out


def summarise(reports: Iterable[ImportReport]) -> str:
    return "\n".join(r.summary() for r in reports)
