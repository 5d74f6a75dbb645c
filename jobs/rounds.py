"""A retraining round, run as one ``round`` job:

1. snapshot the labelled set (held-out split chosen once, then excluded);
2. train the chosen stages, every one on that same snapshot, each fine-tuned from its
   promoted version (``from_scratch`` names the stages that start over); with the
   pseudo-labels on, each stage also trains on its promoted version's confident predictions
   on unlabelled photos (``services.training.pseudo_labels``), never stored as annotations;
3. evaluate each new version on the held-out split;
4. promote it only if it beats the promoted version on its primary metric (or when forced);
5. pre-annotate the unlabelled images with the promoted versions (prompted stages such as
   ``assist_net`` are only promoted: the workspace's assistance then uses them);
6. re-select the queue.

A round killed part-way leaves the registry as it was at the last completed step: versions
are registered only after their artifact is complete, and promotion happens after evaluation.
Rounds are queued by :func:`jobs.service.start_round`.
"""

from __future__ import annotations

from typing import Any

from core.presets import DEFAULT_PRESET
from db.session import session_scope
from jobs.context import JobContext
from models.registry import config_class, pre_annotating_stages
from services.errors import Invalid
from services.training import lifecycle, model_runs, registry
from services.training import pseudo_labels as pseudo


def run_round(
    ctx: JobContext,
    *,
    stages: list[str] | None = None,
    config: str = DEFAULT_PRESET,
    epochs: int | None = None,
    strategy: str = "hybrid",
    k: int = 50,
    force_promote: bool = False,
    device: str | None = None,
    from_scratch: list[str] | None = None,
    weights: dict[str, str] | None = None,
    options: dict[str, list[str]] | None = None,
    pseudo_labels: bool | None = None,
) -> dict[str, Any]:
    """``weights``: stage -> weights name or path the stage starts from (instead of its
    promoted version); ``options``: stage -> ``["key=value", ...]`` config overrides;
    ``pseudo_labels``: each stage also trains on its promoted version's confident
    predictions on unlabelled photos (:mod:`services.training.pseudo_labels`; None: the
    ``pseudo_labels`` setting)."""
    steps = RoundSteps(ctx)
    # 1. snapshot
    steps.record("snapshot", "snapshot of the labelled set", progress=0.01)
    with session_scope() as s:
        project = ctx.project(s)
        held = registry.ensure_holdout(s, project)
        snap = registry.training_snapshot(s, project)
        if not stages:
            stages = lifecycle.round_stages(s, stages)
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
        # 2. train, 3. evaluate on the held-out split, 4. promote only if better (or forced)
        with session_scope() as s:
            plan = lifecycle.plan_stage(
                s,
                stage,
                config=config,
                epochs=epochs,
                device=device or "auto",
                options=config_class(stage).parse_options((options or {}).get(stage, [])),
                weights=(weights or {}).get(stage),
                from_scratch=stage in (from_scratch or ()),
            )
            stage_snap = pseudo.with_pseudo_labels(
                s, ctx.project(s), stage, snap, enabled=pseudo_labels
            )
            if "pseudo" in stage_snap:
                steps.record("snapshot", pseudo.pseudo_sentence(stage, stage_snap["pseudo"]))
            outcome = lifecycle.run_plan(
                s,
                ctx.project(s),
                plan,
                train_snapshot=stage_snap,
                force=force_promote,
                progress_for=lambda name, part, lo=lo: ctx.progress_callback(
                    name, (lo + part[0] * span, lo + part[1] * span)
                ),
                on_step=steps.record,
            )
            ctx.log.info("%s", outcome.extra["plan"])
            if outcome.version is None and outcome.reason == "not rank 0":
                raise RuntimeError(f"training {stage} registered no version")
            out["stages"][stage] = {
                "version": outcome.version.name if outcome.version is not None else None,
                "metrics": outcome.version.metrics if outcome.version is not None else {},
                "promoted": outcome.promoted,
                "reason": outcome.reason,
                "plan": outcome.extra["plan"],
            }
            if "pseudo" in stage_snap:
                out["stages"][stage]["pseudo"] = {
                    k: stage_snap["pseudo"][k] for k in ("version", "photos", "instances")
                }
            verdict = "promoted" if outcome.promoted else "kept the current version"
            ctx.log.info("%s: %s -> %s", stage, outcome.reason, verdict)
        # reported once the promotion is committed (SQLite allows one writer at a time)
        steps.record("promote", f"{stage}: {outcome.reason}")
    # 5. pre-annotate the unlabelled images with the promoted versions
    predicted: dict[str, Any] = {}
    pre_annotating = pre_annotating_stages()
    with session_scope() as s:
        promoted = {st: registry.current(s, st) for st in stages if st in pre_annotating}
        promoted = {st: mv.name for st, mv in promoted.items() if mv is not None}
    if not promoted:
        steps.record("pre-annotate", "no promoted stage pre-annotates photos; nothing to do")
    for i, (stage, name) in enumerate(promoted.items()):
        lo = 0.75 + 0.2 * i / max(len(promoted), 1)
        steps.record("pre-annotate", f"pre-annotating with {name}")
        with session_scope() as s:
            predicted[stage] = model_runs.predict_stage(
                s,
                ctx.project(s),
                stage,
                version=name,
                device=device or "auto",
                progress=ctx.progress_callback(
                    f"pre-annotating with {name}", (lo, lo + 0.2 / len(promoted))
                ),
            )
        steps.record("pre-annotate", f"{name} pre-annotated {predicted[stage]} new photos")
    out["predicted"] = predicted
    # 6. re-select the queue
    steps.record("select", f"selecting the next {k} photos ({strategy})", progress=0.96)
    out["selection"] = reselect(ctx, strategy, k)
    sel = out["selection"]
    note = f"selected {len(sel['selected'])} photos by {sel['strategy']}"
    if sel["strategy"] != strategy:
        note = f"{strategy} fell back to {sel['strategy']}: " + "; ".join(sel["fallbacks"])
    steps.record("select", note, progress=0.99)
    out["steps"] = steps.done
    return out


class RoundSteps:
    """The round's steps in the order they ran (train, evaluate, promote, pre-annotate,
    select), each with what it really did: written to the job's ``stage`` and ``message``
    as it goes and kept for the job's result (``result["steps"]``)."""

    def __init__(self, ctx: JobContext):
        self.ctx = ctx
        self.done: list[dict[str, str]] = []

    def record(self, step: str, what: str, *, progress: float | None = None) -> None:
        self.done.append({"step": step, "what": what})
        self.ctx.report(stage=what if step != "promote" else None, message=what, progress=progress)


def reselect(ctx: JobContext, strategy: str, k: int) -> dict[str, Any]:
    """Run the selection on the job's project; fall back to plainer strategies when the models lack what it needs
    (e.g. no image embeddings yet for hybrid)."""
    from services.training.selection import select

    tried = []
    for strat in dict.fromkeys([strategy, "uncertainty", "kcenter", "random"]):
        with session_scope() as s:
            try:
                picks = select(s, ctx.project(s), strategy=strat, k=k)
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
