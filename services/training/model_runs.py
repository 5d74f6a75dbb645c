"""Run and evaluate model stages against the project's database.

- :func:`training_set` reads the labelled photos (a round's snapshot, or as they are now).
- :func:`predict_stage` pre-annotates: it runs a version over the images it has not yet
  processed (an ``ImagePrediction`` row marks an image as done), committing image by image,
  so it can be interrupted and resumed.
- :func:`evaluate_stage` measures a version on the held-out split and stores the figures.

Training, and the promotion rule every new version goes through, are
``services.training.lifecycle``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from core.records import ImageRecord
from db.models import Image, ImagePrediction, ModelVersion, Prediction, Project
from services.errors import Invalid, NotFound
from services.training.withdrawal import sync_offered_predictions

Progress = Callable[[int, int, dict[str, Any]], None]


def training_set(
    session: Session,
    project: Project,
    split_filter: Callable[[ImageRecord], bool],
    snapshot: dict[str, Any] | None = None,
):
    """The labelled records that pass ``split_filter``; with a round's ``snapshot``, exactly
    its images with their annotations as they were when it was taken (later saves are read
    back from the revision history), and the pseudo-labelled photos it names, if any
    (``snapshot["pseudo"]``, :mod:`services.training.pseudo_labels`)."""
    from db.models import LABELLED_STATUSES
    from models.data import TrainingSet
    from services.accounts.projects import project_taxonomy
    from services.training.records import collect_records

    if snapshot is None:
        records: list[ImageRecord] = []
        for status in LABELLED_STATUSES:
            records += collect_records(session, project, status=status.value)
    else:
        records = _snapshot_records(session, project, snapshot)
    records = [r for r in records if split_filter(r) and len(r.instances)]
    return TrainingSet(records, project_taxonomy(project))


def _snapshot_records(
    session: Session, project: Project, snapshot: dict[str, Any]
) -> list[ImageRecord]:
    from services.labelling.readers import revision_instances
    from services.training.records import collect_records

    wanted = {int(i) for i in snapshot["image_ids"]}
    versions = {int(k): int(v) for k, v in snapshot.get("annotation_versions", {}).items()}
    current = dict(
        session.exec(
            select(Image.id, Image.annotation_version).where(
                Image.project_id == project.id, Image.id.in_(wanted)
            )
        ).all()
    )
    records = [r for r in collect_records(session, project) if r.meta["image_id"] in wanted]
    for rec in records:
        image_id = rec.meta["image_id"]
        taken = versions.get(image_id)
        if taken is not None and taken != current.get(image_id):
            rec.instances = revision_instances(session, image_id, taken)
    if snapshot.get("pseudo"):
        from services.training.pseudo_labels import pseudo_records

        records += pseudo_records(session, project, snapshot["pseudo"])
    return records


def provenance(started_from: dict[str, str] | None, warm_from: ModelVersion | None) -> dict:
    """What a new version started from: a weights file, and/or an earlier version."""
    out: dict[str, Any] = {}
    if started_from:
        out["started_from"] = started_from
    if warm_from is not None:
        out["warm_from"] = {"version": warm_from.name, "sha256": warm_from.sha256}
    return out


def start_weights(stage: str, weights: str | Path) -> tuple[str, dict[str, str]]:
    """The config field a stage starts from and ``{"path", "sha256"}`` of the local file."""
    from core.files import sha256_file
    from models.registry import stage_class
    from services.training.weights import resolve_weights

    fields = getattr(stage_class(stage), "start_weight_fields", ())
    if not fields:
        raise Invalid(f"{stage!r} cannot start from a weights file; train it without --weights")
    path = resolve_weights(str(weights))
    kind = getattr(stage_class(stage), "start_weight_kind", None)
    if kind is not None:
        _check_weights_kind(stage, path, kind)
    return fields[0], {"path": str(path.resolve()), "sha256": sha256_file(path)}


def _check_weights_kind(stage: str, path: Path, kind: str) -> None:
    """Refuse, before any training, a file that is damaged or of another kind than ``stage``
    starts from; the sentence names the file."""
    from models.base import CheckpointError
    from models.weights import KINDS, inspect_weights

    try:
        found = inspect_weights(path).kind
    except CheckpointError as e:
        raise Invalid(f"{e}; {stage} starts from a {KINDS[kind]}") from e
    if found != kind:
        raise Invalid(
            f"weights file {path} holds a {KINDS[found]} (kind {found}); {stage} starts from "
            f"a {KINDS[kind]}: pick such a file (`panelbeater weights list` shows each kind)"
        )


def resolve_version(session: Session, stage: str, version: str | int | None) -> ModelVersion:
    """``version`` as ``albert-v3``, ``3``, ``v3`` or None (the promoted one, else the newest)."""
    from services.training.registry import current, get_version, versions

    if version is None:
        mv = current(session, stage) or (versions(session, stage) or [None])[-1]
        if mv is None:
            raise NotFound(
                f"stage {stage!r} has no trained version; run `panelbeater train {stage}` first"
            )
        return mv
    ref = str(version)
    if ref.isdigit() or (ref.startswith("v") and ref[1:].isdigit()):
        ref = f"{stage}-v{ref.lstrip('v')}"
    mv = get_version(session, ref)
    if mv.stage != stage:
        raise Invalid(f"model version {mv.name} belongs to stage {mv.stage!r}, not {stage!r}")
    return mv


def load_version(mv: ModelVersion, taxonomy, device: str = "auto"):
    """The version's stage, loaded from its model file once the file's sha256 matches the
    registered one (:func:`services.training.registry.verified_artifact`)."""
    from core.config import get_settings
    from models.registry import stage_class
    from services.training.registry import verified_artifact

    verified_artifact(mv)
    # every stage's load takes keyword options and ignores those it has no use for
    cpu_int8 = get_settings().cpu_int8  # the ResNet part classifier's int8 switch
    return stage_class(mv.stage).load(mv.path, taxonomy=taxonomy, device=device, cpu_int8=cpu_int8)


#: photos per model call when pre-annotating (see :func:`predict_stage`)
PREDICT_BATCH = 8


def part_model_version(session: Session, stage: str) -> ModelVersion | None:
    """The part model that says which part ``stage``'s instances sit on (the stage's
    ``parts_from``): that part stage's promoted version, else its rival's; None when the stage
    names none or none is promoted."""
    from models.registry import stage_info
    from services.training.registry import current

    source = stage_info(stage).parts_from
    if source is None:
        return None
    for name in (source, *stage_info(source).rivals):
        mv = current(session, name)
        if mv is not None:
            return mv
    return None


class PartLocator:
    """Adds ``data["part"]`` (:func:`core.damage_parts.locate_on_parts`) to a stage's results
    from the promoted part model's predictions on the same photos; does nothing when the stage
    names no part stage or none is promoted (its model loads on first use)."""

    def __init__(self, session: Session, stage: str, taxonomy, device: str = "auto"):
        self.version = part_model_version(session, stage)
        self.taxonomy = taxonomy
        self.device = device
        self._model = None

    def __call__(self, images: list, results: list) -> None:
        from core.damage_parts import locate_on_parts

        if self.version is None or not images:
            return
        if self._model is None:
            self._model = load_version(self.version, self.taxonomy, self.device)
        parts = self._model.predict(images)
        for img, res, part in zip(images, results, parts, strict=True):
            h, w = img.shape[:2]
            found = locate_on_parts(res.instances, part.instances, self.taxonomy, h, w)
            if len(res.instances):
                res.instances.data["part"] = found
            res.meta["parts_from"] = self.version.name


def predict_stage(
    session: Session,
    project: Project,
    stage: str,
    *,
    version: str | int | None = None,
    limit: int | None = None,
    image_ids: list[int] | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Run a version over the project's images it has not processed yet (of ``image_ids``
    only, when given); returns how many it did.

    Photos go to the model :data:`PREDICT_BATCH` at a time (the pipeline overlaps YOLO and
    ResNet across the photos of one call). Each image's predictions and its
    ``ImagePrediction`` row are committed together, so a stopped run loses at most the
    batch in flight, never half an image, and the next run resumes after the last commit.
    """
    from models.registry import prompted_stages
    from services.accounts.projects import project_taxonomy
    from services.labelling.images import load_image_array
    from services.training.bar import may_pre_annotate
    from services.training.predictions import store_predictions

    if stage in prompted_stages():
        raise Invalid(
            f"{stage!r} answers a box or a click in the workspace and does not pre-annotate photos; "
            f"its promoted version is used by the assistance (POST /api/images/{{id}}/assist)"
        )
    mv = resolve_version(session, stage, version)
    allowed = may_pre_annotate(mv)
    if not allowed.passes:
        raise Invalid(
            f"{mv.name} does not pre-annotate: it is {allowed.sentence}; annotators would see "
            "its suggestions on every photo. Promote it by hand, confirming, to use it anyway"
        )
    taxonomy = project_taxonomy(project)
    done = select(ImagePrediction.image_id).where(ImagePrediction.model_version_id == mv.id)
    stmt = select(Image).where(Image.project_id == project.id, Image.id.not_in(done))
    if image_ids is not None:
        stmt = stmt.where(Image.id.in_(image_ids))
    todo = session.exec(stmt.order_by(Image.import_order, Image.id)).all()
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        return 0
    model = load_version(mv, taxonomy, device)
    locate = PartLocator(session, stage, taxonomy, device)
    n = 0
    for start in range(0, len(todo), PREDICT_BATCH):
        if should_stop and should_stop():
            break
        batch = todo[start : start + PREDICT_BATCH]
        arrays = [load_image_array(img) for img in batch]
        results = model.predict(arrays)
        locate(arrays, results)
        for img, res in zip(batch, results, strict=True):
            store_predictions(session, img, mv, res, taxonomy)
            session.commit()
            n += 1
            if progress:
                progress(n, len(todo), {"image_id": img.id, "instances": len(res.instances)})
    return n


def evaluate_stage(
    session: Session,
    project: Project,
    stage: str,
    *,
    version: str | int | None = None,
    device: str = "auto",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Measure a version on the held-out split (``test``); stores the figures in its metrics.
    ``progress(done, total, info)`` is called as the held-out photos are predicted."""
    from services.accounts.projects import project_taxonomy
    from services.training.registry import HOLDOUT_SPLIT

    mv = resolve_version(session, stage, version)
    data = training_set(session, project, lambda r: r.split == HOLDOUT_SPLIT)
    if not len(data):
        raise Invalid(
            f"the held-out split ({HOLDOUT_SPLIT!r}) has no labelled images; label some held-out images "
            f"before evaluating"
        )
    model = load_version(mv, project_taxonomy(project), device)
    figures = model.evaluate(data, progress=progress)
    mv.metrics = {**(mv.metrics or {}), "holdout": figures}
    session.add(mv)
    session.flush()
    sync_offered_predictions(session, mv.stage)  # found below its bar: its predictions leave
    return {"version": mv.name, "images": len(data), **figures}


def predict_photo(
    session: Session,
    project: Project,
    stage: str,
    image_id: int,
    *,
    threshold: float,
    device: str = "auto",
) -> dict[str, Any]:
    """Run ``stage``'s promoted version on one photo with its score threshold lowered to
    ``threshold``, replacing that version's pending predictions of the photo. For a lead
    looking at a model that shows nothing: what it sees just below its threshold.

    Returns ``{"version", "image_id", "threshold", "predictions"}``. Raises Invalid for a
    threshold outside (0, 1) or a stage without a threshold, NotFound for an unknown photo
    or a stage with no promoted version.
    """
    from models.registry import prompted_stages
    from services.accounts.projects import project_taxonomy
    from services.labelling.images import load_image_array
    from services.training.predictions import instances_to_rows, score_threshold
    from services.training.registry import current

    if not 0.0 < threshold < 1.0:
        raise Invalid(f"threshold must be between 0 and 1 (exclusive), got {threshold}")
    if stage in prompted_stages():
        raise Invalid(f"{stage!r} answers prompts in the workspace; it has no photo threshold")
    mv = current(session, stage)
    if mv is None:
        raise NotFound(f"stage {stage!r} has no promoted version; train and promote one first")
    image = session.get(Image, image_id)
    if image is None or image.project_id != project.id:
        raise NotFound(f"photo {image_id} is not in project {project.name}")
    field = score_threshold(mv.config)
    if field is None:
        raise Invalid(f"{mv.name} has no score threshold in its config to lower")
    taxonomy = project_taxonomy(project)
    model = load_version(mv, taxonomy, device)
    model.config = model.config.with_(**{field[0]: float(threshold)})
    array = load_image_array(image)
    result = model.predict([array])[0]
    PartLocator(session, stage, taxonomy, device)([array], [result])
    old = session.exec(
        select(Prediction).where(
            Prediction.image_id == image_id,
            Prediction.model_version_id == mv.id,
            Prediction.state == "pending",
        )
    ).all()
    for p in old:
        session.delete(p)
    rows = instances_to_rows(
        result.instances, image_id=image_id, model_version_id=mv.id, taxonomy=taxonomy
    )
    session.add_all(rows)
    session.flush()
    return {
        "version": mv.name,
        "image_id": image_id,
        "threshold": float(threshold),
        "predictions": len(rows),
    }
