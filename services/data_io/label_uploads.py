"""Label files uploaded through ``POST /api/imports`` or the dashboard, imported as the CLI
imports them (``panelbeater import coco|via|yolo|label-studio|cvat``, ``--as-predictions``).

An upload is one label file (JSON; for YOLO a zip of the dataset: data.yaml with its
labels/ and, if wanted, images/ folders, or with ``as_predictions`` a zip of prediction
label files) plus, optionally, the photos it names. The files go to a private folder under
the data dir (``<data_dir>/tmp/import-*``, mode 0700) and the CLI's importer runs on that
folder, so every rule of the CLI holds: paths that lead out of the folder are refused,
images are bounded by the byte and pixel limits, unknown labels stop the import, statuses
only move forward, and a re-import changes nothing. The folder is removed afterwards.

Photos are matched by file name: an uploaded photo goes where the label file names it
(by its base name, as a browser sends no folders). A photo the label file names but that
was not uploaded is taken from the project when one photo there has that file name (or base
name; for YOLO, that stem), so a label file can be imported again, or for photos uploaded
earlier, without sending the photos again; the importer then matches it by content hash,
exactly as a CLI re-import does. New photos are kept under the media folder by content hash,
like any upload.

With ``as_predictions`` the photos must be in the project (uploaded photos are added first,
as ``new``) and the file's shapes become pending predictions of the external model version
``model_name`` (``services.data_io.prediction_imports``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.config import env_name, get_settings
from core.records import ImageRecord, UnknownLabelsError
from core.taxonomy import TaxonomyError
from db.models import Image, ModelVersion, Project
from exports.cvat import root_of
from exports.errors import FormatError, ImageReadError
from exports.image_files import is_image_file, resolve_inside
from services.data_io.imports import (
    IMPORTERS,
    ImportReport,
    duplicates_rule,
    import_status,
    import_uploads,
)
from services.data_io.prediction_imports import PhotoIndex, import_predictions
from services.errors import Invalid

#: The ``format`` values of an upload (the CLI's import kinds, "label-studio" also accepted).
LABEL_FORMATS: tuple[str, ...] = ("coco", "via", "yolo", "label_studio", "cvat")
#: The formats that can carry predictions (``as_predictions``).
PREDICTION_FORMATS: tuple[str, ...] = ("coco", "yolo", "label_studio")

#: Where an upload takes its label map: the dashboard's "Label map" box, the API's field.
UPLOAD_MAP_HINT = "in the label map field (label_map), JSON text"
NOTHING = " Nothing was imported."

#: One uploaded file: (the name the client gave, its bytes).
Upload = tuple[str, bytes]


def import_label_upload(
    session: Session,
    project: Project,
    *,
    fmt: str,
    label_file: Upload,
    images: Iterable[Upload] = (),
    status: str | None = None,
    as_predictions: bool = False,
    model_name: str | None = None,
    label_map: dict[str, str] | str | None = None,
    duplicates: str | None = None,
) -> ImportReport:
    """Import an uploaded label file (and the photos it names) into ``project``; the caller
    commits. Returns the import's report (a ``PredictionImportReport`` with
    ``as_predictions``); its ``source`` and messages name the uploaded files, not the folder
    they were unpacked to.

    Raises:
        Invalid: a field is wrong (the sentence names it: ``format``, ``status``,
            ``model_name``, ``label_map``, ``duplicates``, the label file), the label file is not of its
            format, or it holds labels neither the taxonomy nor ``label_map`` knows;
            nothing is written then.
    """
    kind = _kind(fmt, as_predictions)
    asked = import_status(status)
    rule = duplicates_rule(duplicates)
    name = model_name.strip() if model_name else ""
    if as_predictions:
        if not name:
            raise Invalid(
                "model_name is required with as_predictions: name the model that made the "
                "predictions (its external model version)"
            )
        if asked is not None:
            raise Invalid(
                "status applies to labels; leave it out with as_predictions (predictions "
                "leave the photos' statuses as they are)"
            )
        if duplicates:
            raise Invalid("duplicates applies to labels; leave it out with as_predictions")
    elif name:
        raise Invalid("model_name only applies with as_predictions; leave it out for labels")
    mapping = parse_label_map(label_map)
    label_name, label_bytes = label_file
    label_name = _safe_name(label_name) or ("labels.zip" if kind == "yolo" else "labels.json")
    _check_label_file(kind, label_name, label_bytes)
    photos = list(images)

    root = get_settings().data_dir / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="import-", dir=root)).resolve()  # mode 0700
    try:
        with _as_invalid(work):
            if as_predictions:
                report = _predictions(
                    session, project, kind, work, label_name, label_bytes, photos, name, mapping
                )
            else:
                report = _labels(
                    session,
                    project,
                    kind,
                    work,
                    label_name,
                    label_bytes,
                    photos,
                    asked,
                    mapping,
                    rule,
                )
        report.source = label_name
        report.messages = [_scrub(m, work) for m in report.messages]
        return report
    finally:
        shutil.rmtree(work, ignore_errors=True)


def parse_label_map(value: dict[str, str] | str | None) -> dict[str, str]:
    """``label_map`` as given (a dict, or its JSON text; empty or None: no map), checked as
    the CLI checks a map file."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise Invalid(
                f'label_map is not valid JSON ({e}); give an object like {{"dent": "damage"}}'
            ) from e
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise Invalid(
            'label_map must be a JSON object of strings, like {"back_bumper": "rear_bumper"}'
        )
    return value


# -- the fields -------------------------------------------------------------------------


def _kind(fmt: str, as_predictions: bool) -> str:
    """The CLI's name for ``fmt`` ("label-studio" for label_studio)."""
    key = (fmt or "").strip().lower().replace("-", "_")
    allowed = PREDICTION_FORMATS if as_predictions else LABEL_FORMATS
    if key not in allowed:
        what = "predictions" if as_predictions else "labels"
        raise Invalid(
            f"format {fmt!r} is not one of {', '.join(allowed)} (for {what}); "
            "choose the format the label file was exported in"
        )
    return key.replace("_", "-")


def _check_label_file(kind: str, name: str, data: bytes) -> None:
    if not data:
        raise Invalid(f"label file {name!r} is empty; choose the exported label file")
    settings = get_settings()
    if kind == "yolo":
        if not zipfile.is_zipfile(io.BytesIO(data)):
            raise Invalid(
                f"label file {name!r} is not a zip archive; for YOLO upload a .zip of the "
                "dataset (data.yaml with its labels/ folders, or with as_predictions the "
                "prediction label files)"
            )
        return
    if len(data) > settings.max_label_file_bytes:
        raise Invalid(
            f"label file {name!r} is larger than {settings.max_label_file_bytes:,} bytes; "
            f"split it, or raise the limit (setting {env_name('max_label_file_bytes')})"
        )
    if kind == "cvat":
        _check_xml(name, data)
        return
    try:
        json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise Invalid(
            f"label file {name!r} is not valid JSON ({e}); upload the {kind} export itself"
        ) from e


def _check_xml(name: str, data: bytes) -> None:
    """Refuse an upload that is not a CVAT XML file before anything is unpacked."""
    try:
        root_of(data, name)
    except FormatError as e:
        raise Invalid(f"label file {e}; upload the CVAT for images 1.1 annotations.xml") from e


@contextmanager
def _as_invalid(work: Path) -> Iterator[None]:
    """The importers' whole-file errors as ``Invalid``, naming the uploaded file."""
    try:
        yield
    except UnknownLabelsError as e:  # advise the upload's field, not the CLI's --map
        raise Invalid(_scrub(str(e.advising(UPLOAD_MAP_HINT)), work) + NOTHING) from e
    except (FormatError, TaxonomyError, UnicodeDecodeError) as e:
        raise Invalid(_scrub(str(e), work) + NOTHING) from e


def _scrub(text: str, work: Path) -> str:
    """``text`` without the private folder's path, so it names files as uploaded."""
    return text.replace(f"{work}{os.sep}", "").replace(str(work), "the upload")


def _base_name(name: str) -> str:
    return name.replace("\\", "/").rsplit("/", 1)[-1].strip()


def _safe_name(name: str) -> str:
    """``name``'s base name when it can name a file in the private folder, else ''."""
    base = _base_name(name)
    if base in (".", "..") or "\x00" in base or len(base.encode()) > 200:
        return ""
    return base


# -- labels -----------------------------------------------------------------------------


def _labels(
    session: Session,
    project: Project,
    kind: str,
    work: Path,
    label_name: str,
    label_bytes: bytes,
    images: list[Upload],
    status: Any,
    mapping: dict[str, str],
    duplicates: str,
) -> ImportReport:
    uploaded, notes = _by_name(images)
    index = PhotoIndex(list(session.exec(select(Image).where(Image.project_id == project.id))))
    images_dir = work / "images"
    if kind == "yolo":
        dataset = work / "dataset"
        _unzip(label_bytes, dataset, label_name)
        path = _find_yaml(dataset, label_name, required=True)
        used, missing = _place_yolo(path.parent, uploaded, index)
        images_dir = None  # the importer reads inside data.yaml's folder
    else:
        path = work / label_name
        path.write_bytes(label_bytes)
        images_dir.mkdir()
        content = root_of(label_bytes, label_name) if kind == "cvat" else json.loads(label_bytes)
        names = _named_files(kind, content)
        used, missing = _place(images_dir, names, uploaded, index)
    written: list[Path] = []
    try:
        report = IMPORTERS[kind](
            session,
            project,
            path,
            images_dir=images_dir,
            label_map=mapping,
            status=status,
            duplicates=duplicates,
        )
        _keep_photos(session, project, work, label_name, written)
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        raise
    report.messages = notes + _missing(missing) + report.messages + _unused(uploaded, used)
    return report


def _named_files(kind: str, data: Any) -> list[str]:
    """The image names a COCO, VIA or Label Studio file gives (its converter reports a
    malformed file; here a shape it does not expect just names nothing)."""
    from exports import label_studio, via

    names: list[Any] = []
    try:
        if kind == "coco":
            names = [im.get("file_name") for im in data.get("images", []) if isinstance(im, dict)]
        elif kind == "via":
            names = [e.get("filename") for _, e in via._entries(data, "label file")]
        elif kind == "cvat":
            names = [im.get("name") for im in data.iter("image")]
        elif kind == "label-studio":
            tasks = data.get("tasks") if isinstance(data, dict) else data
            names = [
                label_studio._file_name(t["data"])
                for t in tasks
                if isinstance(t, dict) and isinstance(t.get("data"), dict)
            ]
    except (AttributeError, TypeError, FormatError):
        return []
    return [n for n in names if isinstance(n, str) and n.strip()]


def _by_name(images: list[Upload]) -> tuple[dict[str, bytes], list[str]]:
    """Uploaded photos by base name, and a sentence for each one left out."""
    limit = get_settings().max_image_bytes
    out: dict[str, bytes] = {}
    notes: list[str] = []
    for raw_name, data in images:
        name = _safe_name(raw_name)
        if not name:
            notes.append(f"{raw_name!r}: not a file name; skipped")
        elif not is_image_file(name):
            notes.append(f"{name}: not an image file name (jpg, png, webp, bmp or tiff); skipped")
        elif len(data) > limit:
            notes.append(
                f"{name}: larger than {limit:,} bytes (setting {env_name('max_image_bytes')}); "
                "skipped"
            )
        elif name in out:
            notes.append(f"{name}: uploaded twice; the first one was used")
        else:
            out[name] = data
    return out, notes


def _place(
    images_dir: Path, names: list[str], uploaded: dict[str, bytes], index: PhotoIndex
) -> tuple[set[str], list[str]]:
    """Put each photo the label file names where it names it: an uploaded one, else the
    project's photo of that name. Returns the uploaded names used and the names found
    nowhere."""
    used: set[str] = set()
    missing: list[str] = []
    for name in names:
        try:
            dest = resolve_inside(images_dir, name)
        except ImageReadError:
            continue  # the importer refuses and reports it
        base = _base_name(name)
        try:
            if dest.exists() or dest == images_dir:
                continue
            if base in uploaded:
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(uploaded[base])
                used.add(base)
                continue
        except OSError:  # a name the file system refuses: the importer reports it
            continue
        found = index.find(ImageRecord(file_name=name, width=0, height=0))
        if isinstance(found, Image):
            _link(Path(found.path), dest)
        else:
            missing.append(name)
    return used, missing


def _place_yolo(
    base: Path, uploaded: dict[str, bytes], index: PhotoIndex
) -> tuple[set[str], list[str]]:
    """For each label file under a ``labels`` folder without its photo in the matching
    ``images`` folder (Ultralytics' rule), put the uploaded photo with that stem there, else
    the project's photo with that stem."""
    by_stem: dict[str, list[str]] = {}
    for name in uploaded:
        by_stem.setdefault(Path(name).stem, []).append(name)
    used: set[str] = set()
    missing: list[str] = []
    for label in sorted(base.rglob("*.txt")):
        parts = list(label.relative_to(base).parts)
        if "labels" not in parts[:-1]:
            continue
        k = len(parts) - 2 - parts[:-1][::-1].index("labels")
        parts[k] = "images"
        folder = base.joinpath(*parts[:-1])
        stem = label.stem
        if folder.is_dir() and any(p.stem == stem and is_image_file(p) for p in folder.iterdir()):
            continue
        names = by_stem.get(stem, [])
        if len(names) == 1:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                (folder / names[0]).write_bytes(uploaded[names[0]])
                used.add(names[0])
                continue
            except OSError:
                pass  # left to the project's photos, else reported missing
        found = index.find(ImageRecord(file_name=stem, width=0, height=0, meta={"match": "stem"}))
        if isinstance(found, Image):
            folder.mkdir(parents=True, exist_ok=True)
            _link(Path(found.path), folder / f"{stem}{Path(found.path).suffix.lower()}")
        else:
            missing.append(str(label.relative_to(base)))
    return used, missing


def _link(src: Path, dest: Path) -> None:
    """A project photo at ``dest`` for the importer to read (and hash) again: a hard link
    where the file system allows, else a copy; a photo whose file is gone is left out, and
    the importer reports it as missing."""
    if not src.is_file():
        return
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.copyfile(src, dest)
    except OSError:  # a name the file system refuses: the importer reports it
        return


def _keep_photos(
    session: Session, project: Project, work: Path, label_name: str, written: list[Path]
) -> None:
    """Move the photos this import added out of the private folder into the media folder
    (by content hash, as uploads are kept), and point their rows there; the media files
    written are added to ``written`` (removed again when the import fails)."""
    media = get_settings().media_dir
    media.mkdir(parents=True, exist_ok=True)
    rows = session.exec(
        select(Image).where(
            Image.project_id == project.id,
            Image.path.startswith(f"{work}{os.sep}", autoescape=True),
        )
    ).all()
    for image in rows:
        src = Path(image.path)
        target = (media / f"{image.sha256}{src.suffix.lower()}").resolve()
        if not target.exists():
            shutil.copyfile(src, target)
            written.append(target)
        image.path = str(target)
        meta = dict(image.meta or {})
        meta["source"] = label_name
        if isinstance(meta.get("source_meta"), dict):
            meta["source_meta"] = {k: v for k, v in meta["source_meta"].items() if k != "path"}
        image.meta = meta
        session.add(image)
    session.flush()


def _missing(names: list[str]) -> list[str]:
    if not names:
        return []
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return [
        f"{len(names)} photo(s) the label file names were neither uploaded nor found in the "
        f"project ({shown}); upload them with the label file to import their labels"
    ]


def _unused(uploaded: dict[str, bytes], used: set[str]) -> list[str]:
    return [
        f"{name}: uploaded, but the label file does not name it; not added"
        for name in sorted(set(uploaded) - used)
    ]


# -- archives ---------------------------------------------------------------------------


def _unzip(data: bytes, dest: Path, name: str) -> None:
    """Unpack a zip into ``dest``, within the archive limits; an entry that leads out of
    ``dest`` or is a link refuses the whole archive."""
    settings = get_settings()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise Invalid(f"label file {name!r} is not a readable zip archive ({e})") from e
    members = archive.infolist()
    if len(members) > settings.max_archive_members:
        raise Invalid(
            f"label file {name!r} holds {len(members):,} entries, more than "
            f"{settings.max_archive_members:,} (setting {env_name('max_archive_members')})"
        )
    total = sum(m.file_size for m in members)
    if total > settings.max_archive_unpacked_bytes:
        raise Invalid(
            f"label file {name!r} unpacks to {total:,} bytes, more than "
            f"{settings.max_archive_unpacked_bytes:,} "
            f"(setting {env_name('max_archive_unpacked_bytes')}); split the dataset"
        )
    dest.mkdir(parents=True)
    for m in members:
        if stat.S_ISLNK(m.external_attr >> 16):
            raise Invalid(f"label file {name!r}: entry {m.filename!r} is a link; zip real files")
        try:
            target = resolve_inside(dest, m.filename)
        except ImageReadError as e:
            raise Invalid(
                f"label file {name!r}: entry {m.filename!r} leads outside the archive; "
                "zip the dataset folder with relative paths"
            ) from e
        if m.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with archive.open(m) as src, target.open("wb") as out:
                shutil.copyfileobj(src, out)  # ZipExtFile stops at the declared size
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise Invalid(f"label file {name!r}: entry {m.filename!r} is corrupt ({e})") from e


def _find_yaml(dataset: Path, name: str, *, required: bool) -> Path | None:
    """The dataset's data.yaml: the shallowest ``data.yaml``, else the shallowest ``*.yaml``."""
    found = [p for p in dataset.rglob("*.y*ml") if p.is_file() and "__MACOSX" not in p.parts]
    found.sort(key=lambda p: (p.name not in ("data.yaml", "data.yml"), len(p.parts), str(p)))
    if found:
        return found[0]
    if required:
        raise Invalid(
            f"label file {name!r} holds no data.yaml; zip the dataset folder with its "
            "data.yaml (names, train/val) and labels/ folders"
        )
    return None


# -- predictions ------------------------------------------------------------------------


def _predictions(
    session: Session,
    project: Project,
    kind: str,
    work: Path,
    label_name: str,
    label_bytes: bytes,
    images: list[Upload],
    model_name: str,
    mapping: dict[str, str],
) -> ImportReport:
    notes: list[str] = []
    if images:  # the photos must be in the project before their predictions
        added = import_uploads(session, project, images)
        notes.append(
            f"photos: {added.images_added} added, {added.images_skipped} already here, "
            f"{added.images_failed} could not be read"
        )
        notes += added.messages
    names = None
    if kind == "yolo":
        path = work / "predictions"
        _unzip(label_bytes, path, label_name)
        names = _find_yaml(path, label_name, required=False)
    else:
        path = work / label_name
        path.write_bytes(label_bytes)
    report = import_predictions(
        session, project, kind, path, model_name=model_name, label_map=mapping, names=names
    )
    version = session.exec(select(ModelVersion).where(ModelVersion.name == model_name)).one()
    if str(work) in str((version.config or {}).get("file", "")):  # the private folder goes
        version.config = {**version.config, "file": label_name}
        session.add(version)
        session.flush()
    report.messages = notes + report.messages
    return report
