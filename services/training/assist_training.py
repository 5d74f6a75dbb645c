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
from typing import Any

from sqlalchemy import ColumnElement
from sqlmodel import Session, func, select

from core.config import env_name, get_settings
from db.models import LABELLED_STATUSES, Annotation, Image, ModelVersion, Project
from services.training.autotrain import AutoTrainPolicy
from services.training.lifecycle import ProgressFor, self_train

log = logging.getLogger(__name__)

JOB_KIND = "assist_autotrain"
STAGE = "assist_net"


# ---------- the trigger ----------


def labelled_polygons_expr(project_id: int) -> ColumnElement[int]:
    """Annotations (not deleted) on the project's labelled or reviewed photos: one COUNT."""
    return (
        select(func.count(Annotation.id))
        .join(Image, Image.id == Annotation.image_id)
        .where(
            Image.project_id == project_id,
            Image.status.in_(LABELLED_STATUSES),
            Annotation.deleted == False,  # noqa: E712
        )
        .scalar_subquery()
    )


def labelled_polygons(session: Session, project: Project) -> int:
    """:func:`labelled_polygons_expr` of ``project``."""
    return int(session.exec(select(labelled_polygons_expr(project.id))).one())


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
    settings="assist",
    count_expr=labelled_polygons_expr,
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
    its held-out box-prompt mean IoU beats the incumbent's (the promoted assist_net, else
    GrabCut, measured now on the same parts), through the one lifecycle
    (``services.training.lifecycle``). A loser is not kept.

    Returns ``{"version", "mean_iou", "incumbent", "incumbent_mean_iou", "promoted",
    "parts", "polygons", "train_seconds", "reason"}``; ``version`` is None when the new net
    lost and was not kept. Raises Invalid when there is nothing to train on or to measure.
    """
    from models.registry import config_class

    settings = get_settings()
    cfg = config_class(STAGE).from_preset(
        config or settings.assist_autotrain_config.value,
        device=device or settings.device,
        epochs=epochs or settings.assist_autotrain_epochs,
    )
    outcome = self_train(
        session,
        project,
        POLICY,
        cfg,
        device="cpu",
        progress_for=progress_for,
    )
    mv, figures = outcome.version, outcome.figures or {}
    against = outcome.opponent
    return {
        "version": {"id": mv.id, "name": mv.name, "metrics": mv.metrics} if mv else None,
        "mean_iou": figures.get("mean_iou"),
        "incumbent": against.name if against is not None else None,
        "incumbent_mean_iou": against.holdout.get("mean_iou") if against is not None else None,
        "promoted": outcome.promoted,
        "parts": figures.get("parts"),
        "polygons": outcome.extra["polygons"],
        "train_seconds": round(outcome.train_seconds, 2),
        "reason": outcome.reason,
    }
