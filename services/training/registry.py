"""Model versions per stage: register, promote, roll back; the fixed held-out split.

Crash safety: a trained artifact is written to a temporary file first
(:func:`artifact_tmp_path`) and only :func:`register_version` moves it to its final name and
then inserts the ``ModelVersion`` row. A run killed before that leaves at most a file under
``artifacts/.tmp`` (removed by :func:`cleanup_tmp_artifacts` when a worker starts) and never a
version.

The held-out split: images whose ``Image.split == "test"`` (:data:`HOLDOUT_SPLIT`). It is
chosen once per project by :func:`ensure_holdout` (the first time labelled images exist, a
deterministic share of them by sha256) and grows only through :func:`grow_holdout`. Training
snapshots and active-learning selection always skip it.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from sqlmodel import Session, func, select

from core.config import get_settings
from core.files import sha256_file
from core.metrics import flatten_metrics
from db.models import LABELLED_STATUSES, Image, ModelVersion, Project
from services.errors import Invalid, NotFound
from services.training.withdrawal import sync_offered_predictions

HOLDOUT_SPLIT = "test"
#: The stage of versions whose predictions were made elsewhere and imported
#: (``services.data_io.prediction_imports``): no model file, never loaded, never promoted.
EXTERNAL_STAGE = "external"

#: Metric keys tried, in order, when a version's metrics do not name their ``primary_metric``.
PRIMARY_METRIC_FALLBACKS = (
    "primary",
    "f1",
    "macro_f1",
    "part_f1",
    "damage_f1",
    "mask_ap50",
    "ap50",
    "map50",
    "miou",
    "accuracy",
)


# -- artifacts ---------------------------------------------------------------------


def artifact_tmp_path(stage: str, suffix: str = ".pt") -> Path:
    """A fresh temporary path for a training run's artifact (not a version until registered)."""
    tmp = get_settings().artifacts_dir / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp / f"{stage}-{uuid.uuid4().hex}{suffix}"


def cleanup_tmp_artifacts(max_age_s: float = 0.0) -> list[Path]:
    """Delete temporary artifacts older than ``max_age_s`` (left by killed runs)."""
    tmp = get_settings().artifacts_dir / ".tmp"
    removed = []
    if not tmp.is_dir():
        return removed
    now = time.time()
    for p in tmp.iterdir():
        try:
            if now - p.stat().st_mtime >= max_age_s:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                removed.append(p)
        except FileNotFoundError:
            pass
    return removed


def verified_artifact(mv: ModelVersion) -> Path:
    """The version's model file, after checking it is the one registered (its sha256).

    Raises NotFound when the file is gone and Invalid when its bytes changed since it was
    registered: a file swapped on disk is never loaded under a version's name.
    """
    if mv.stage == EXTERNAL_STAGE:
        raise Invalid(
            f"{mv.name} is an external model version (imported predictions); it has no model "
            "file to load. Train a stage with `panelbeater train` to predict here"
        )
    path = Path(mv.path)
    if not path.is_file():
        raise NotFound(
            f"the model file of {mv.name} is missing ({path}); restore it from a backup, or roll "
            f"the stage back to another version"
        )
    actual = sha256_file(path)
    if actual != mv.sha256:
        raise Invalid(
            f"the model file of {mv.name} ({path}) has changed since it was registered "
            f"(sha256 {actual[:12]}..., registered {mv.sha256[:12]}...); restore the original "
            f"file, or train and register a new version"
        )
    return path


def next_version(session: Session, stage: str) -> int:
    v = session.exec(
        select(func.max(ModelVersion.version)).where(ModelVersion.stage == stage)
    ).one()
    return int(v or 0) + 1


def register_version(
    session: Session,
    *,
    stage: str,
    artifact_path: str | Path,
    metrics: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    train_snapshot: dict[str, Any] | None = None,
    parent_id: int | None = None,
    promote: bool = False,
) -> ModelVersion:
    """Move a finished artifact to ``artifacts/<stage>/<stage>-vN<suffix>`` and record it.

    The file is renamed (atomic on one file system) before the row is inserted, so a version
    row always points at a complete file. ``parent_id`` defaults to the stage's promoted version.
    """
    src = Path(artifact_path)
    if not src.is_file():
        raise Invalid(f"artifact {src} does not exist; the training run did not finish writing it.")
    version = next_version(session, stage)
    name = f"{stage}-v{version}"
    dest_dir = get_settings().artifacts_dir / stage
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{name}{src.suffix}"
    sha = sha256_file(src)
    if parent_id is None:
        cur = current(session, stage)
        parent_id = cur.id if cur else None
    os.replace(src, dest)
    mv = ModelVersion(
        stage=stage,
        version=version,
        name=name,
        path=str(dest.resolve()),
        sha256=sha,
        config=config or {},
        metrics=metrics or {},
        train_snapshot=train_snapshot or {},
        parent_id=parent_id,
    )
    session.add(mv)
    try:
        session.flush()
    except Exception:
        os.replace(dest, src)  # keep the registry and the folder consistent
        raise
    if promote:
        set_promoted(session, mv)
    return mv


# -- lookup, promotion, rollback -----------------------------------------------------


def versions(session: Session, stage: str | None = None) -> list[ModelVersion]:
    stmt = select(ModelVersion)
    if stage:
        stmt = stmt.where(ModelVersion.stage == stage)
    return list(session.exec(stmt.order_by(ModelVersion.stage, ModelVersion.version)).all())


def current(session: Session, stage: str) -> ModelVersion | None:
    """The promoted version of ``stage``, or None."""
    return session.exec(
        select(ModelVersion).where(ModelVersion.stage == stage, ModelVersion.promoted == True)  # noqa: E712
    ).first()


def get_version(session: Session, ref: int | str) -> ModelVersion:
    """A version by id or by name (``albert-v3``)."""
    mv = session.get(ModelVersion, ref) if isinstance(ref, int) or str(ref).isdigit() else None
    if mv is None:
        mv = session.exec(select(ModelVersion).where(ModelVersion.name == str(ref))).first()
    if mv is None:
        raise NotFound(f"no model version {ref!r}; list them with GET /api/models.")
    return mv


def set_promoted(session: Session, mv: ModelVersion) -> ModelVersion:
    """Make ``mv`` its stage's promoted version (exactly one per stage); an external version
    (imported predictions, no model) cannot be promoted. The pending predictions of the
    version it replaces are withdrawn (:mod:`services.training.withdrawal`)."""
    if mv.stage == EXTERNAL_STAGE:
        raise Invalid(
            f"{mv.name} is an external model version (imported predictions); only trained "
            "versions can be promoted"
        )
    for other in session.exec(
        select(ModelVersion).where(ModelVersion.stage == mv.stage, ModelVersion.promoted == True)  # noqa: E712
    ).all():
        if other.id != mv.id:
            other.promoted = False
            session.add(other)
    mv.promoted = True
    session.add(mv)
    session.flush()
    sync_offered_predictions(session, mv.stage)
    return mv


def promote(session: Session, ref: int | str, *, confirm_below_bar: bool = False) -> ModelVersion:
    """A lead's promotion by hand, whatever the promotion rule says. A version below its
    stage's bar to pre-annotate (:mod:`services.training.bar`) is promoted only with
    ``confirm_below_bar``; otherwise Invalid says what annotators would see."""
    from services.training.bar import CONFIRMED_BELOW_BAR, below_bar_warning

    mv = get_version(session, ref)
    warning = below_bar_warning(mv)
    if warning and not confirm_below_bar:
        raise Invalid(warning)
    if warning:
        promotion = {**(mv.metrics or {}).get("promotion", {}), CONFIRMED_BELOW_BAR: True}
        mv.metrics = {**(mv.metrics or {}), "promotion": promotion}
    return set_promoted(session, mv)


def rollback(session: Session, stage: str, to: int | str | None = None) -> ModelVersion:
    """Promote ``to`` or, by default, the promoted version's parent (else the next older one)."""
    if to is not None:
        target = get_version(session, to)
        if target.stage != stage:
            raise Invalid(f"{target.name} belongs to stage {target.stage}, not {stage}.")
        return set_promoted(session, target)
    cur = current(session, stage)
    if cur is None:
        raise Invalid(f"stage {stage} has no promoted version to roll back from.")
    target = session.get(ModelVersion, cur.parent_id) if cur.parent_id else None
    if target is None:
        target = session.exec(
            select(ModelVersion)
            .where(ModelVersion.stage == stage, ModelVersion.version < cur.version)
            .order_by(ModelVersion.version.desc())
        ).first()
    if target is None:
        raise Invalid(
            f"{cur.name} is the first version of {stage}; there is nothing to roll back to."
        )
    return set_promoted(session, target)


def stage_primary_metrics(stage: str | None) -> tuple[str, ...]:
    """The primary-metric paths ``stage`` declares (``StageBase.primary_metrics``); none for
    an unknown stage."""
    from models.base import StageError
    from models.registry import stage_info

    try:
        return stage_info(stage).primary_metrics if stage else ()
    except StageError:
        return ()


def primary_metric(metrics: dict[str, Any], stage: str | None = None) -> tuple[str, float] | None:
    """(key, value) of a version's primary metric (higher is better), or None.

    Looked up in order: ``metrics["primary_metric"]`` (a key or dotted path), the stage's
    :func:`stage_primary_metrics` paths, held-out figures named like :data:`PRIMARY_METRIC_FALLBACKS`,
    then the same names at the top level (training-time figures).
    """
    flat = flatten_metrics(metrics or {})
    named = (
        [metrics["primary_metric"]]
        if isinstance((metrics or {}).get("primary_metric"), str)
        else []
    )
    keys = [*named, *stage_primary_metrics(stage)]
    keys += [f"holdout.{g}.{m}" for g in ("part", "damage") for m in ("macro_f1", "f1")]
    keys += [f"holdout.{m}" for m in PRIMARY_METRIC_FALLBACKS] + list(PRIMARY_METRIC_FALLBACKS)
    for key in keys:
        if key in flat:
            return key, flat[key]
    return None


def is_better(
    candidate: ModelVersion,
    incumbent: ModelVersion | None,
    *,
    baseline: tuple[str, dict[str, Any]] | None = None,
) -> tuple[bool, str]:
    """Whether ``candidate`` beats ``incumbent`` on the primary metric, and why (a sentence).

    ``baseline`` (name, held-out figures) is what a stage's first version replaces when that
    is not nothing: the weight-free back end (GrabCut for ``assist_net``). With no incumbent
    the candidate must then beat the baseline on the same primary metric.
    """
    new = primary_metric(candidate.metrics or {}, candidate.stage)
    if incumbent is None and baseline is not None:
        name, figures = baseline
        if new is None:
            return False, f"{candidate.name} has no held-out primary metric to compare with {name}"
        key = new[0].rsplit(".", 1)[-1]
        old_value = flatten_metrics(figures).get(key)
        if old_value is None:
            return False, f"{name} has no {key} to compare {candidate.name} with; promote by hand"
        verdict = new[1] > old_value
        return verdict, f"{new[0]}: {candidate.name} {new[1]:.4f} vs {name} {old_value:.4f}"
    if incumbent is None:
        return True, f"{candidate.name} is the stage's first version"
    old = primary_metric(incumbent.metrics or {}, incumbent.stage)
    if new is not None and incumbent.stage != candidate.stage:
        # a rival stage is compared on the candidate's own metric when it reports it (ALBERT's
        # primary metric is macro F1, but it measures damage mask AP50 as well)
        theirs = flatten_metrics(incumbent.metrics or {}).get(new[0])
        if theirs is not None:
            old = (new[0], theirs)
    if new is None:
        return False, f"{candidate.name} has no primary metric to compare"
    if old is None:
        return (
            True,
            f"{incumbent.name} has no primary metric; {candidate.name} has {new[0]}={new[1]:.4f}",
        )
    if new[0] != old[0]:
        return (
            False,
            f"{candidate.name} reports {new[0]} but {incumbent.name} reports {old[0]}; promote by hand",
        )
    verdict = new[1] > old[1]
    return verdict, f"{new[0]}: {candidate.name} {new[1]:.4f} vs {incumbent.name} {old[1]:.4f}"


# -- held-out split and training snapshots --------------------------------------------


def holdout_ids(session: Session, project: Project) -> list[int]:
    return list(
        session.exec(
            select(Image.id)
            .where(Image.project_id == project.id, Image.split == HOLDOUT_SPLIT)
            .order_by(Image.id)
        ).all()
    )


def ensure_holdout(
    session: Session, project: Project, *, fraction: float = 0.1, min_images: int = 1
) -> list[int]:
    """The project's held-out image ids, choosing them once if none exist yet.

    The choice takes ``fraction`` of the labelled images (at least ``min_images``), those with
    the smallest sha256, so it is deterministic and independent of import order. Once any
    image is held out, nothing changes here.
    """
    existing = holdout_ids(session, project)
    if existing:
        return existing
    if not 0 < fraction < 1:
        raise Invalid(f"held-out fraction must be between 0 and 1, got {fraction}.")
    labelled = session.exec(
        select(Image)
        .where(Image.project_id == project.id, Image.status.in_(LABELLED_STATUSES))
        .order_by(Image.sha256)
    ).all()
    if len(labelled) < 2:
        return []  # too few labels to hold any out yet; chosen on a later call
    n = min(len(labelled) - 1, max(min_images, round(fraction * len(labelled))))
    for im in labelled[:n]:
        im.split = HOLDOUT_SPLIT
        session.add(im)
    session.flush()
    return sorted(im.id for im in labelled[:n])


def grow_holdout(session: Session, project: Project, image_ids: list[int]) -> list[int]:
    """Explicitly add images to the held-out split."""
    for iid in image_ids:
        im = session.get(Image, iid)
        if im is None or im.project_id != project.id:
            raise NotFound(f"image {iid} is not in project {project.name}.")
        im.split = HOLDOUT_SPLIT
        session.add(im)
    session.flush()
    return holdout_ids(session, project)


def training_snapshot(session: Session, project: Project) -> dict[str, Any]:
    """The labelled, not held-out images and their annotation versions, right now."""
    rows = session.exec(
        select(Image.id, Image.annotation_version)
        .where(
            Image.project_id == project.id,
            Image.status.in_(LABELLED_STATUSES),
            Image.split != HOLDOUT_SPLIT,
        )
        .order_by(Image.id)
    ).all()
    return {
        "image_ids": [r[0] for r in rows],
        "annotation_versions": {str(r[0]): r[1] for r in rows},
        "count": len(rows),
        "taken_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
