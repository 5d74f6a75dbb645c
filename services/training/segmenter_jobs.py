"""The self-training job of the CPU semantic segmenters (``part_seg``, ``damage_seg``): train
for a time budget on the labelled, not held-out photos through the one lifecycle
(:func:`services.training.lifecycle.self_train`: measured on the held-out split, promoted
only if it beats what it would replace, a loser not kept), then pre-annotate the project's
photos with a winner in the same job."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from db.models import Project
from services.training.autotrain import AutoTrainPolicy
from services.training.lifecycle import ProgressFor, scaled_progress, self_train


def backbone_in_weights_folder():
    """The newest torchvision MobileNetV3-Large file in the weights folder (``panelbeater
    weights add``), which the job starts the backbone from; None when there is none."""
    from services.training.weights import list_weights

    found = [r for r in list_weights() if r.kind == "mobilenet_v3_large" and r.path.is_file()]
    return max(found, key=lambda r: r.added_at) if found else None


def default_preset(device: str) -> str:
    """``gpu`` when ``device`` resolves to a CUDA GPU, else ``cpu``."""
    from models.base import resolve_device

    return "gpu" if resolve_device(device)[0].type == "cuda" else "cpu"


def train_and_preannotate(
    session: Session,
    project: Project,
    policy: AutoTrainPolicy,
    *,
    config: str,
    time_budget_s: float,
    epochs: int | None,
    device: str,
    progress_for: ProgressFor | None,
) -> dict[str, Any]:
    """Train ``policy.stage`` with preset ``config`` for ``time_budget_s`` seconds (or
    ``epochs``), backbone from the weights folder when there is one, through the lifecycle;
    a winner then pre-annotates the project's photos (each committed as it is done).

    Returns ``{"version", "figures", "rival", "promoted", "photos", "train_seconds",
    "reason", "backbone", "preannotated"}``; ``version`` is None when the new model lost (not
    kept). Raises Invalid when there is nothing to train on or to measure."""
    from models.registry import config_class
    from services.training.model_runs import predict_stage

    stage = policy.stage
    cfg = config_class(stage).from_preset(
        config, device=device, time_budget_s=time_budget_s, epochs=epochs
    )
    backbone = None if cfg.backbone_weights else backbone_in_weights_folder()
    if backbone is not None:
        cfg = cfg.with_(backbone_weights=str(backbone.path))
    outcome = self_train(
        session,
        project,
        policy,
        cfg,
        device=device,
        progress_for=scaled_progress(progress_for, (0.0, 0.9)),
    )
    mv = outcome.version
    out: dict[str, Any] = {
        "version": {"id": mv.id, "name": mv.name, "metrics": mv.metrics} if mv else None,
        "figures": outcome.figures,
        "rival": outcome.opponent.name if outcome.opponent is not None else None,
        "promoted": outcome.promoted,
        "photos": outcome.extra[policy.unit],
        "train_seconds": round(outcome.train_seconds, 2),
        "reason": outcome.reason,
        "backbone": backbone.name if backbone is not None else None,
        "preannotated": 0,
    }
    if mv is None or not outcome.promoted:
        return out
    # the promotion is committed before the photos are: a stop while pre-annotating keeps it
    session.commit()
    out["preannotated"] = predict_stage(
        session,
        project,
        stage,
        version=mv.name,
        device=device,
        progress=progress_for(f"pre-annotating with {stage}", (0.9, 1.0)) if progress_for else None,
    )
    return out
