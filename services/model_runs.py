"""Train, run and evaluate model stages against the project's database.

- :func:`train_stage` snapshots the labelled images (not the held-out split), trains a
  stage, and registers the artifact as ``<stage>-vN`` with its sha256 and metrics
  (``services.registry.register_version``).
- :func:`predict_stage` pre-annotates: it runs a version over the images it has not yet
  processed (an ``ImagePrediction`` row marks an image as done), committing image by image,
  so it can be interrupted and resumed.
- :func:`evaluate_stage` measures a version on the held-out split and stores the figures.
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

#: Stage -> the taxonomy group its training needs labels of.
STAGE_GROUPS = {
    "albert": None,
    "yolo_seg": "part",
    "part_classifier": None,
    "pipeline": None,
    "mask_rcnn": "damage",
    "assist_net": None,
}

#: Stages that need a person's prompt (a box or a click) to predict: they are trained,
#: evaluated and promoted like the others but never pre-annotate photos on their own.
PROMPTED_STAGES = frozenset({"assist_net"})


def _training_set(session: Session, project: Project, split_filter: Callable[[ImageRecord], bool]):
    from models.base import TrainingSet
    from services.exports import collect_records
    from services.projects import project_taxonomy
    from services.registry import LABELLED_STATUSES

    records: list[ImageRecord] = []
    for status in LABELLED_STATUSES:
        records += collect_records(session, project, status=status.value)
    records = [r for r in records if split_filter(r) and len(r.instances)]
    return TrainingSet(records, project_taxonomy(project))


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
) -> ModelVersion | None:
    """Train ``stage`` on the labelled, not held-out images and register a new version.

    Under ``torchrun`` (DDP, torch stages) every rank trains and only rank 0 registers; the
    other ranks return None.
    """
    from models.registry import build, config_class
    from services.registry import (
        HOLDOUT_SPLIT,
        artifact_tmp_path,
        register_version,
        training_snapshot,
    )

    cfg = config_class(stage).from_preset(config, device=device, epochs=epochs)
    data = _training_set(session, project, lambda r: r.split != HOLDOUT_SPLIT)
    if not len(data):
        raise Invalid(
            f"no labelled images with annotations to train {stage!r} on; label some images "
            f"(status labelled or reviewed) first"
        )
    snapshot = training_snapshot(session, project)
    st = build(stage, cfg, taxonomy=data.taxonomy) if stage != "assist_net" else build(stage, cfg)
    tmp = artifact_tmp_path(stage)
    result = st.train(data, cfg, progress=progress, out_path=tmp)
    metrics = dict(result.metrics)
    if int(os.environ.get("RANK", "0")) != 0:
        return None  # under torchrun only rank 0 registers the version
    return register_version(
        session,
        stage=stage,
        artifact_path=result.artifact_path,
        metrics=metrics,
        config=cfg.to_dict(),
        train_snapshot=snapshot,
        promote=promote,
    )


def resolve_version(session: Session, stage: str, version: str | int | None) -> ModelVersion:
    """``version`` as ``albert-v3``, ``3``, ``v3`` or None (the promoted one, else the newest)."""
    from services.registry import current, get_version, versions

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
    from core.config import get_settings
    from models.registry import stage_class

    # every stage's load takes keyword options and ignores those it has no use for
    cpu_int8 = get_settings().cpu_int8  # PANELBEATER_CPU_INT8: the ResNet part classifier's
    return stage_class(mv.stage).load(mv.path, taxonomy=taxonomy, device=device, cpu_int8=cpu_int8)


def _fp16(a: np.ndarray | None) -> bytes | None:
    return None if a is None else np.asarray(a, dtype=np.float16).tobytes()


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
    from services.images import load_image_array
    from services.projects import project_taxonomy

    if stage in PROMPTED_STAGES:
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
            _store_predictions(session, img, mv, res, taxonomy)
            session.commit()
            n += 1
            if progress:
                progress(n, len(todo), {"image_id": img.id, "instances": len(res.instances)})
    return n


def _store_predictions(session: Session, img: Image, mv: ModelVersion, res, taxonomy) -> None:
    inst = res.instances
    for i in range(len(inst)):
        cid = int(inst.class_ids[i])
        group = taxonomy.by_id(cid).group if cid in taxonomy else "part"
        extra = {key: _jsonable(col[i]) for key, col in inst.data.items()}
        session.add(
            Prediction(
                image_id=img.id,
                model_version_id=mv.id,
                class_id=cid,
                group=group,
                geometry=inst.shapes[i].to_json(),
                score=float(inst.scores[i]),
                probs={h: [round(float(v), 6) for v in p[i]] for h, p in inst.probs.items()},
                embedding=_fp16(None if inst.embeddings is None else inst.embeddings[i]),
                extra=extra,
            )
        )
    session.add(
        ImagePrediction(
            image_id=img.id, model_version_id=mv.id, embedding=_fp16(res.image_embedding)
        )
    )


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def evaluate_stage(
    session: Session,
    project: Project,
    stage: str,
    *,
    version: str | int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Measure a version on the held-out split (``test``); stores the figures in its metrics."""
    from services.projects import project_taxonomy
    from services.registry import HOLDOUT_SPLIT

    mv = resolve_version(session, stage, version)
    data = _training_set(session, project, lambda r: r.split == HOLDOUT_SPLIT)
    if not len(data):
        raise Invalid(
            f"the held-out split ({HOLDOUT_SPLIT!r}) has no labelled images; label some held-out images "
            f"before evaluating"
        )
    model = load_version(mv, project_taxonomy(project), device)
    if hasattr(model, "evaluate"):
        figures = model.evaluate(data)
    else:
        figures = _generic_evaluate(model, data)
    mv.metrics = {**(mv.metrics or {}), "holdout": figures}
    session.add(mv)
    session.flush()
    return {"version": mv.name, "images": len(data), **figures}


def _generic_evaluate(model, data) -> dict[str, Any]:
    from models.albert.metrics import classification_metrics, coco_mask_ap

    pairs = []
    for i, rec in enumerate(data.records):
        img = data.load_image(i)
        pairs.append((model.predict([img])[0].instances, rec.instances, img.shape[0], img.shape[1]))
    out: dict[str, Any] = {}
    for g in ("damage", "part"):
        out[g] = classification_metrics(pairs, data.taxonomy, g)
        out[g]["coco"] = coco_mask_ap(pairs, data.taxonomy, g)
    return out


def assist_net_path(session: Session) -> Path | None:
    """The assist_net file the assistance should use: the promoted version (a lead's rollback
    included), else the newest registered one; None when none is registered."""
    try:
        mv = resolve_version(session, "assist_net", None)
    except NotFound:
        return None
    return Path(mv.path) if Path(mv.path).is_file() else None


def project_assistant(session: Session) -> Any:
    """The assistance back end for the workspace: the configured SAM, else the registry's
    assist_net (see :func:`assist_net_path`), else GrabCut. ``.backend`` names it."""
    from core.config import get_settings
    from models.assist import make_assistant

    return make_assistant(get_settings(), assist_net_path=assist_net_path(session))


#: The API's assistance works on photos scaled to this longest side (api/routes/assist.py);
#: pre-computed embeddings must be of the same pixels to hit the cache.
ASSIST_MAX_SIDE = 1024


def embed_images(
    session: Session,
    project: Project,
    image_ids: list[int],
    *,
    max_side: int = ASSIST_MAX_SIDE,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Pre-compute the assistance back end's per-image work (SAM's embedding, written to the
    disk cache) for the given images, so the annotator's first click costs only the decoder.
    Back ends without an expensive embedding (assist_net, GrabCut) are a no-op."""
    from services.images import load_image_array

    assistant = project_assistant(session)
    if not hasattr(assistant, "cache"):
        return {"backend": assistant.backend, "embedded": 0, "cached": 0}
    embedded = cached = 0
    for k, image_id in enumerate(image_ids):
        img = session.get(Image, image_id)
        if img is None or img.project_id != project.id:
            continue
        assistant.set_image(load_image_array(img, max_side=max_side))
        cached += int(assistant.last_embedding_cached)
        embedded += int(not assistant.last_embedding_cached)
        if progress:
            progress(k + 1, len(image_ids), {"image_id": image_id})
    return {"backend": assistant.backend, "embedded": embedded, "cached": cached}
