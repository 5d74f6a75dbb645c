"""Predictions made elsewhere, imported as pre-annotations under an external model version.

A team whose models run on its own machines brings their output as a COCO results file, a
Label Studio export with predictions, or a folder of Ultralytics prediction labels. The pure
converters in ``exports/`` parse them; here they become ``Prediction`` rows in state
``pending`` (through :func:`services.training.predictions.store_predictions`, one ``ImagePrediction``
row per photo), so the annotator sees them as it sees our own models' and accepts or rejects
them.

Rules:

- the predictions belong to one ``ModelVersion`` of stage :data:`EXTERNAL_STAGE` named by the
  user; it has no model file (``path`` and ``sha256`` are empty) and is never loaded or
  promoted (``services.training.registry`` refuses both);
- the photos must already be in the project; a prediction names its photo by sha256, by
  file name, or by file-name stem (results that carry only an id). A photo not found (or
  found twice) is reported by name and the rest is imported;
- an unknown label stops the import before anything is written, listing every one (the
  labelled imports' rule, with the same ``--map`` file);
- a photo that already holds this version's predictions is skipped, so importing the same
  file under the same name again adds nothing;
- each shape is checked and clipped as the save path does (``core.geometry.fit_to_image``),
  and a photo takes no more polygons (parts and holes counted) than ``max_polygons_per_image``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session, select

from core.config import Settings, env_name, get_settings
from core.geometry import GeometryError, fit_to_image
from core.instances import ImageResult, Instances
from core.records import ImageRecord, LabelResolver, ParseReport
from db.models import Image, ImagePrediction, ModelVersion, Project
from exports import coco, label_studio, yolo
from exports.errors import FormatError
from services.accounts.projects import project_taxonomy
from services.data_io.imports import ImportReport, read_json
from services.errors import Invalid
from services.training.predictions import store_predictions
from services.training.registry import EXTERNAL_STAGE, next_version

SOURCES = ("coco", "label-studio", "yolo")


@dataclass
class PredictionImportReport(ImportReport):
    """``images_added``: photos given predictions; ``images_skipped``: photos that already
    held this version's; ``images_failed``: photos not in the project."""

    model_version: str = ""

    def summary(self) -> str:
        return (
            f"{self.source}: predictions of {self.model_version!r} ({EXTERNAL_STAGE}): "
            f"{self.instances_added} added on {self.images_added} photo(s); "
            f"{self.images_skipped} photo(s) already had them; "
            f"{self.images_failed} photo(s) not in the project; "
            f"{self.instances_failed} prediction(s) failed"
        )


def external_version(
    session: Session, name: str, *, config: dict[str, Any] | None = None
) -> ModelVersion:
    """The external model version ``name``, created on first use.

    Raises Invalid when the name is empty or belongs to a trained version.
    """
    name = name.strip()
    if not name:
        raise Invalid("--model-name must name the model that made the predictions")
    mv = session.exec(select(ModelVersion).where(ModelVersion.name == name)).first()
    if mv is not None:
        if mv.stage != EXTERNAL_STAGE:
            raise Invalid(
                f"the name {name!r} belongs to the trained version {mv.name} (stage {mv.stage}); "
                "give the external model another --model-name"
            )
        return mv
    mv = ModelVersion(
        stage=EXTERNAL_STAGE,
        version=next_version(session, EXTERNAL_STAGE),
        name=name,
        path="",
        sha256="",
        config=config or {},
    )
    session.add(mv)
    session.flush()
    return mv


def _parse(
    kind: str,
    path: Path,
    resolver: LabelResolver,
    *,
    images_json: Path | None,
    names: Path | None,
) -> tuple[list[ImageRecord], ParseReport]:
    if kind == "coco":
        images = read_json(images_json) if images_json is not None else None
        return coco.parse_results(read_json(path), resolver, source=str(path), images=images)
    if kind == "label-studio":
        return label_studio.parse_predictions(read_json(path), resolver, source=str(path))
    if kind == "yolo":
        class_names = yolo.read_names(names) if names is not None else None
        return yolo.parse_predictions(path, resolver, source=str(path), names=class_names)
    raise Invalid(f"unknown prediction source {kind!r}; choose one of {', '.join(SOURCES)}")


class PhotoIndex:
    """The project's photos by sha256, file name, base name and stem."""

    def __init__(self, images: list[Image]):
        self.by_sha = {im.sha256: im for im in images}
        self.by_key: dict[str, dict[str, list[Image]]] = {
            k: defaultdict(list) for k in ("name", "base", "stem")
        }
        for im in images:
            base = im.file_name.replace("\\", "/").rsplit("/", 1)[-1]
            self.by_key["name"][im.file_name].append(im)
            self.by_key["base"][base].append(im)
            self.by_key["stem"][base.rsplit(".", 1)[0]].append(im)

    def find(self, rec: ImageRecord) -> Image | str:
        """The record's photo, or why there is none (a sentence)."""
        if rec.sha256 and rec.sha256 in self.by_sha:
            return self.by_sha[rec.sha256]
        name = rec.file_name.replace("\\", "/")
        base = name.rsplit("/", 1)[-1]
        tries = (
            [("stem", name)]
            if rec.meta.get("match") == "stem"
            else [("name", rec.file_name), ("base", base)]
        )
        for key, value in tries:
            found = {im.id: im for im in self.by_key[key].get(value, [])}
            if len(found) == 1:
                return next(iter(found.values()))
            if len(found) > 1:
                shown = ", ".join(sorted(im.file_name for im in found.values())[:5])
                return (
                    f"{rec.file_name}: {len(found)} photos in the project match this name "
                    f"({shown}); predictions left out. Name the photos by their path or sha256"
                )
        return (
            f"{rec.file_name}: no such photo in the project; import the photos first "
            "(panelbeater import folder ...), then the predictions"
        )


def _fitted(
    rec: ImageRecord, image: Image, settings: Settings, out: PredictionImportReport
) -> Instances:
    """The record's instances in the photo's pixels, each checked as the save path checks it,
    and no more polygons (each part and each hole counted) than a saved photo may hold."""
    inst = rec.instances
    sx = sy = 1.0
    if rec.meta.get("relative") and rec.width and rec.height:
        sx, sy = image.width / rec.width, image.height / rec.height
    elif rec.width and rec.height and (rec.width, rec.height) != (image.width, image.height):
        out.messages.append(
            f"{rec.file_name}: the predictions say {rec.width}x{rec.height} but the photo is "
            f"{image.width}x{image.height}; kept in the photo's pixel space as given"
        )
    keep, shapes = [], []
    held, limit, left_out = 0, settings.max_polygons_per_image, 0
    for k, shape in enumerate(inst.shapes):
        where = f"{rec.file_name}: prediction {k + 1}"
        score = float(inst.scores[k])
        if not math.isfinite(score) or not 0.0 <= score <= 1.0:
            out.instances_failed += 1
            out.messages.append(f"{where}: score {score} is not between 0 and 1; left out")
            continue
        if (sx, sy) != (1.0, 1.0):
            shape = shape.scaled(sx, sy)
        try:
            shape, clipped = fit_to_image(
                shape, image.width, image.height, max_vertices=settings.max_vertices_per_polygon
            )
        except GeometryError as e:
            out.instances_failed += 1
            out.messages.append(f"{where}: {e}; left out")
            continue
        rings = sum(len(p.holes) + 1 for p in shape.polygons)
        if held + rings > limit:
            left_out += 1
            continue
        if clipped:
            out.messages.append(f"{where}: reached far outside the photo; clipped to it")
        held += rings
        keep.append(k)
        shapes.append(shape)
    if left_out:
        out.instances_failed += left_out
        out.messages.append(
            f"{rec.file_name}: {left_out} prediction(s) left out, because a photo holds at most "
            f"{limit:,} polygons, each part and each hole counted (setting "
            f"{env_name('max_polygons_per_image')}); split the file or raise the limit"
        )
    if not keep:
        return Instances.empty()
    return Instances(
        shapes, inst.class_ids[keep], scores=inst.scores[np.asarray(keep, dtype=np.int64)]
    )


def import_predictions(
    session: Session,
    project: Project,
    kind: str,
    path: str | Path,
    *,
    model_name: str,
    label_map: dict[str, str] | None = None,
    images_json: str | Path | None = None,
    names: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PredictionImportReport:
    """Import the predictions in ``path`` (a ``kind`` of :data:`SOURCES`) as pending
    pre-annotations of the external model version ``model_name``; the caller commits.

    ``images_json`` (coco): the COCO file whose ``images`` and ``categories`` the results'
    ids refer to. ``names`` (yolo): a data.yaml naming the class indices. Without them, ids
    and indices are labels (``"1"``) resolved through ``label_map``.

    Raises:
        FormatError: the file is not of its kind.
        UnknownLabelsError: labels neither the taxonomy nor the map knows (nothing written).
        Invalid: the model name is empty or belongs to a trained version.
    """
    path = Path(path)
    if kind not in SOURCES:
        raise Invalid(f"unknown prediction source {kind!r}; choose one of {', '.join(SOURCES)}")
    if kind == "yolo" and not path.is_dir():
        raise FormatError(
            f"{path}: with --as-predictions, give the folder of prediction label files "
            "(Ultralytics' runs/.../labels, written with save_txt=True, save_conf=True)"
        )
    if not model_name or not model_name.strip():
        raise Invalid("--model-name must name the model that made the predictions")
    taxonomy = project_taxonomy(project)
    resolver = LabelResolver(taxonomy, label_map)
    records, parsed = _parse(
        kind,
        path,
        resolver,
        images_json=Path(images_json) if images_json else None,
        names=Path(names) if names else None,
    )
    resolver.raise_if_unknown(str(path))

    out = PredictionImportReport(source=str(path), model_version=model_name.strip())
    out.messages += parsed.notes + parsed.skipped + parsed.failed
    out.instances_failed += len(parsed.failed)
    version = external_version(
        session,
        model_name,
        config={"imported_from": kind, "file": str(path.resolve())},
    )
    photos = PhotoIndex(
        list(session.exec(select(Image).where(Image.project_id == project.id)).all())
    )
    done = set(
        session.exec(
            select(ImagePrediction.image_id).where(ImagePrediction.model_version_id == version.id)
        ).all()
    )
    settings = get_settings()
    for i, rec in enumerate(records):
        if progress:
            progress(i + 1, len(records))
        image = photos.find(rec)
        if isinstance(image, str):
            out.images_failed += 1
            out.instances_failed += len(rec.instances)
            out.messages.append(image)
            continue
        if image.id in done:
            out.images_skipped += 1
            out.instances_skipped += len(rec.instances)
            continue
        inst = _fitted(rec, image, settings, out)
        store_predictions(session, image, version, ImageResult(inst), taxonomy)
        done.add(image.id)
        out.images_added += 1
        out.instances_added += len(inst)
    session.flush()
    return out
