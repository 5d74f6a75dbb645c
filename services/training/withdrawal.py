"""Which model versions' pending predictions annotators are offered, kept in step in one place.

Within a stage, the predictions offered are those of its promoted version, when that version
may pre-annotate (:func:`services.training.bar.may_pre_annotate`); with no promoted version,
those of any version that clears its bar (``predict_stage`` falls back to the newest).
Pending predictions of every other version of the stage (rolled back, replaced, or found
below its bar) become ``withdrawn``: they leave the workspace, the exports of pending
predictions and the claim report, and stay in the database as history. A version that is
offered again (a rollback to it) gets its withdrawn predictions back as pending.
Predictions imported from another tool (``external`` versions: never promoted, no bar)
are therefore always offered.

:func:`sync_offered_predictions` is called wherever promotion or a version's held-out
figures change (``registry.set_promoted``, ``model_runs.evaluate_stage``) and when the app
and the worker start, so a bar raised in the settings takes effect.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, select

from db.models import ModelVersion, Prediction, PredictionState
from services.training.bar import may_pre_annotate


def offered_versions(versions: list[ModelVersion]) -> set[int]:
    """Ids of the versions (all of one stage) whose pending predictions are offered."""
    promoted = [mv for mv in versions if mv.promoted]
    candidates = promoted or versions
    return {mv.id for mv in candidates if may_pre_annotate(mv).passes}


def sync_offered_predictions(session: Session, stage: str | None = None) -> dict[str, int]:
    """Withdraw the pending predictions of versions no longer offered and restore those of
    versions offered again, for ``stage`` (every stage when None). Returns
    ``{"withdrawn", "restored"}``: how many rows changed state."""
    stmt = select(ModelVersion)
    if stage is not None:
        stmt = stmt.where(ModelVersion.stage == stage)
    by_stage: dict[str, list[ModelVersion]] = {}
    for mv in session.exec(stmt).all():
        by_stage.setdefault(mv.stage, []).append(mv)
    offered: set[int] = set()
    others: set[int] = set()
    for versions in by_stage.values():
        keep = offered_versions(versions)
        offered |= keep
        others |= {mv.id for mv in versions} - keep
    session.flush()
    withdrawn = _move(session, others, PredictionState.pending, PredictionState.withdrawn)
    restored = _move(session, offered, PredictionState.withdrawn, PredictionState.pending)
    return {"withdrawn": withdrawn, "restored": restored}


def _move(
    session: Session, version_ids: set[int], old: PredictionState, new: PredictionState
) -> int:
    if not version_ids:
        return 0
    result = session.execute(
        update(Prediction)
        .where(Prediction.model_version_id.in_(version_ids), Prediction.state == old)
        .values(state=new)
        .execution_options(synchronize_session="fetch")
    )
    return int(result.rowcount or 0)
