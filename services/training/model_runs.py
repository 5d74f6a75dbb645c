"""Train, run and evaluate model stages against the project's database.

- :func:`train_stage` snapshots the labelled images (not the held-out split), trains a
  stage, and registers the artifact as ``<stage>-vN`` with its sha256 and metrics
  (``services.training.registry.register_version``).
- :func:`predict_stage` pre-annotates: it runs a version over the images it has not yet
  processed (an ``ImagePrediction`` row marks an image as done), committing image by image,
  so it can be interrupted and resumed.
- :func:`evaluate_stage` measures a version on the held-out split and stores the figures.
- :func:`evaluate_and_promote` is the promotion rule every new version goes through (a
  round's and ``panelbeater train``'s): measured on the held-out split, promoted only when
  its primary metric beats the promoted version's, or, for a stage's first version that
  replaces a weight-free back end (``assist_net`` replaces GrabCut), that back end's.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session, select

from core.records import ImageRecord
from db.models import Image, ImagePrediction, ModelVersion, Prediction, Project
from services.errors import Invalid, NotFound

Progress = Callable[[int, int, dict[str, Any]], None]


def training_set(
    session: Session,
    project: Project,
    split_filter: Callable[[ImageRecord], bool],
    snapshot: dict[str, Any] | None = None,
):
    """The labelled records that pass ``split_filter``; with a round's ``snapshot``, exactly
    its images with their annotations as they were when it was taken (later saves are read
    back from the revision history)."""
    from models.data import TrainingSet
    from services.accounts.projects import project_taxonomy
    from services.training.records import collect_records
    from services.training.registry import LABELLED_STATUSES

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
    from services.labelling.annotations import revision_instances
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
    return records


def train_stage(
    session: Session,
    project: Project,
    stage: str,
    *,
    config: str = "tiny",
    epochs: int | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    promote: bool = False,
    train_snapshot: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    warm_from: ModelVersion | None = None,
    evaluate: bool = False,
    force_promote: bool = False,
) -> ModelVersion | None:
    """Train ``stage`` on the labelled, not held-out images and register a new version.

    ``evaluate`` (``panelbeater train`` sets it): choose the held-out split first if none
    exists yet, and measure the new version on it (:func:`evaluate_and_promote`); then
    ``promote`` promotes it only when it beats the promoted version, ``force_promote``
    regardless. Without ``evaluate``, ``promote`` promotes at once (the caller evaluates).

    A round passes its ``train_snapshot`` (:func:`services.training.registry.training_snapshot`) so
    that every stage it trains learns from the same images and annotation revisions, and
    each version records that one snapshot.

    ``warm_from`` (a round passes the stage's promoted version) fine-tunes that version
    instead of starting from scratch, on half the preset's epochs unless epochs are given;
    the new version records it as ``warm_from`` and is its child.

    Under ``torchrun`` (DDP, torch stages) every rank trains and only rank 0 registers; the
    other ranks return None.
    """
    from models.registry import build, config_class
    from services.training.registry import (
        HOLDOUT_SPLIT,
        artifact_tmp_path,
        ensure_holdout,
        register_version,
        training_snapshot,
        verified_artifact,
    )

    options = dict(options or {})
    if evaluate and train_snapshot is None:
        ensure_holdout(session, project)  # so the held-out photos stay out of training
        # commit the split now: training takes minutes, and an open write would hold every
        # save of the project behind it (SQLite's lock, PostgreSQL's row locks)
        session.commit()
    started_from = None
    if weights is not None:
        field, started_from = _start_weights(stage, weights)
        options[field] = str(started_from["path"])
    # --set wins over --epochs/--device when both name a field
    cfg = config_class(stage).from_preset(config, **{"device": device, "epochs": epochs, **options})
    snapshot = train_snapshot or training_snapshot(session, project)
    data = training_set(session, project, lambda r: r.split != HOLDOUT_SPLIT, snapshot)
    if not len(data):
        raise Invalid(
            f"no labelled images with annotations to train {stage!r} on; label some images "
            f"(status labelled or reviewed) first"
        )
    if warm_from is not None and epochs is None and "epochs" not in options:
        cfg = cfg.with_(epochs=max(1, cfg.epochs // 2))
    st = build(stage, cfg, taxonomy=data.taxonomy)
    if warm_from is not None:
        st.warm_start(verified_artifact(warm_from))
    tmp = artifact_tmp_path(stage)
    result = st.train(data, cfg, progress=progress, out_path=tmp)
    metrics = dict(result.metrics)
    if int(os.environ.get("RANK", "0")) != 0:
        return None  # under torchrun only rank 0 registers the version
    mv = register_version(
        session,
        stage=stage,
        artifact_path=result.artifact_path,
        metrics=metrics,
        config={**cfg.to_dict(), **_provenance(started_from, warm_from)},
        train_snapshot=snapshot,
        parent_id=warm_from.id if warm_from is not None else None,
        promote=(promote or force_promote) and not evaluate,
    )
    if evaluate:
        evaluate_and_promote(
            session, project, mv, promote=promote, force=force_promote, device=device
        )
    return mv


def _provenance(started_from: dict[str, str] | None, warm_from: ModelVersion | None) -> dict:
    """What a new version started from: a weights file, and/or an earlier version."""
    out: dict[str, Any] = {}
    if started_from:
        out["started_from"] = started_from
    if warm_from is not None:
        out["warm_from"] = {"version": warm_from.name, "sha256": warm_from.sha256}
    return out


def _start_weights(stage: str, weights: str | Path) -> tuple[str, dict[str, str]]:
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


def predict_stage(
    session: Session,
    project: Project,
    stage: str,
    *,
    version: str | int | None = None,
    limit: int | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> int:
    """Run a version over the project's images it has not processed yet; returns how many it did.

    Photos go to the model :data:`PREDICT_BATCH` at a time (the pipeline overlaps YOLO and
    ResNet across the photos of one call). Each image's predictions and its
    ``ImagePrediction`` row are committed together, so a stopped run loses at most the
    batch in flight, never half an image, and the next run resumes after the last commit.
    """
    from models.registry import prompted_stages
    from services.accounts.projects import project_taxonomy
    from services.labelling.images import load_image_array
    from services.training.predictions import store_predictions

    if stage in prompted_stages():
        raise Invalid(
            f"{stage!r} answers a box or a click in the workspace and does not pre-annotate photos; "
            f"its promoted version is used by the assistance (POST /api/images/{{id}}/assist)"
        )
    mv = resolve_version(session, stage, version)
    taxonomy = project_taxonomy(project)
    done = select(ImagePrediction.image_id).where(ImagePrediction.model_version_id == mv.id)
    todo = session.exec(
        select(Image)
        .where(Image.project_id == project.id, Image.id.not_in(done))
        .order_by(Image.import_order, Image.id)
    ).all()
    if limit is not None:
        todo = todo[:limit]
    if not todo:
        return 0
    model = load_version(mv, taxonomy, device)
    n = 0
    for start in range(0, len(todo), PREDICT_BATCH):
        if should_stop and should_stop():
            break
        batch = todo[start : start + PREDICT_BATCH]
        results = model.predict([load_image_array(img) for img in batch])
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
    return {"version": mv.name, "images": len(data), **figures}


#: Stages whose first version replaces a weight-free back end, and how that back end is
#: built: the first version must beat it on the same held-out prompts to be promoted.
WEIGHT_FREE_BASELINES = {"assist_net": ("grabcut", "models.assist.grabcut:GrabCutAssistant")}


def baseline_figures(
    session: Session, project: Project, stage: str, progress: Progress | None = None
) -> tuple[str, dict[str, float]] | None:
    """(name, held-out figures) of the weight-free back end ``stage``'s first version
    replaces (GrabCut for ``assist_net``, measured with box prompts on every held-out part,
    as ``assist_net`` itself is); None for a stage that replaces nothing."""
    import importlib

    from models.assist.learned import evaluate_box_prompts
    from services.training.registry import HOLDOUT_SPLIT

    if stage not in WEIGHT_FREE_BASELINES:
        return None
    name, target = WEIGHT_FREE_BASELINES[stage]
    module, cls = target.split(":")
    assistant = getattr(importlib.import_module(module), cls)()
    data = training_set(session, project, lambda r: r.split == HOLDOUT_SPLIT)

    def mask(image, box):
        h, w = image.shape[:2]
        if assistant._image is not image:
            assistant.set_image(image)
        shape = assistant.predict(box=box).shape
        return shape.to_mask(h, w) if shape is not None else np.zeros((h, w), dtype=bool)

    return name, evaluate_box_prompts(mask, data, None, progress=progress)


def evaluate_and_promote(
    session: Session,
    project: Project,
    mv: ModelVersion,
    *,
    promote: bool = True,
    force: bool = False,
    device: str = "auto",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Measure a new version on the held-out split, then apply the promotion rule.

    Promoted when ``force``, or when ``promote`` and :func:`services.training.registry.is_better`
    says it beats the promoted version (for a first ``assist_net``: GrabCut on the same
    held-out parts). A version that cannot be measured (no labelled held-out photos) is
    promoted only as a stage's first version with nothing to replace, or when forced.
    The decision is stored in ``mv.metrics["promotion"]`` and returned:
    ``{"version", "evaluated", "promoted", "reason"}``.
    """
    from services.training.registry import current, is_better, set_promoted

    evaluated, note = True, ""
    try:
        evaluate_stage(
            session, project, mv.stage, version=mv.name, device=device, progress=progress
        )
    except Invalid as e:
        evaluated, note = False, f"not measured on held-out photos ({e})"
    incumbent = current(session, mv.stage)
    incumbent = incumbent if incumbent is not None and incumbent.id != mv.id else None
    baseline = None
    if incumbent is None and evaluated:
        baseline = baseline_figures(session, project, mv.stage)
    elif incumbent is None and mv.stage in WEIGHT_FREE_BASELINES:
        baseline = (WEIGHT_FREE_BASELINES[mv.stage][0], {})
    better, why = is_better(mv, incumbent, baseline=baseline)
    promoted = force or (promote and better)
    if promoted:
        set_promoted(session, mv)
    reason = "; ".join(x for x in (note, why) if x)
    if force and not better:
        reason += "; promoted by override"
    elif not promoted:
        kept = incumbent.name if incumbent else (baseline[0] if baseline else None)
        if not promote:
            reason += "; not promoted (promotion was not asked for)"
        else:
            reason += f"; not promoted (kept {kept})" if kept else "; not promoted"
    metrics = dict(mv.metrics or {})
    if baseline is not None and baseline[1]:
        metrics["baseline"] = {baseline[0]: baseline[1]}
    kept = promoted or incumbent is not None or mv.stage not in WEIGHT_FREE_BASELINES
    if not kept:
        # With no promoted version the assistance takes the newest assist_net file, so a
        # first version that lost to GrabCut would serve anyway: it is not kept (as
        # services.training.assist_training does with its losers).
        reason += "; the version was not kept"
    metrics["promotion"] = {"promoted": promoted, "reason": reason}
    mv.metrics = metrics
    session.add(mv)
    session.flush()
    if not kept:
        Path(mv.path).unlink(missing_ok=True)
        session.delete(mv)
        session.flush()
    return {
        "version": mv.name,
        "evaluated": evaluated,
        "promoted": promoted,
        "kept": kept,
        "reason": reason,
    }


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
    result = model.predict([load_image_array(image)])[0]
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
