"""One lifecycle for every new model version: train, measure on the held-out split, promote
only if better.

Every path that makes a version goes through here: a retraining round, ``panelbeater
train``, and the self-training stages' background jobs (``assist_training``,
``part_seg_training``). The stage says what "better" means through the facts it declares
(``models.base.StageBase``): its primary metrics, a rival stage doing the same job, and the
weight-free back end its first version replaces. :func:`services.training.registry.is_better`
is the one comparison.

What a new version must beat (:func:`opponent`): the stage's promoted version; else the
rival stage's promoted version; else the weight-free baseline, measured now on the same
held-out photos; else nothing (a first version with nothing to replace is promoted).
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlmodel import Session

from core.metrics import flatten_metrics
from core.presets import DEFAULT_PRESET
from db.models import ModelVersion, Project
from models.base import StageConfig
from models.data import Progress, TrainingSet
from services.errors import Invalid
from services.training import model_runs
from services.training.autotrain import AutoTrainPolicy
from services.training.bar import CONFIRMED_BELOW_BAR, bar_for, verdict
from services.training.registry import (
    HOLDOUT_SPLIT,
    artifact_tmp_path,
    current,
    ensure_holdout,
    is_better,
    register_version,
    set_promoted,
    training_snapshot,
    verified_artifact,
    versions,
)

#: ``progress_for(phase, (lo, hi))``: a progress callback for one phase of a job.
ProgressFor = Callable[[str, tuple[float, float]], Progress | None]


@dataclass
class Opponent:
    """What a new version is compared with: a promoted version (its own stage's or its
    rival's) or a weight-free baseline (``version`` None)."""

    name: str
    metrics: dict[str, Any]
    version: ModelVersion | None = None

    @property
    def holdout(self) -> dict[str, Any]:
        return dict(self.metrics.get("holdout") or {})


@dataclass
class Outcome:
    """What the lifecycle did with one new version."""

    stage: str
    promoted: bool
    reason: str
    figures: dict[str, Any] | None
    opponent: Opponent | None
    version: ModelVersion | None = None
    train_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def scaled_progress(
    progress_for: ProgressFor | None, within: tuple[float, float]
) -> ProgressFor | None:
    """``progress_for`` with each phase's span mapped into ``within`` of the whole job."""
    if progress_for is None:
        return None
    lo, hi = within
    return lambda name, span: progress_for(
        name, (lo + span[0] * (hi - lo), lo + span[1] * (hi - lo))
    )


def _stage_info(stage: str):
    from models.registry import stage_info

    return stage_info(stage)


def _stage_class(stage: str):
    from models.registry import stage_class

    return stage_class(stage)


def held_out_set(session: Session, project: Project) -> TrainingSet:
    """The labelled held-out photos (the split is chosen on first use) and commits the choice:
    training takes minutes, and an open write would hold every save of the project behind
    it (SQLite's lock, PostgreSQL's row locks)."""
    ensure_holdout(session, project)
    session.commit()
    return model_runs.training_set(session, project, lambda r: r.split == HOLDOUT_SPLIT)


def baseline_opponent(
    session: Session, project: Project, stage: str, progress: Progress | None = None
) -> Opponent | None:
    """The weight-free back end ``stage``'s first version replaces, measured now on the
    held-out photos as the stage itself is; None for a stage that replaces nothing."""
    declared = _stage_info(stage).weight_free_baseline
    if declared is None:
        return None
    name, target = declared
    module, cls = target.split(":")
    backend = getattr(importlib.import_module(module), cls)()
    held = model_runs.training_set(session, project, lambda r: r.split == HOLDOUT_SPLIT)
    measure = _stage_class(stage).measure_backend
    figures = measure(backend, held, progress=progress) if len(held) else {}
    return Opponent(name=name, metrics={"holdout": figures})


def opponent(
    session: Session,
    project: Project,
    stage: str,
    *,
    exclude: ModelVersion | None = None,
    remeasure: bool = False,
    device: str = "cpu",
    progress: Progress | None = None,
) -> Opponent | None:
    """What a new version of ``stage`` must beat (module docstring); among several promoted
    rivals, the strongest on ``stage``'s primary metric. A promoted version without held-out
    figures is measured now; ``remeasure`` measures it now regardless (the self-training jobs
    do, since the held-out split grows between their runs)."""
    info = _stage_info(stage)

    def promoted(name: str) -> Opponent | None:
        mv = current(session, name)
        if mv is None or (exclude is not None and mv.id == exclude.id):
            return None
        if remeasure or "holdout" not in (mv.metrics or {}):
            try:
                model_runs.evaluate_stage(
                    session, project, name, version=mv.name, device=device, progress=progress
                )
            except Exception:  # a missing file: it is compared on what it has, or not at all
                pass
        return Opponent(name=mv.name, metrics=dict(mv.metrics or {}), version=mv)

    own = promoted(stage)
    if own is not None:
        return own
    rivals = [o for o in (promoted(r) for r in info.rivals) if o is not None]
    if rivals:
        return max(rivals, key=lambda o: _figure(o.metrics, info.primary_metrics))
    return baseline_opponent(session, project, stage, progress=progress)


def _figure(metrics: dict[str, Any], paths: tuple[str, ...]) -> float:
    """The first of ``paths`` found in ``metrics`` (-inf when none is)."""
    flat = flatten_metrics(metrics)
    return next((float(flat[p]) for p in paths if p in flat), float("-inf"))


@dataclass
class Decision:
    better: bool
    promoted: bool
    reason: str
    #: below the stage's bar to pre-annotate (:mod:`services.training.bar`): kept and shown,
    #: never promoted automatically
    below_bar: bool = False


def decide(
    candidate: ModelVersion,
    against: Opponent | None,
    *,
    measured: bool = True,
    promote: bool = True,
    force: bool = False,
) -> Decision:
    """Apply the promotion rule to ``candidate`` (its metrics hold ``holdout`` when
    ``measured``): better than ``against`` by :func:`is_better`, or forced."""
    if against is None or against.version is not None:
        better, why = is_better(candidate, against.version if against else None)
        if against is not None and against.version.stage != candidate.stage:
            why = f"{why} (the promoted {against.version.stage}, which it would replace)"
    elif not measured:
        better, why = False, f"{candidate.name} was not measured against {against.name}"
    else:
        better, why = is_better(candidate, None, baseline=(against.name, against.holdout))
    bar = verdict(candidate.stage, candidate.metrics)
    below = not bar.passes and bar_for(candidate.stage) is not None
    promoted = force or (promote and better and not below)
    reason = why
    if below:
        reason += f"; {bar.sentence}"
    if force and (below or not better):
        reason += "; promoted by override"
    elif not promoted:
        if not promote:
            reason += "; not promoted (promotion was not asked for)"
        elif below:
            reason += "; kept unpromoted (a lead may promote it by hand)"
        else:
            reason += f"; not promoted (kept {against.name})" if against else "; not promoted"
    return Decision(better=better, promoted=promoted, reason=reason, below_bar=below)


def _keeps_loser(stage: str, against: Opponent | None, keep_losers: bool) -> bool:
    """A version that was not promoted is kept for the record, unless the caller keeps no
    losers, or the stage serves its newest version when none is promoted (a first
    assist_net that lost to GrabCut would serve anyway)."""
    if not keep_losers:
        return False
    serves_anyway = _stage_info(stage).serves_unpromoted and (
        against is None or against.version is None or against.version.stage != stage
    )
    return not serves_anyway


def finish(
    session: Session,
    candidate: ModelVersion,
    against: Opponent | None,
    decision: Decision,
    *,
    keep_losers: bool = True,
) -> tuple[ModelVersion | None, str]:
    """Record the decision on a registered ``candidate`` and promote it, or delete it and
    its file when it lost and is not kept. Returns (the version or None, the reason)."""
    reason = decision.reason
    kept = (
        decision.promoted
        or decision.below_bar
        or _keeps_loser(candidate.stage, against, keep_losers)
    )
    if not kept:
        reason += "; the version was not kept"
    metrics = dict(candidate.metrics or {})
    if against is not None and against.version is None and against.holdout:
        metrics["baseline"] = {against.name: against.holdout}
    metrics["promotion"] = {"promoted": decision.promoted, "reason": reason}
    if decision.promoted and decision.below_bar:
        metrics["promotion"][CONFIRMED_BELOW_BAR] = True
    candidate.metrics = metrics
    session.add(candidate)
    session.flush()
    if decision.promoted:
        set_promoted(session, candidate)
    if not kept:
        Path(candidate.path).unlink(missing_ok=True)
        session.delete(candidate)
        session.flush()
        return None, reason
    return candidate, reason


def measure_and_decide(
    session: Session,
    project: Project,
    mv: ModelVersion,
    *,
    promote: bool = True,
    force: bool = False,
    keep_losers: bool = True,
    remeasure: bool = False,
    device: str = "auto",
    progress: Progress | None = None,
) -> Outcome:
    """Measure a registered version on the held-out split, then apply the promotion rule
    (:func:`decide` against :func:`opponent`) and :func:`finish`. A version that cannot be
    measured (no labelled held-out photos) is promoted only as a stage's first version with
    nothing to replace, or when forced."""
    evaluated, note = True, ""
    try:
        model_runs.evaluate_stage(
            session, project, mv.stage, version=mv.name, device=device, progress=progress
        )
    except Invalid as e:
        evaluated, note = False, f"not measured on held-out photos ({e})"
    if evaluated:
        against = opponent(
            session, project, mv.stage, exclude=mv, remeasure=remeasure, device=device
        )
    else:
        against = _unmeasured_opponent(session, mv)
    decision = decide(mv, against, measured=evaluated, promote=promote, force=force)
    if note:
        decision.reason = f"{note}; {decision.reason}"
    figures = (mv.metrics or {}).get("holdout")
    kept, reason = finish(session, mv, against, decision, keep_losers=keep_losers)
    return Outcome(
        stage=mv.stage,
        promoted=decision.promoted,
        reason=reason,
        figures=figures,
        opponent=against,
        version=kept,
        extra={"evaluated": evaluated},
    )


def _unmeasured_opponent(session: Session, mv: ModelVersion) -> Opponent | None:
    """Without held-out figures nothing can be measured now: the promoted version (own or
    rival) as it stands, else the baseline by name only."""
    info = _stage_info(mv.stage)
    for name in (mv.stage, *info.rivals):
        other = current(session, name) if name else None
        if other is not None and other.id != mv.id:
            return Opponent(name=other.name, metrics=dict(other.metrics or {}), version=other)
    if info.weight_free_baseline is not None:
        return Opponent(name=info.weight_free_baseline[0], metrics={})
    return None


def self_train(
    session: Session,
    project: Project,
    policy: AutoTrainPolicy,
    cfg: StageConfig,
    *,
    device: str = "auto",
    progress_for: ProgressFor | None = None,
) -> Outcome:
    """A self-training job's run (``assist_training``, ``part_seg_training``): the lifecycle
    on the labelled photos as they are now, keeping no loser and measuring the opponent again
    on today's held-out photos. The count that queued it is in ``outcome.extra[policy.unit]``.
    Raises Invalid when the held-out split has no labelled photos to measure on."""
    if not len(held_out_set(session, project)):
        raise Invalid(
            f"the held-out split ({HOLDOUT_SPLIT!r}) has no labelled photos with polygons to "
            f"measure {policy.stage} on; label some held-out photos first"
        )
    counted = policy.count(session, project)
    fresh = Plan(
        policy.stage, cfg, None, None, f"{policy.stage}: {cfg.preset} preset, from scratch"
    )
    outcome = train_measure_promote(
        session,
        project,
        fresh,
        snapshot={**training_snapshot(session, project), policy.unit: counted},
        keep_losers=False,
        remeasure=True,
        device=device,
        progress_for=progress_for,
    )
    outcome.extra[policy.unit] = counted
    return outcome


def train_version(
    session: Session,
    project: Project,
    plan: Plan,
    *,
    snapshot: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> tuple[ModelVersion | None, float]:
    """Train as ``plan`` says on the snapshot's labelled, not held-out photos and register
    the new version unpromoted; returns (it, training seconds). Under ``torchrun`` only
    rank 0 registers; the other ranks return None."""
    from models.registry import build

    stage, cfg, warm_from = plan.stage, plan.cfg, plan.warm_from
    snapshot = snapshot or training_snapshot(session, project)
    data = model_runs.training_set(session, project, lambda r: r.split != HOLDOUT_SPLIT, snapshot)
    if not len(data):
        raise Invalid(
            f"no labelled images with annotations outside the held-out split to train {stage!r} "
            "on; label some images (status labelled or reviewed) first"
        )
    model = build(stage, cfg, taxonomy=data.taxonomy)
    if warm_from is not None:
        model.warm_start(verified_artifact(warm_from))
    t0 = time.perf_counter()
    result = model.train(data, cfg, progress=progress, out_path=artifact_tmp_path(stage))
    seconds = time.perf_counter() - t0
    if int(os.environ.get("RANK", "0")) != 0:
        Path(result.artifact_path).unlink(missing_ok=True)
        return None, seconds
    mv = register_version(
        session,
        stage=stage,
        artifact_path=result.artifact_path,
        metrics=dict(result.metrics),
        config={**cfg.to_dict(), **model_runs.provenance(plan.started_from, warm_from)},
        train_snapshot=snapshot,
        parent_id=warm_from.id if warm_from is not None else None,
    )
    return mv, seconds


def train_measure_promote(
    session: Session,
    project: Project,
    plan: Plan,
    *,
    snapshot: dict[str, Any] | None = None,
    promote: bool = True,
    force: bool = False,
    keep_losers: bool = True,
    remeasure: bool = False,
    device: str = "auto",
    progress_for: ProgressFor | None = None,
    on_step: Callable[[str, str], None] | None = None,
) -> Outcome:
    """The lifecycle: train as ``plan`` says (:func:`train_version`), measure the new version on
    the held-out split, and promote it only if it beats :func:`opponent` (or when
    ``force``d). A loser stays registered, unpromoted, for the record, unless
    ``keep_losers`` is off (the self-training jobs keep none) or the stage serves its
    newest version anyway. ``on_step(step, text)`` hears of each step as it starts
    (``train``, ``evaluate``). Raises Invalid when there is nothing to train on.

    The new version is committed once registered, before it is measured: measuring takes
    minutes, and an open write would hold every save of the project behind it."""

    def phase(name: str, span: tuple[float, float]) -> Progress | None:
        return progress_for(name, span) if progress_for else None

    stage = plan.stage
    ensure_holdout(session, project)
    session.commit()  # the split is chosen before training starts (see held_out_set)
    if on_step:
        on_step("train", f"training {stage}")
    mv, seconds = train_version(
        session, project, plan, snapshot=snapshot, progress=phase(f"training {stage}", (0.0, 0.7))
    )
    if mv is None:
        return Outcome(stage, False, "not rank 0", None, None, train_seconds=seconds)
    session.commit()
    if on_step:
        on_step("evaluate", f"evaluating {mv.name} on the held-out split")
    out = measure_and_decide(
        session,
        project,
        mv,
        promote=promote,
        force=force,
        keep_losers=keep_losers,
        remeasure=remeasure,
        device=device,
        progress=phase(f"measuring {mv.name} on the held-out split", (0.7, 1.0)),
    )
    out.train_seconds = seconds
    return out


def run_plan(
    session: Session,
    project: Project,
    plan: Plan,
    *,
    train_snapshot: dict[str, Any] | None = None,
    promote: bool = True,
    force: bool = False,
    progress_for: ProgressFor | None = None,
    on_step: Callable[[str, str], None] | None = None,
) -> Outcome:
    """:func:`train_measure_promote` as :func:`plan_stage` decided: what a round and
    ``panelbeater train`` run. ``train_snapshot``: a round passes one so that every stage it
    trains learns from the same images and annotation revisions. The plan's sentence is in
    ``outcome.extra["plan"]``."""
    if train_snapshot is None:
        held_out_set(session, project)  # the held-out photos stay out of the snapshot
    outcome = train_measure_promote(
        session,
        project,
        plan,
        snapshot=train_snapshot or training_snapshot(session, project),
        promote=promote,
        force=force,
        device=plan.cfg.device,
        progress_for=progress_for,
        on_step=on_step,
    )
    outcome.extra["plan"] = plan.sentence
    return outcome


@dataclass
class Plan:
    """How one stage of a round will train: from which version it continues (None: from
    scratch, or from a weights file), with which configuration, and a sentence saying so."""

    stage: str
    cfg: StageConfig
    warm_from: ModelVersion | None
    started_from: dict[str, str] | None
    sentence: str


def plan_stage(
    session: Session,
    stage: str,
    *,
    config: str = DEFAULT_PRESET,
    epochs: int | None = None,
    device: str = "auto",
    options: dict[str, Any] | None = None,
    weights: str | Path | None = None,
    from_scratch: bool = False,
    parent: ModelVersion | None = None,
) -> Plan:
    """Decide how ``stage`` trains in a round (or ``panelbeater train``): it fine-tunes its
    promoted version when it can continue one, on that version's own architecture and
    configuration (a preset change must not load a larger net into a smaller one), on half
    that version's epochs unless epochs are given; else it starts from scratch from
    ``config``, and the sentence says why. ``parent``: the version to continue (default: the
    promoted one)."""
    from models.base import StageError
    from models.registry import config_class, stage_class
    from services.training.model_runs import start_weights

    options = dict(options or {})
    started_from = None
    if weights is not None:
        field_name, started_from = start_weights(stage, weights)
        options[field_name] = str(started_from["path"])
    fresh = config_class(stage).from_preset(
        config, **{"device": device, "epochs": epochs, **options}
    )
    parent = parent or current(session, stage)
    why = None
    if parent is None:
        why = "no promoted version to continue"
    elif from_scratch:
        why = "from scratch, as asked"
    elif weights is not None:
        why = f"from the weights file {Path(str(weights)).name}, as asked"
    elif not stage_class(stage).warm_startable:
        why = f"{stage} cannot continue an earlier version"
    if why is not None:
        return Plan(stage, fresh, None, started_from, f"{stage}: {fresh.preset} preset, {why}")
    try:
        own = config_class(stage).from_dict(dict(parent.config or {}))
        cfg = own.with_(
            device=device,
            epochs=epochs if epochs is not None else max(1, own.epochs // 2),
            **{k: v for k, v in options.items() if k != "epochs"},
        )
    except (StageError, TypeError, ValueError) as e:
        return Plan(
            stage,
            fresh,
            None,
            started_from,
            f"{stage}: {fresh.preset} preset from scratch; {parent.name}'s configuration "
            f"cannot be read back ({e})",
        )
    sentence = f"{stage}: continues {parent.name} ({cfg.preset} preset, {cfg.epochs} epoch(s))"
    if cfg.preset != fresh.preset:
        sentence += (
            f"; it keeps that version's own {cfg.preset!r} network rather than the "
            f"{fresh.preset!r} preset asked for (tick 'from scratch' to train at {fresh.preset!r})"
        )
    return Plan(stage, cfg, parent, started_from, sentence)


def plan_round(
    session: Session,
    *,
    stages: list[str] | None = None,
    config: str = DEFAULT_PRESET,
    from_scratch: list[str] | None = None,
    weights: dict[str, str] | None = None,
) -> list[str]:
    """A sentence per stage a round will train, saying what it really does (for the
    dashboard and ``POST /api/retrain`` to tell the lead before it runs)."""
    out = []
    for stage in round_stages(session, stages):
        try:
            plan = plan_stage(
                session,
                stage,
                config=config,
                weights=(weights or {}).get(stage),
                from_scratch=stage in (from_scratch or ()),
            )
            out.append(plan.sentence)
        except Exception as e:  # the round will say so in full; the plan must not block it
            out.append(f"{stage}: {e}")
    return out


def round_stages(session: Session, stages: list[str] | None) -> list[str]:
    """What a round trains: the stages named, else the promoted ones, else the stages that
    declare ``round_default`` (YOLO parts)."""
    from models.registry import stage_infos, stage_names

    if stages:
        return list(stages)
    promoted = {mv.stage for mv in versions(session) if mv.promoted} & set(stage_names())
    return sorted(promoted) or [i.name for i in stage_infos() if i.round_default]


def train_stage(
    session: Session,
    project: Project,
    stage: str,
    *,
    progress: Progress | None = None,
    promote: bool = False,
    train_snapshot: dict[str, Any] | None = None,
    warm_from: ModelVersion | None = None,
    evaluate: bool = False,
    force_promote: bool = False,
    **choices: Any,
) -> ModelVersion | None:
    """Train ``stage`` and register a new version (``panelbeater train``). ``choices`` are
    :func:`plan_stage`'s (``config``, ``epochs``, ``device``, ``options``, ``weights``); with
    ``warm_from`` it continues that version as the plan allows, else from scratch.

    ``evaluate``: the whole lifecycle (:func:`run_plan`): ``promote`` promotes it only when
    it beats its opponent and clears its bar, ``force_promote`` regardless; returns the
    version, or None when it lost and was not kept. Without ``evaluate`` the version is
    only registered, and ``promote`` promotes it at once (the caller measured it
    elsewhere). Under ``torchrun`` only rank 0 registers; the other ranks return None.
    """

    plan = plan_stage(session, stage, from_scratch=warm_from is None, parent=warm_from, **choices)
    if evaluate:
        return run_plan(
            session,
            project,
            plan,
            train_snapshot=train_snapshot,
            promote=promote,
            force=force_promote,
            progress_for=(lambda name, part: progress) if progress else None,
        ).version
    snapshot = train_snapshot or training_snapshot(session, project)
    mv, _ = train_version(session, project, plan, snapshot=snapshot, progress=progress)
    if mv is not None and (promote or force_promote):
        set_promoted(session, mv)
    return mv
