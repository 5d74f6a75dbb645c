"""A retraining round, run as one ``round`` job:

1. snapshot the labelled set (held-out split chosen once, then excluded);
2. train the chosen stages;
3. evaluate each new version on the held-out split;
4. promote it only if it beats the promoted version on its primary metric (or when forced);
5. pre-annotate the unlabelled images with the promoted versions (``assist_net`` is only
   promoted: the workspace's assistance then uses it);
6. re-select the queue.

Model work goes through ``services.model_runs`` (see :mod:`jobs.tasks`). A round killed
part-way leaves the registry as it was at the last completed step: versions are registered
only after their artifact is complete, and promotion happens after evaluation.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from db.models import Job, ModelVersion, Project
from db.session import session_scope
from jobs.runner import JobContext
from jobs.tasks import call_model
from services import registry
from services.errors import Invalid
from services.model_runs import PROMPTED_STAGES

#: Stages a round trains when none are named and none has been promoted yet.
DEFAULT_STAGES = ("yolo_seg",)


def start_round(
    session: Session | None = None,
    project: Project | None = None,
    *,
    stages: list[str] | None = None,
    config: str = "tiny",
    epochs: int | None = None,
    created_by: str | None = None,
    strategy: str = "hybrid",
    k: int = 50,
    force_promote: bool = False,
    device: str | None = None,
) -> Job:
    """Queue a round; a worker runs it. ``session``/``project`` default to a new session and
    the default project (the dashboard calls ``start_round(created_by=...)``)."""
    from jobs.service import create_job
    from models.registry import stage_names

    unknown = sorted(set(stages or []) - set(stage_names()))
    if unknown:
        raise Invalid(
            f"unknown stage(s) {', '.join(unknown)}; choose from {', '.join(stage_names())}"
        )
    params: dict[str, Any] = {
        "config": config,
        "strategy": strategy,
        "k": k,
        "force_promote": force_promote,
    }
    if stages:
        params["stages"] = list(stages)
    if epochs is not None:
        params["epochs"] = int(epochs)
    if device:
        params["device"] = device
    if session is None:
        with session_scope() as s:
            return create_job(s, "round", params, created_by=created_by)
    return create_job(session, "round", params, created_by=created_by)


def _project(session: Session) -> Project:
    from services.projects import get_or_create_project

    return get_or_create_project(session)


def _version_from(value: Any, session: Session, stage: str) -> ModelVersion:
    """Whatever ``train_stage`` returned -> the ModelVersion row."""
    if isinstance(value, ModelVersion):
        return session.get(ModelVersion, value.id) or value
    for attr in ("id", "version_id", "model_version_id"):
        vid = getattr(value, attr, None) if not isinstance(value, dict) else value.get(attr)
        if isinstance(vid, int):
            mv = session.get(ModelVersion, vid)
            if mv is not None:
                return mv
    name = getattr(value, "name", None) if not isinstance(value, dict) else value.get("name")
    if isinstance(name, str):
        return registry.get_version(session, name)
    raise RuntimeError(
        f"train_stage({stage!r}) returned {type(value).__name__}, not a registered model version."
    )


def run_round(
    ctx: JobContext,
    *,
    stages: list[str] | None = None,
    config: str = "tiny",
    epochs: int | None = None,
    strategy: str = "hybrid",
    k: int = 50,
    force_promote: bool = False,
    device: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    # 1. snapshot
    ctx.report(stage="snapshot of the labelled set", progress=0.01)
    with session_scope() as s:
        project = _project(s)
        held = registry.ensure_holdout(s, project)
        snap = registry.training_snapshot(s, project)
        if not stages:
            stages = sorted(registry_stages(s)) or list(DEFAULT_STAGES)
    if snap["count"] == 0:
        raise Invalid(
            "no labelled images outside the held-out split yet; label some photos, then start a round."
        )
    ctx.log.info(
        "snapshot: %d labelled training images, %d held out; stages %s",
        snap["count"],
        len(held),
        stages,
    )
    out: dict[str, Any] = {"labelled": snap["count"], "heldout": len(held), "stages": {}}
    span = 0.7 / len(stages)
    for n, stage in enumerate(stages):
        lo = 0.02 + n * span
        # 2. train
        with session_scope() as s:
            project = _project(s)
            trained = call_model(
                "train_stage",
                s,
                project,
                stage,
                config=config,
                epochs=epochs,
                device=device,
                image_ids=snap["image_ids"],
                train_snapshot=snap,
                progress=ctx.progress_callback(f"training {stage}", (lo, lo + 0.8 * span)),
            )
            mv = _version_from(trained, s, stage)
            if not mv.train_snapshot:
                mv.train_snapshot = snap
            s.add(mv)
            mv_id, mv_name = mv.id, mv.name
        # 3. evaluate on the held-out split
        ctx.report(stage=f"evaluating {mv_name} on the held-out split", progress=lo + 0.8 * span)
        with session_scope() as s:
            project = _project(s)
            metrics = call_model(
                "evaluate_stage", s, project, stage, version=mv_name, split=registry.HOLDOUT_SPLIT
            )
            mv = s.get(ModelVersion, mv_id)
            s.refresh(mv)
            if isinstance(metrics, dict) and metrics and "holdout" not in (mv.metrics or {}):
                mv.metrics = {**(mv.metrics or {}), "holdout": metrics}
                s.add(mv)
            # 4. promote only if better (or forced by the lead)
            incumbent = registry.current(s, stage)
            better, why = registry.is_better(
                mv, incumbent if incumbent and incumbent.id != mv.id else None
            )
            promote = better or force_promote
            if promote:
                registry.set_promoted(s, mv)
            reason = why + ("; promoted by override" if force_promote and not better else "")
            out["stages"][stage] = {
                "version": mv_name,
                "metrics": mv.metrics,
                "promoted": promote,
                "reason": reason,
            }
            ctx.log.info(
                "%s: %s -> %s", stage, reason, "promoted" if promote else "kept the current version"
            )
    # 5. pre-annotate the unlabelled images with the promoted versions
    predicted: dict[str, Any] = {}
    with session_scope() as s:
        promoted = {st: registry.current(s, st) for st in stages if st not in PROMPTED_STAGES}
        promoted = {st: mv.name for st, mv in promoted.items() if mv is not None}
    for i, (stage, name) in enumerate(promoted.items()):
        lo = 0.75 + 0.2 * i / max(len(promoted), 1)
        with session_scope() as s:
            res = call_model(
                "predict_stage",
                s,
                _project(s),
                stage,
                version=name,
                progress=ctx.progress_callback(
                    f"pre-annotating with {name}", (lo, lo + 0.2 / len(promoted))
                ),
            )
        predicted[stage] = res if isinstance(res, (int, float, str, dict, list)) else str(res)
    out["predicted"] = predicted
    # 6. re-select the queue
    ctx.report(stage=f"selecting the next {k} photos ({strategy})", progress=0.96)
    out["selection"] = reselect(strategy, k)
    return out


def registry_stages(session: Session) -> set[str]:
    """Stages with a promoted version."""
    return {mv.stage for mv in registry.versions(session) if mv.promoted}


def reselect(strategy: str, k: int) -> dict[str, Any]:
    """Run the selection; fall back to plainer strategies when the models lack what it needs
    (e.g. no image embeddings yet for hybrid)."""
    from active_learning.service import select

    tried = []
    for strat in dict.fromkeys([strategy, "uncertainty", "kcenter", "random"]):
        with session_scope() as s:
            try:
                picks = select(s, _project(s), strategy=strat, k=k)
            except Invalid as e:
                tried.append(f"{strat}: {e}")
                s.rollback()
                continue
        return {
            "strategy": strat,
            "selected": [[i, round(v, 6)] for i, v in picks],
            "fallbacks": tried,
        }
    return {"strategy": None, "selected": [], "fallbacks": tried}
