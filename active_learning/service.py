"""Recompute the annotation queue: run a strategy over the project's pool, store the scores
(``ImageScore``, per image, strategy and model version) and mirror them into
``Image.queue_score``, which the workspace queue orders by (highest first).

Queue scores: the k selected images get ``1 + (k - rank) / k`` (so they lead, in pick order);
the other open images get their strategy score scaled into ``[0, 1)`` when the strategy has
one per image (uncertainty, committee), else no score (they follow in import order).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import update
from sqlmodel import Session

from active_learning.pool import describe, load_pool
from active_learning.strategies import STRATEGIES, run_strategy
from db.models import Image, ImageScore
from services.errors import Invalid

#: Strategies whose per-image score is meaningful for the images not selected.
SCORED = {"uncertainty": "uncertainty", "committee": "committee", "hybrid": "uncertainty"}


def select(
    session: Session,
    project,
    *,
    strategy: str = "hybrid",
    k: int = 100,
    seed: int = 0,
    balance: bool = False,
    measure: str = "entropy",
    how: str = "max",
    class_weights: dict[int, float] | None = None,
    info: dict[str, Any] | None = None,
) -> list[tuple[int, float]]:
    """Select ``k`` images with ``strategy``; returns ``[(image_id, score), ...]`` best first.

    ``info`` (a dict) is filled with what the pool held (versions used, notes).
    """
    if strategy not in STRATEGIES:
        raise Invalid(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")
    if k < 1:
        raise Invalid("k must be at least 1.")
    if strategy == "cold_start":
        _ensure_cold_descriptors(session, project)
    pool = load_pool(
        session,
        project,
        measure=measure,
        how=how,
        class_weights=class_weights,
        with_descriptors=strategy == "cold_start",
    )
    if info is not None:
        info.update(describe(pool))
    try:
        picks = run_strategy(strategy, pool.arrays, k, seed=seed, balance=balance)
    except ValueError as e:
        raise Invalid(str(e)) from e
    raw = getattr(pool.arrays, SCORED[strategy]) if strategy in SCORED else None
    n_sel = len(picks)
    scores = [
        float(raw[i])
        if raw is not None and np.isfinite(raw[i])
        else float((n_sel - r) / max(n_sel, 1))
        for r, i in enumerate(picks)
    ]
    version_id = pool.main_version_id
    result = [(int(pool.image_ids[i]), s) for i, s in zip(picks, scores, strict=True)]
    _store(session, project, pool, picks, scores, raw, strategy, version_id)
    return result


def _ensure_cold_descriptors(session: Session, project) -> None:
    from sqlmodel import select as sql_select

    from active_learning.descriptors import ensure_descriptors

    images = session.exec(sql_select(Image).where(Image.project_id == project.id)).all()
    ensure_descriptors(images)


def _store(session, project, pool, picks, scores, raw, strategy, version_id) -> None:
    ids = pool.image_ids
    session.execute(update(Image).where(Image.project_id == project.id).values(queue_score=None))
    values: dict[int, float] = {}
    if raw is not None:
        finite = np.isfinite(raw)
        if finite.any():
            top = float(np.max(np.abs(raw[finite]))) or 1.0
            blocked = pool.arrays.labelled | pool.arrays.exclude
            for i in np.flatnonzero(finite & ~blocked):
                values[int(ids[i])] = 0.999 * float(raw[i]) / top
    k = len(picks)
    for rank, (i, s) in enumerate(zip(picks, scores, strict=True)):
        iid = int(ids[i])
        values[iid] = 1.0 + (k - rank) / k
        session.add(
            ImageScore(
                image_id=iid, strategy=strategy, model_version_id=version_id, score=s, rank=rank
            )
        )
    if values:
        # ORM bulk UPDATE by primary key: one executemany, not one statement per image
        session.execute(update(Image), [{"id": i, "queue_score": v} for i, v in values.items()])
    session.flush()
