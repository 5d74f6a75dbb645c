"""What each job kind does. Every handler is ``fn(ctx: JobContext, **params) -> dict``, and
works on the project the job was started in (``ctx.project``).

Handlers call the services with their real signatures, so a wrong keyword fails loudly
instead of vanishing. Parameters were checked when the job was created
(:func:`jobs.service.validate_params`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from core.presets import DEFAULT_PRESET
from db.models import ModelVersion
from db.session import session_scope
from jobs.context import JobContext
from jobs.rounds import run_round
from services.training import (
    assist_training,
    damage_seg_training,
    lifecycle,
    model_runs,
    part_seg_training,
)


def version_summary(mv: ModelVersion | None) -> dict[str, Any] | None:
    """What a job result says about a registered version."""
    if mv is None:
        return None
    return {"id": mv.id, "name": mv.name, "metrics": mv.metrics}


def _on_stage(ctx: JobContext, run: Callable[..., Any], stage: str, doing: str, **kw: Any):
    """``run(session, project, stage, progress=..., **kw)`` in one transaction on the job's
    project, its progress reported as ``doing`` the stage."""
    with session_scope() as s:
        progress = ctx.progress_callback(f"{doing} {stage}")
        return run(s, ctx.project(s), stage, progress=progress, **kw)


def run_preannotate(
    ctx: JobContext,
    *,
    stage: str,
    version: str | None = None,
    limit: int | None = None,
    image_ids: list[int] | None = None,
) -> dict:
    n = _on_stage(
        ctx,
        model_runs.predict_stage,
        stage,
        "pre-annotating with",
        version=version,
        limit=limit,
        image_ids=image_ids,
    )
    return {"predicted": n}


def run_train(
    ctx: JobContext,
    *,
    stage: str,
    config: str = DEFAULT_PRESET,
    epochs: int | None = None,
    device: str | None = None,
) -> dict:
    mv = _on_stage(
        ctx,
        lifecycle.train_stage,
        stage,
        "training",
        config=config,
        epochs=epochs,
        device=device or "auto",
    )
    return {"version": version_summary(mv)}


def run_evaluate(
    ctx: JobContext, *, stage: str, version: str | None = None, device: str | None = None
) -> dict:
    metrics = _on_stage(
        ctx,
        model_runs.evaluate_stage,
        stage,
        "evaluating",
        version=version,
        device=device or "auto",
    )
    return {"metrics": metrics}


def run_select(ctx: JobContext, *, strategy: str = "hybrid", k: int = 100) -> dict:
    from services.training.selection import select

    ctx.report(stage=f"selecting {k} by {strategy}", progress=0.1)
    with session_scope() as s:
        picks = select(s, ctx.project(s), strategy=strategy, k=k)
    return {"strategy": strategy, "selected": [[i, round(v, 6)] for i, v in picks]}


def run_embed(
    ctx: JobContext,
    *,
    limit: int | None = None,
    image_ids: list[int] | None = None,
    force: bool = False,
    pause_s: float = 0.0,
) -> dict:
    """Cheap cold-start descriptors for the queue head, then the assistance back end's
    per-image embeddings. ``pause_s`` sleeps between images, leaving CPU to the web process
    on small machines."""
    from services.labelling.images import images_by_ids, queue_ids
    from services.training.assist import embed_images
    from services.training.selection import ensure_descriptors

    with session_scope() as s:
        project = ctx.project(s)
        ids = image_ids or queue_ids(s, project.id)
        if limit:
            ids = ids[:limit]
        images = images_by_ids(s, project, ids)
    ctx.report(stage="image descriptors", progress=0.0)

    def cb(i: int, n: int) -> None:
        ctx.report(progress=0.9 * i / max(n, 1), message=None)
        if pause_s:
            time.sleep(pause_s)

    computed = ensure_descriptors(images, force=force, progress=cb)
    with session_scope() as s:
        embeddings = embed_images(
            s,
            ctx.project(s),
            [im.id for im in images],
            progress=ctx.progress_callback("stage embeddings", (0.9, 1.0)),
        )
    return {"images": len(images), "descriptors_computed": computed, "embeddings": embeddings}


def run_assist_autotrain(
    ctx: JobContext,
    *,
    config: str | None = None,
    epochs: int | None = None,
    device: str | None = None,
    polygons: int | None = None,
) -> dict:
    """Train assist_net and promote it only if it beats the current back end on held-out
    box prompts (``services.training.assist_training``). ``polygons``: the labelled-polygon count that
    queued the job (the trigger reads it back); the settings give the preset and epochs."""
    with session_scope() as s:
        return assist_training.train_and_compare(
            s,
            ctx.project(s),
            config=config,
            epochs=epochs,
            device=device,
            progress_for=ctx.progress_callback,
        )


def _segmenter_autotrain(train_and_compare, doc: str):
    """A self-training segmenter's job (part_seg, damage_seg): train for the time budget,
    promote only if better, pre-annotate (``train_and_compare``). ``photos``: the count that
    queued the job (the trigger reads it back)."""

    def run(
        ctx: JobContext,
        *,
        config: str | None = None,
        time_budget_s: float | None = None,
        device: str | None = None,
        photos: int | None = None,
    ) -> dict:
        with session_scope() as s:
            return train_and_compare(
                s,
                ctx.project(s),
                config=config,
                time_budget_s=time_budget_s,
                device=device,
                progress_for=ctx.progress_callback,
            )

    run.__doc__ = doc
    return run


run_part_seg_autotrain = _segmenter_autotrain(
    part_seg_training.train_and_compare,
    "Train part_seg for its time budget; promote it only if its held-out mask AP50 beats the "
    "promoted YOLO part model's (``services.training.part_seg_training``).",
)
run_damage_seg_autotrain = _segmenter_autotrain(
    damage_seg_training.train_and_compare,
    "Train damage_seg for its time budget; promote it only if its held-out damage mask AP50 "
    "beats the current damage model's (``services.training.damage_seg_training``).",
)


def run_fraud_screen(ctx: JobContext, *, image_ids: list[int] | None = None) -> dict:
    """Queue photos for a fraud check by their damage's colour and texture
    (``services.claims.fraud_screen``): no fake-damage model needed. Commits every few photos,
    and reports between commits (SQLite has one writer at a time)."""
    from services.claims.fraud_screen import damage_image_ids, screen_images

    with session_scope() as s:
        ids = damage_image_ids(s, ctx.project(s), image_ids)
    ctx.report(stage="screening damage polygons", progress=0.0)
    out = {"screened": 0, "queued": 0}
    for start in range(0, len(ids), FRAUD_SCREEN_CHUNK):
        with session_scope() as s:
            part = screen_images(s, ctx.project(s), ids[start : start + FRAUD_SCREEN_CHUNK])
        out = {k: out[k] + part[k] for k in out}
        ctx.report(progress=out["screened"] / max(len(ids), 1))
    ctx.report(
        message=f"screened {out['screened']} photos with damage; {out['queued']} queued for a check"
    )
    return out


#: Photos the fraud screen commits at a time.
FRAUD_SCREEN_CHUNK = 16


HANDLERS: dict[str, Callable[..., dict]] = {
    "preannotate": run_preannotate,
    "embed": run_embed,
    "train": run_train,
    "evaluate": run_evaluate,
    "select": run_select,
    "round": run_round,
    "fraud_screen": run_fraud_screen,
    assist_training.JOB_KIND: run_assist_autotrain,
    part_seg_training.JOB_KIND: run_part_seg_autotrain,
    damage_seg_training.JOB_KIND: run_damage_seg_autotrain,
}
