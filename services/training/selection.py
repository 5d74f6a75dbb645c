"""Recompute the annotation queue from the store with the strategies of ``active_learning``.

:func:`load_pool` gathers the arrays a strategy needs for one project: uncertainty and
committee disagreement from the promoted versions' predictions (read as
:class:`~core.instances.Instances` through :mod:`services.training.predictions`), image embeddings
from ``ImagePrediction.embedding``, labelled and held-out masks, and cold-start descriptors
(:mod:`services.training.descriptors`). :func:`select` runs a strategy over that pool, stores the
scores (``ImageScore``, per image, strategy and model version) and mirrors them into
``Image.queue_score``, which the workspace queue orders by (highest first).

Queue scores: the k selected images get ``1 + (k - rank) / k`` (so they lead, in pick order);
the other open images get their strategy score scaled into ``[0, 1)`` when the strategy has
one per image (uncertainty, committee), else no score (they follow in import order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import update
from sqlmodel import Session
from sqlmodel import select as sql_select

from active_learning import committee as cmt
from active_learning import uncertainty as unc
from active_learning.strategies import STRATEGIES, PoolArrays, run_strategy
from core.instances import Instances
from db.models import (
    LABELLED_STATUSES,
    Annotation,
    Image,
    ImagePrediction,
    ImageScore,
    ImageStatus,
    Job,
    JobStatus,
    ModelVersion,
    Project,
)
from services.errors import Invalid
from services.training.descriptors import ensure_descriptors, load_descriptors
from services.training.predictions import decode_embedding, version_predictions
from services.training.registry import HOLDOUT_SPLIT

#: Heads whose vectors are independent sigmoids (one flag each), not one softmax.
SIGMOID_HEADS = ("fake",)
#: Strategies whose per-image score is meaningful for the images not selected.
SCORED = {"uncertainty": "uncertainty", "committee": "committee", "hybrid": "uncertainty"}

#: stage -> image id -> that stage's instances on the image
StagePredictions = dict[str, dict[int, Instances]]


def embedding_order(versions: dict[str, ModelVersion]) -> list[str]:
    """The stages of ``versions``, those whose image embeddings k-center prefers first (their
    ``embedding_rank``), then the others by name."""
    from models.base import StageError
    from models.registry import stage_info

    def rank(stage: str) -> tuple[int, str]:
        try:
            r = stage_info(stage).embedding_rank
        except StageError:
            r = None
        return (r if r is not None else 1_000, stage)

    return sorted(versions, key=rank)


@dataclass
class Pool:
    """A project's pool: ``image_ids[i]`` is row i of every array in ``arrays``."""

    image_ids: np.ndarray
    arrays: PoolArrays
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def main_version_id(self) -> int | None:
        for stage in embedding_order(self.versions):
            return self.versions[stage].id
        return None


def select(
    session: Session,
    project: Project,
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

    ``info`` (a dict) is filled with what the pool held (see :func:`describe`).
    """
    if strategy not in STRATEGIES:
        raise Invalid(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")
    if k < 1:
        raise Invalid("k must be at least 1.")
    if strategy == "cold_start":
        ensure_descriptors(
            session.exec(sql_select(Image).where(Image.project_id == project.id)).all()
        )
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
    _store(session, project, pool, picks, scores, raw, strategy)
    return [(int(pool.image_ids[i]), s) for i, s in zip(picks, scores, strict=True)]


def _store(session, project, pool: Pool, picks, scores, raw, strategy: str) -> None:
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
                image_id=iid,
                strategy=strategy,
                model_version_id=pool.main_version_id,
                score=s,
                rank=rank,
            )
        )
    from services.review.quality import review_first_scores

    # low-agreement overlap photos stay first for the reviewers, whatever the selection says
    values.update(review_first_scores(session, project))
    if values:
        # ORM bulk UPDATE by primary key: one executemany, not one statement per image
        session.execute(update(Image), [{"id": i, "queue_score": v} for i, v in values.items()])
    session.flush()


# -- the pool ------------------------------------------------------------------------------


def promoted_versions(session: Session) -> dict[str, ModelVersion]:
    rows = session.exec(sql_select(ModelVersion).where(ModelVersion.promoted == True)).all()  # noqa: E712
    return {m.stage: m for m in rows}


def load_pool(
    session: Session,
    project: Project,
    *,
    measure: str = "entropy",
    how: str = "max",
    class_weights: dict[int, float] | None = None,
    with_descriptors: bool = False,
) -> Pool:
    """The project's images in import order with every array the stored models allow."""
    images = session.exec(
        sql_select(Image)
        .where(Image.project_id == project.id)
        .order_by(Image.import_order, Image.id)
    ).all()
    n = len(images)
    ids = np.array([im.id for im in images], dtype=np.int64)
    row = {int(i): r for r, i in enumerate(ids)}
    labelled = np.array([im.status in LABELLED_STATUSES for im in images], dtype=bool)
    # held out, and rejected photos (unusable), are never picked
    exclude = np.array(
        [im.split == HOLDOUT_SPLIT or im.status == ImageStatus.rejected for im in images],
        dtype=bool,
    )
    versions = promoted_versions(session)
    pool = Pool(ids, PoolArrays(n=n, labelled=labelled, exclude=exclude), versions)
    if n == 0:
        return pool
    pool.arrays.labelled_counts = labelled_class_counts(session, ids[labelled].tolist())
    pool.arrays.round_index = rounds_completed(session, project)
    preds: StagePredictions = {
        stage: version_predictions(session, mv.id, image_ids=set(row))
        for stage, mv in versions.items()
    }
    pool.arrays.uncertainty, pool.arrays.classes = _uncertainty(
        preds, row, measure, how, class_weights
    )
    processed = {
        stage: set(
            session.exec(
                sql_select(ImagePrediction.image_id).where(
                    ImagePrediction.model_version_id == mv.id
                )
            ).all()
        )
        or set(preds[stage])
        for stage, mv in versions.items()
    }
    pool.arrays.committee = _committee(preds, processed, images, row)
    pool.arrays.embeddings = _embeddings(session, versions, row, pool.notes)
    if with_descriptors or pool.arrays.embeddings is None:
        pool.arrays.descriptors = load_descriptors(images)
    return pool


def labelled_class_counts(session: Session, image_ids: list[int]) -> dict[int, int]:
    """Class id -> live annotations of that class on the given (labelled) photos."""
    if not image_ids:
        return {}
    rows = session.exec(
        sql_select(Annotation.class_id).where(
            Annotation.image_id.in_(image_ids),
            Annotation.deleted == False,  # noqa: E712
        )
    ).all()
    values, counts = np.unique(np.asarray(rows, dtype=np.int64), return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def rounds_completed(session: Session, project: Project) -> int:
    """Retraining rounds of the project that completed: the round index whose noise
    ``stratified_entropy`` uses (a round's own selection runs before it completes)."""
    rows = session.exec(
        sql_select(Job.id).where(
            Job.project_id == project.id, Job.kind == "round", Job.status == JobStatus.completed
        )
    ).all()
    return len(rows)


def _uncertainty(
    preds: StagePredictions,
    row: dict[int, int],
    measure: str,
    how: str,
    class_weights: dict[int, float] | None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-image uncertainty summed over heads, and each image's dominant class (that of
    its most confident instance; -1 for none). A head pools the instances of every stage
    that has it, vectors zero-padded to the widest."""
    heads: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for by_image in preds.values():
        for image_id, inst in by_image.items():
            for head, p in inst.probs.items():
                has = ~np.isnan(p).all(axis=1)
                rows = np.full(int(has.sum()), row[image_id])
                heads.setdefault(head, []).append((p[has], rows, inst.class_ids[has]))
    if not heads:
        return None, None
    n = len(row)
    total = np.zeros(n)
    best = np.full(n, -1.0)
    classes = np.full(n, -1, dtype=np.int64)
    for head, parts in heads.items():
        width = max(p.shape[1] for p, _, _ in parts)
        probs = np.concatenate([np.pad(p, ((0, 0), (0, width - p.shape[1]))) for p, _, _ in parts])
        idx = np.concatenate([r for _, r, _ in parts])
        cid = np.concatenate([c for _, _, c in parts])
        inst_u = unc.instance_uncertainty(probs, measure, sigmoid=head in SIGMOID_HEADS)
        total += unc.aggregate(inst_u, idx, n, how=how, class_ids=cid, class_weights=class_weights)
        conf = probs.max(axis=1)
        for r, c, s in zip(idx, cid, conf, strict=True):  # dominant class = most confident instance
            if s > best[r]:
                best[r], classes[r] = s, c
    return total, classes


def _group(inst: Instances | None, group: str) -> Instances:
    if inst is None or not len(inst):
        return Instances.empty()
    return inst[np.array([g == group for g in inst.data["group"]], dtype=bool)]


def _committee(
    preds: StagePredictions,
    processed: dict[str, set[int]],
    images: list[Image],
    row: dict[int, int],
) -> np.ndarray | None:
    """Average of the available pairwise disagreements (see :mod:`active_learning.committee`):
    ALBERT vs YOLO on parts, ALBERT vs Mask R-CNN on damage, ALBERT's damage vs the
    ResNet's P(damaged) per part. Only photos both stages processed count; a stage finding
    nothing on such a photo is a real disagreement."""
    by_id = {im.id: im for im in images}
    scores: list[np.ndarray] = []

    def pair(a: str, b: str, score: Callable[[Image, Instances, Instances], float]) -> None:
        if a not in preds or b not in preds:
            return
        s = np.full(len(row), np.nan)
        for iid in processed[a] & processed[b] & set(row):
            s[row[iid]] = score(by_id[iid], preds[a].get(iid), preds[b].get(iid))
        scores.append(s)

    def masks(group: str) -> Callable[[Image, Instances, Instances], float]:
        return lambda im, a, b: cmt.instances_disagreement(
            _group(a, group), _group(b, group), im.height, im.width
        )

    pair("albert", "yolo_seg", masks("part"))
    pair("albert", "mask_rcnn", masks("damage"))
    pair(
        "albert",
        "pipeline" if "pipeline" in preds else "part_classifier",
        lambda im, a, b: cmt.damaged_disagreement(
            _group(a, "damage"), _group(b, "part"), im.height, im.width
        ),
    )
    return cmt.combine(*scores) if scores else None


def _embeddings(
    session: Session, versions: dict[str, ModelVersion], row: dict[int, int], notes: list[str]
) -> np.ndarray | None:
    """``(N, D)`` image embeddings of the first stage (:func:`embedding_order`) that has one
    for every image of the pool."""
    n = len(row)
    for stage in embedding_order(versions):
        mv = versions[stage]
        rows = session.exec(
            sql_select(ImagePrediction.image_id, ImagePrediction.embedding).where(
                ImagePrediction.model_version_id == mv.id, ImagePrediction.embedding.is_not(None)
            )
        ).all()
        got = {iid: decode_embedding(emb) for iid, emb in rows if iid in row}
        if len(got) < n:
            if got:
                notes.append(f"{mv.name} has embeddings for {len(got)} of {n} images; not used")
            continue
        dim = len(next(iter(got.values())))
        x = np.zeros((n, dim), dtype=np.float32)
        for iid, e in got.items():
            x[row[iid]] = e
        notes.append(f"embeddings from {mv.name}")
        return x
    return None


def describe(pool: Pool) -> dict[str, Any]:
    """What the pool held, for the CLI's and the job's report."""
    a = pool.arrays
    return {
        "images": a.n,
        "labelled": int(a.labelled.sum()) if a.labelled is not None else 0,
        "excluded": int(a.exclude.sum()) if a.exclude is not None else 0,
        "has_uncertainty": a.uncertainty is not None,
        "has_committee": a.committee is not None and bool(np.isfinite(a.committee).any()),
        "has_embeddings": a.embeddings is not None,
        "has_descriptors": a.descriptors is not None,
        "versions": {s: m.name for s, m in pool.versions.items()},
        "notes": pool.notes,
    }
