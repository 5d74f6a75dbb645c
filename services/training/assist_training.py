"""Assistance that trains itself: once a project holds enough labelled polygons, a background
job trains ``assist_net`` and promotes it only when it beats the current back end.

Its :data:`POLICY` (``services.training.autotrain``) queues the job once the project holds
``assist_autotrain_min_polygons`` labelled polygons, then again each time they grew by
``assist_autotrain_growth`` (default a half) since the newest assist_net was trained or the
last auto-training job was queued.

"Labelled polygons" are the annotations, not deleted, on photos that are ``labelled`` or
``reviewed`` (held-out photos included). A version records the count it was trained at in
``train_snapshot["polygons"]``; for a version trained otherwise (a round, ``panelbeater
train``) the annotations on its snapshot's photos stand in.

The job (:func:`train_and_compare`, job kind :data:`JOB_KIND`) trains on the labelled, not
held-out photos, then measures the new net and the incumbent (the promoted assist_net, else
GrabCut) on the same held-out parts: mean IoU of the mask each back end draws from the
part's box. Only a strictly better new net is registered, and promoted; a loser is not kept,
because an unpromoted newest assist_net would serve the workspace when none is promoted
(``services.training.assist.assist_net_path``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session, func, select

from core.config import env_name, get_settings
from db.models import Annotation, Image, ModelVersion, Project
from services.errors import Invalid
from services.training.autotrain import AutoTrainPolicy
from services.training.registry import HOLDOUT_SPLIT, LABELLED_STATUSES

log = logging.getLogger(__name__)

JOB_KIND = "assist_autotrain"
STAGE = "assist_net"
#: Held-out parts each back end is measured on (the first ones, in photo order).
EVAL_PARTS = 200
#: ``session.info`` keys: the project whose check waits for the session's commit; whether
#: the session's commit and rollback listeners are in place.

Progress = Callable[[int, int, dict[str, Any]], None]
#: ``progress_for(stage, (lo, hi))``: a job's progress callback for one phase
#: (``jobs.context.JobContext.progress_callback``).
ProgressFor = Callable[[str, tuple[float, float]], Progress]


# ---------- the trigger ----------


def labelled_polygons(session: Session, project: Project) -> int:
    """Annotations (not deleted) on ``project``'s labelled or reviewed photos: one COUNT."""
    return session.exec(
        select(func.count(Annotation.id))
        .join(Image, Image.id == Annotation.image_id)
        .where(
            Image.project_id == project.id,
            Image.status.in_(LABELLED_STATUSES),
            Annotation.deleted == False,  # noqa: E712
        )
    ).one()


def _version_polygons(session: Session, mv: ModelVersion) -> int:
    snap = mv.train_snapshot or {}
    if isinstance(snap.get("polygons"), int):
        return snap["polygons"]
    ids = [int(i) for i in snap.get("image_ids", [])]
    if not ids:
        return 0
    return session.exec(
        select(func.count(Annotation.id)).where(
            Annotation.image_id.in_(ids),
            Annotation.deleted == False,  # noqa: E712
        )
    ).one()


#: Trains once the project holds ``assist_autotrain_min_polygons`` labelled polygons, then
#: again each time they grew by ``assist_autotrain_growth``.
POLICY = AutoTrainPolicy(
    stage=STAGE,
    job_kind=JOB_KIND,
    unit="polygons",
    count=labelled_polygons,
    enabled=lambda s: s.assist_autotrain,
    minimum=lambda s: s.assist_autotrain_min_polygons,
    growth=lambda s: s.assist_autotrain_growth,
    version_count=_version_polygons,
)


def autotrain_summary(session: Session, project: Project) -> str:
    """One line for the dashboard: where the project stands with auto-training."""
    settings = get_settings()
    if not settings.assist_autotrain:
        return f"Assist net auto-training: off ({env_name('assist_autotrain')})"
    job = POLICY.pending_job(session, project)
    if job is not None:
        return f"Assist net auto-training: job {job.id} {job.status.value}"
    n = labelled_polygons(session, project)
    return (
        f"Assist net auto-training: {n} labelled polygons, next training at "
        f"{POLICY.next_threshold(session, project)}"
    )


# ---------- the job ----------


def box_prompt_figures(assistant, data, progress: Progress | None = None) -> dict[str, float]:
    """``models.assist.learned.evaluate_box_prompts`` of an assistance back end used as the
    workspace uses it (``set_image``, then ``predict(box=...)``, traced into polygons)."""
    from models.assist.learned import evaluate_box_prompts

    def mask(image: np.ndarray, box: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if assistant._image is not image:
            assistant.set_image(image)
        shape = assistant.predict(box=box).shape
        return shape.to_mask(h, w) if shape is not None else np.zeros((h, w), dtype=bool)

    return evaluate_box_prompts(mask, data, EVAL_PARTS, progress=progress)


def _incumbent(session: Session, project: Project):
    """(name, assistant) of the back end a new net must beat: promoted assist_net, else GrabCut."""
    from models.assist.grabcut import GrabCutAssistant
    from models.assist.learned import LearnedAssistant
    from services.accounts.projects import project_taxonomy
    from services.training.model_runs import load_version
    from services.training.registry import current

    mv = current(session, STAGE)
    if mv is None:
        return "grabcut", GrabCutAssistant()
    stage = load_version(mv, project_taxonomy(project), device="cpu")
    return mv.name, LearnedAssistant(stage, version=mv.name)


def train_and_compare(
    session: Session,
    project: Project,
    *,
    config: str | None = None,
    epochs: int | None = None,
    device: str | None = None,
    progress_for: ProgressFor | None = None,
) -> dict[str, Any]:
    """Train assist_net on ``project``'s labelled, not held-out photos and promote it when
    its held-out box-prompt mean IoU beats the incumbent's (strictly).

    Returns ``{"version", "mean_iou", "incumbent", "incumbent_mean_iou", "promoted",
    "parts", "polygons", "train_seconds", "reason"}``; ``version`` is None when the new net
    lost and was not kept. Raises Invalid when there is nothing to train on or to measure.
    """
    from models.assist.learned import LearnedAssistant
    from models.registry import build, config_class
    from services.training.model_runs import training_set
    from services.training.registry import (
        artifact_tmp_path,
        ensure_holdout,
        register_version,
        training_snapshot,
    )

    settings = get_settings()

    def phase(name: str, span: tuple[float, float]) -> Progress | None:
        return progress_for(name, span) if progress_for else None

    ensure_holdout(session, project)
    # commit the split now: training takes minutes, and an open write would hold every
    # save of the project behind it (SQLite's lock, PostgreSQL's row locks)
    session.commit()
    held = training_set(session, project, lambda r: r.split == HOLDOUT_SPLIT)
    if not len(held):
        raise Invalid(
            f"the held-out split ({HOLDOUT_SPLIT!r}) has no labelled photos with polygons to "
            "compare assistance back ends on; label some held-out photos first"
        )
    snapshot = {**training_snapshot(session, project)}
    snapshot["polygons"] = labelled_polygons(session, project)
    data = training_set(session, project, lambda r: r.split != HOLDOUT_SPLIT, snapshot)
    if not len(data):
        raise Invalid(
            "no labelled photos with polygons outside the held-out split to train assist_net on"
        )
    cfg = config_class(STAGE).from_preset(
        config or settings.assist_autotrain_config,
        device=device or settings.device,
        epochs=epochs or settings.assist_autotrain_epochs,
    )
    stage = build(STAGE, cfg, taxonomy=data.taxonomy)
    tmp = artifact_tmp_path(STAGE)
    t0 = time.perf_counter()
    result = stage.train(data, cfg, progress=phase("training assist_net", (0.0, 0.7)), out_path=tmp)
    train_seconds = time.perf_counter() - t0
    try:
        new = box_prompt_figures(
            LearnedAssistant(stage), held, phase("measuring the new assist_net", (0.7, 0.85))
        )
        name, assistant = _incumbent(session, project)
        old = box_prompt_figures(assistant, held, phase(f"measuring {name}", (0.85, 1.0)))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    better = new["mean_iou"] > old["mean_iou"]
    reason = (
        f"held-out box prompts ({new['parts']} parts): new assist_net mean IoU "
        f"{new['mean_iou']:.4f} vs {name} {old['mean_iou']:.4f}"
    )
    out: dict[str, Any] = {
        "version": None,
        "mean_iou": new["mean_iou"],
        "incumbent": name,
        "incumbent_mean_iou": old["mean_iou"],
        "promoted": better,
        "parts": new["parts"],
        "polygons": snapshot["polygons"],
        "train_seconds": round(train_seconds, 2),
        "reason": reason + ("; promoted" if better else "; not kept"),
    }
    if not better:
        Path(result.artifact_path).unlink(missing_ok=True)
        return out
    metrics = {
        **result.metrics,
        "holdout": new,
        "autotrain": {"incumbent": name, "incumbent_holdout": old},
    }
    mv = register_version(
        session,
        stage=STAGE,
        artifact_path=result.artifact_path,
        metrics=metrics,
        config=cfg.to_dict(),
        train_snapshot=snapshot,
        promote=True,
    )
    out["version"] = {"id": mv.id, "name": mv.name, "metrics": mv.metrics}
    return out
