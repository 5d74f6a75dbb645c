"""A part pre-annotator that trains itself on a CPU: once a project with no promoted
``part_seg`` holds enough labelled photos, a background job trains ``part_seg`` and promotes
it only when it beats the promoted YOLO part model, if any, on held-out mask AP50.

Its :data:`POLICY` (``services.training.autotrain``) queues the job once the project holds
``part_seg_autotrain_min_photos`` labelled photos with part polygons and no part_seg is promoted (once one is,
rounds carry it on, warm-started), then again only after ``part_seg_autotrain_growth``.

"Labelled photos" are the project's photos whose status is ``labelled`` or ``reviewed``
(held-out ones included) and that hold a part polygon: a project that labels damage only gets
a sentence on the dashboard, never a job that fails for want of parts.

The job (:func:`train_and_compare`, job kind :data:`JOB_KIND`) trains on the labelled, not
held-out photos for ``part_seg_time_budget_s`` seconds, measures the new model on the
held-out split (``PartSegStage.evaluate``: mask AP/AP50, mIoU) and compares it with the
promoted ``yolo_seg`` through :func:`services.training.registry.is_better` (the promotion rule of
every stage; both report ``holdout.part.coco.AP50``). A winner is registered, promoted and
pre-annotates the project's photos in the same job (as a round pre-annotates with its
promoted versions); a loser is not kept.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import Session

from core.config import env_name, get_settings
from db.models import Project
from services.training.autotrain import labelled_photos_with, promoted_line, segmenter_policy
from services.training.lifecycle import ProgressFor
from services.training.segmenter_jobs import (
    backbone_in_weights_folder,
    default_preset,
    train_and_preannotate,
)

__all__ = [
    "JOB_KIND",
    "POLICY",
    "autotrain_summary",
    "backbone_in_weights_folder",
    "default_preset",
    "labelled_photos",
    "train_and_compare",
]

log = logging.getLogger(__name__)

JOB_KIND = "part_seg_autotrain"
STAGE = "part_seg"
#: The part model a new part_seg must beat when it is promoted.
RIVAL = "yolo_seg"


# ---------- the trigger ----------


#: Trains once the project holds ``part_seg_autotrain_min_photos`` labelled photos with parts and has no
#: promoted part_seg (once one is, rounds carry it on, warm-started).
POLICY = segmenter_policy(STAGE, JOB_KIND, labelled_photos_with("part"))

#: ``project``'s labelled or reviewed photos holding at least one part polygon: one COUNT
labelled_photos = POLICY.count


def autotrain_summary(session: Session, project: Project) -> str:
    """One line for the dashboard: where the project's part pre-annotator stands."""
    settings = get_settings()
    title = "Part pre-annotator (part_seg)"
    promoted = promoted_line(session, STAGE, title)
    if promoted is not None:
        return promoted[0]
    if not settings.part_seg_autotrain:
        return f"{title} auto-training: off ({env_name('part_seg_autotrain')})"
    n = labelled_photos(session, project)
    if n == 0:
        return (
            f"{title}: this project's labels hold no parts yet, so there is nothing to train it "
            f"on; it trains itself once {POLICY.minimum(settings)} labelled photos show parts"
        )
    minutes = settings.part_seg_time_budget_s / 60
    return POLICY.waiting_line(session, project, title, f"{n} labelled photos with parts", minutes)


# ---------- the job ----------


def train_and_compare(
    session: Session,
    project: Project,
    *,
    config: str | None = None,
    time_budget_s: float | None = None,
    epochs: int | None = None,
    device: str | None = None,
    progress_for: ProgressFor | None = None,
) -> dict[str, Any]:
    """Train part_seg on ``project``'s labelled, not held-out photos; promote it when its
    held-out mask AP50 beats the promoted ``yolo_seg``'s (or when there is none), then
    pre-annotate the project's photos with it, in this call: a job queued for that would
    wait behind the assistance's training, queued by the same import (about 8 minutes on a
    2-core CPU for 400 photos). A job's progress reports are its cancellation points; each
    pre-annotated photo is committed as it is done.

    The backbone starts from the weights folder's MobileNetV3-Large when there is one
    (:func:`backbone_in_weights_folder`, named in ``"backbone"``), else from scratch.

    Returns :func:`services.training.segmenter_jobs.train_and_preannotate`'s dict. Raises
    Invalid when there is nothing to train on or to measure.
    """
    settings = get_settings()
    device = device or settings.device
    return train_and_preannotate(
        session,
        project,
        POLICY,
        config=config or settings.part_seg_autotrain_config or default_preset(device),
        time_budget_s=time_budget_s or settings.part_seg_time_budget_s,
        epochs=epochs,
        device=device,
        progress_for=progress_for,
    )
