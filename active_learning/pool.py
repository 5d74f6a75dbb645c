"""Gather the arrays the strategies need from the store: uncertainty, committee,
embeddings, dominant classes, labelled and held-out masks, for one project's pool.

Predictions come from each stage's promoted version. Instance probability vectors are read
from ``Prediction.probs`` (head -> vector), image embeddings from
``ImagePrediction.embedding`` (float16 bytes).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlmodel import Session, select

from active_learning import committee as cmt
from active_learning import uncertainty as unc
from active_learning.strategies import PoolArrays
from core.geometry import Shape
from db.models import Image, ImagePrediction, ImageStatus, ModelVersion, Prediction, Project
from services.registry import HOLDOUT_SPLIT, LABELLED_STATUSES

#: Stages whose image embeddings k-center prefers, best first.
EMBEDDING_STAGES = ("albert", "yolo_seg", "pipeline", "part_classifier", "mask_rcnn")
#: Pixel grid (longest side) on which committee masks are compared; coarse is enough for IoU.
COMMITTEE_GRID = 128
SIGMOID_HEADS = ("fake",)


@dataclass
class Pool:
    """A project's pool: ``image_ids[i]`` is row i of every array in ``arrays``."""

    image_ids: np.ndarray
    arrays: PoolArrays
    versions: dict[str, ModelVersion] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def main_version_id(self) -> int | None:
        for stage in EMBEDDING_STAGES:
            if stage in self.versions:
                return self.versions[stage].id
        return next((v.id for v in self.versions.values()), None)


def promoted_versions(session: Session) -> dict[str, ModelVersion]:
    rows = session.exec(select(ModelVersion).where(ModelVersion.promoted == True)).all()  # noqa: E712
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
    images = session.exec(
        select(Image).where(Image.project_id == project.id).order_by(Image.import_order, Image.id)
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
    preds = _predictions(session, versions, set(row))
    pool.arrays.uncertainty, pool.arrays.classes = _uncertainty(
        preds, row, n, measure, how, class_weights
    )
    processed = {
        stage: set(
            session.exec(
                select(ImagePrediction.image_id).where(ImagePrediction.model_version_id == mv.id)
            ).all()
        )
        or {p.image_id for p in preds.get(stage, [])}
        for stage, mv in versions.items()
    }
    pool.arrays.committee = _committee(preds, processed, images, row, n)
    pool.arrays.embeddings = _embeddings(session, versions, row, n, pool.notes)
    if with_descriptors or pool.arrays.embeddings is None:
        from active_learning.descriptors import load_descriptors

        pool.arrays.descriptors = load_descriptors(images)
    return pool


def _predictions(
    session: Session, versions: dict[str, ModelVersion], ids: set[int]
) -> dict[str, list[Prediction]]:
    out: dict[str, list[Prediction]] = {}
    for stage, mv in versions.items():
        rows = session.exec(select(Prediction).where(Prediction.model_version_id == mv.id)).all()
        out[stage] = [p for p in rows if p.image_id in ids]
    return out


def _uncertainty(preds, row, n, measure, how, class_weights):
    heads: dict[str, list[tuple[list[float], int, int]]] = defaultdict(list)
    for plist in preds.values():
        for p in plist:
            for head, vec in (p.probs or {}).items():
                heads[head].append((vec, row[p.image_id], p.class_id))
    if not heads:
        return None, None
    total = np.zeros(n)
    best = np.full(n, -1.0)
    classes = np.full(n, -1, dtype=np.int64)
    for head, items in heads.items():
        width = max(len(v) for v, _, _ in items)
        probs = np.zeros((len(items), width), dtype=np.float32)
        for i, (v, _, _) in enumerate(items):
            probs[i, : len(v)] = v
        idx = np.array([r for _, r, _ in items])
        cid = np.array([c for _, _, c in items])
        inst = unc.instance_uncertainty(probs, measure, sigmoid=head in SIGMOID_HEADS)
        total += unc.aggregate(inst, idx, n, how=how, class_ids=cid, class_weights=class_weights)
        conf = probs.max(axis=1)
        for r, c, s in zip(idx, cid, conf, strict=True):  # dominant class = most confident instance
            if s > best[r]:
                best[r], classes[r] = s, c
    return total, classes


def _masks(preds: list[Prediction], group: str, image: Image) -> tuple[np.ndarray, np.ndarray]:
    scale = COMMITTEE_GRID / max(image.width, image.height, 1)
    h, w = max(1, round(image.height * scale)), max(1, round(image.width * scale))
    sel = [p for p in preds if p.group == group]
    masks = np.zeros((len(sel), h, w), dtype=bool)
    for i, p in enumerate(sel):
        masks[i] = Shape.from_json(p.geometry).scaled(scale).to_mask(h, w)
    return masks, np.array([p.class_id for p in sel], dtype=np.int64)


def _by_image(plist: list[Prediction]) -> dict[int, list[Prediction]]:
    out: dict[int, list[Prediction]] = defaultdict(list)
    for p in plist:
        out[p.image_id].append(p)
    return out


def _committee(
    preds: dict[str, list[Prediction]],
    processed: dict[str, set[int]],
    images: list[Image],
    row: dict[int, int],
    n: int,
):
    """Average of the available pairwise disagreements (see :mod:`active_learning.committee`)."""
    by_stage = {s: _by_image(p) for s, p in preds.items()}
    by_id = {im.id: im for im in images}
    scores: list[np.ndarray] = []

    def pair(a: str, b: str, group: str) -> None:
        if a not in by_stage or b not in by_stage:
            return
        s = np.full(n, np.nan)
        # only photos both stages processed; a stage finding nothing there is a real disagreement
        for iid in processed[a] & processed[b] & set(row):
            im = by_id[iid]
            ma, ca = _masks(by_stage[a].get(iid, []), group, im)
            mb, cb = _masks(by_stage[b].get(iid, []), group, im)
            s[row[iid]] = cmt.mask_disagreement(ma, ca, mb, cb)
        scores.append(s)

    pair("albert", "yolo_seg", "part")
    pair("albert", "mask_rcnn", "damage")
    resnet = "pipeline" if "pipeline" in by_stage else "part_classifier"
    if "albert" in by_stage and resnet in by_stage:
        s = np.full(n, np.nan)
        for iid in processed["albert"] & processed[resnet] & set(row):
            parts = by_stage[resnet].get(iid, [])
            im = by_id[iid]
            pm, _ = _masks(parts, "part", im)
            dmg, _ = _masks(by_stage["albert"].get(iid, []), "damage", im)
            dscore = np.array(
                [p.score for p in by_stage["albert"].get(iid, []) if p.group == "damage"]
            )
            p_resnet = [
                float((p.extra or {}).get("damaged_prob", np.nan))
                for p in parts
                if p.group == "part"
            ]
            # ALBERT's P(part damaged): its most confident damage instance lying on the part
            p_albert = [
                float(
                    max([dscore[j] for j in range(len(dmg)) if (dmg[j] & pm[i]).any()], default=0.0)
                )
                for i in range(len(pm))
            ]
            ok = ~np.isnan(p_resnet)
            s[row[iid]] = cmt.probability_disagreement(
                np.array(p_albert)[ok], np.array(p_resnet)[ok]
            )
        scores.append(s)
    return cmt.combine(*scores) if scores else None


def _embeddings(session, versions, row, n, notes: list[str]) -> np.ndarray | None:
    for stage in [*EMBEDDING_STAGES, *sorted(set(versions) - set(EMBEDDING_STAGES))]:
        mv = versions.get(stage)
        if mv is None:
            continue
        rows = session.exec(
            select(ImagePrediction.image_id, ImagePrediction.embedding).where(
                ImagePrediction.model_version_id == mv.id, ImagePrediction.embedding.is_not(None)
            )
        ).all()
        got = {iid: np.frombuffer(emb, dtype=np.float16) for iid, emb in rows if iid in row}
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
