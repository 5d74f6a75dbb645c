"""Inter-annotator agreement and quorum consensus on one photo (pure numpy, no database).

Instances are compared as masks: each shape is rasterised with the pycocotools rule
(:func:`core.geometry.shape_to_mask`, so holes and several parts count exactly) and
encoded as a COCO RLE, and IoUs come from ``pycocotools.mask.iou``.

Matching two annotators' sets (:func:`match_instances`) is a Hungarian assignment
(``scipy.optimize.linear_sum_assignment``) on IoU, in two passes: first only pairs of the
same class at or above the IoU threshold (*matches*); then, among what is left, pairs of
different classes at or above the threshold (*label disagreements*: the same object, named
differently). Everything else is unmatched.

Per class, over one or more pairs of sets (:func:`class_figures`):

- ``f1`` = 2·matches / (instances of the class in A + in B): symmetric, and equal to
  2PR/(P+R) whichever side is taken as the reference;
- ``mean_iou`` over the matched pairs of the class;
- ``label_disagreements``: cross-class pairs where either side has the class.

:func:`quorum_merge` turns n annotators' sets into one consensus set: an object is kept when
at least ⌈q·n⌉ annotators drew it, with the class most of them gave it and the pixels that at
least half of those annotators covered (a vote-weighted mask).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from core.geometry import mask_to_shape, shape_to_mask
from core.instances import Instances

__all__ = [
    "ClassFigures",
    "Match",
    "MatchResult",
    "class_figures",
    "encode_masks",
    "iou_matrix",
    "match_instances",
    "pairwise_figures",
    "quorum_merge",
    "summarise",
]


@dataclass(frozen=True)
class Match:
    """Instance ``i`` of set A paired with instance ``j`` of set B."""

    i: int
    j: int
    iou: float
    class_a: int
    class_b: int


@dataclass
class MatchResult:
    """How two annotators' sets pair up (indices into A and B)."""

    matches: list[Match]
    label_disagreements: list[Match]
    unmatched_a: list[int]
    unmatched_b: list[int]
    classes_a: np.ndarray
    classes_b: np.ndarray


def encode_masks(inst: Instances, height: int, width: int) -> list[dict[str, Any]]:
    """COCO RLEs of the instances' masks, rasterised the way pycocotools rasterises polygons."""
    rles = []
    for shape in inst.shapes:
        mask = shape_to_mask(shape, height, width)
        rles.append(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))
    return rles


def iou_matrix(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> np.ndarray:
    """``(len(a), len(b))`` float64 IoU of two lists of RLEs (zeros when either is empty)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), dtype=np.float64)
    return np.asarray(mask_utils.iou(list(a), list(b), [0] * len(b)), dtype=np.float64).reshape(
        len(a), len(b)
    )


def _assign(ious: np.ndarray, allowed: np.ndarray) -> list[tuple[int, int]]:
    """Maximum-IoU one-to-one pairs among ``allowed`` cells (Hungarian)."""
    if not allowed.any():
        return []
    # Disallowed cells cost more than any allowed pairing, so they are taken only where
    # nothing else is left, and dropped afterwards.
    cost = np.where(allowed, -ious, 1.0)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if allowed[r, c]]


def match_instances(
    a: Instances,
    b: Instances,
    *,
    height: int,
    width: int,
    iou_threshold: float = 0.5,
    ious: np.ndarray | None = None,
) -> MatchResult:
    """Pair the instances of two annotators on one ``height`` x ``width`` photo.

    Same-class pairs with IoU ≥ ``iou_threshold`` first (Hungarian on IoU), then cross-class
    pairs among the rest (label disagreements). ``ious`` may be given precomputed (``(Na, Nb)``).
    """
    if ious is None:
        ious = iou_matrix(encode_masks(a, height, width), encode_masks(b, height, width))
    ca, cb = a.class_ids, b.class_ids
    over = ious >= iou_threshold
    same = over & (ca[:, None] == cb[None, :])
    matches = [
        Match(i, j, float(ious[i, j]), int(ca[i]), int(cb[j])) for i, j in _assign(ious, same)
    ]
    left_a = np.ones(len(a), dtype=bool)
    left_b = np.ones(len(b), dtype=bool)
    for m in matches:
        left_a[m.i] = left_b[m.j] = False
    cross = over & left_a[:, None] & left_b[None, :]
    disagreements = [
        Match(i, j, float(ious[i, j]), int(ca[i]), int(cb[j])) for i, j in _assign(ious, cross)
    ]
    for m in disagreements:
        left_a[m.i] = left_b[m.j] = False
    return MatchResult(
        matches=matches,
        label_disagreements=disagreements,
        unmatched_a=[int(i) for i in np.flatnonzero(left_a)],
        unmatched_b=[int(j) for j in np.flatnonzero(left_b)],
        classes_a=ca,
        classes_b=cb,
    )


@dataclass
class ClassFigures:
    """Counts for one class summed over pairs of sets; the ratios are derived."""

    matched: int = 0
    instances: int = 0  # in A plus in B, summed over pairs
    iou_sum: float = 0.0
    label_disagreements: int = 0

    def add(self, other: ClassFigures) -> None:
        self.matched += other.matched
        self.instances += other.instances
        self.iou_sum += other.iou_sum
        self.label_disagreements += other.label_disagreements

    @property
    def f1(self) -> float | None:
        return 2 * self.matched / self.instances if self.instances else None

    @property
    def mean_iou(self) -> float | None:
        return self.iou_sum / self.matched if self.matched else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "matched": self.matched,
            "instances": self.instances,
            "iou_sum": self.iou_sum,
            "label_disagreements": self.label_disagreements,
            "f1": self.f1,
            "mean_iou": self.mean_iou,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassFigures:
        return cls(
            matched=int(d.get("matched", 0)),
            instances=int(d.get("instances", 0)),
            iou_sum=float(d.get("iou_sum", 0.0)),
            label_disagreements=int(d.get("label_disagreements", 0)),
        )


def class_figures(result: MatchResult) -> dict[int, ClassFigures]:
    """Per-class figures of one matched pair of sets (class id -> figures)."""
    out: dict[int, ClassFigures] = {}

    def fig(c: int) -> ClassFigures:
        return out.setdefault(int(c), ClassFigures())

    for c in result.classes_a:
        fig(c).instances += 1
    for c in result.classes_b:
        fig(c).instances += 1
    for m in result.matches:
        fig(m.class_a).matched += 1
        fig(m.class_a).iou_sum += m.iou
    for m in result.label_disagreements:
        fig(m.class_a).label_disagreements += 1
        fig(m.class_b).label_disagreements += 1
    return out


def summarise(per_class: dict[int, ClassFigures]) -> dict[str, Any]:
    """Photo- (or annotator-) level figures over all classes: F1 pools the counts, so a
    class with many instances weighs more. Two empty sets agree fully (``f1`` = 1)."""
    total = ClassFigures()
    for f in per_class.values():
        total.add(f)
    return {
        "f1": 1.0 if total.instances == 0 else total.f1,
        "mean_iou": total.mean_iou,
        "matched": total.matched,
        "instances": total.instances,
        "label_disagreements": total.label_disagreements,
    }


@dataclass
class PairFigures:
    """One ordered pair of annotators on one photo."""

    a: str
    b: str
    per_class: dict[int, ClassFigures] = field(default_factory=dict)


def pairwise_figures(
    sets: dict[str, Instances], *, height: int, width: int, iou_threshold: float = 0.5
) -> list[PairFigures]:
    """Figures for every unordered pair of annotators (``name -> instances``) on one photo;
    each mask is rasterised once."""
    names = sorted(sets)
    rles = {n: encode_masks(sets[n], height, width) for n in names}
    out = []
    for k, na in enumerate(names):
        for nb in names[k + 1 :]:
            res = match_instances(
                sets[na],
                sets[nb],
                height=height,
                width=width,
                iou_threshold=iou_threshold,
                ious=iou_matrix(rles[na], rles[nb]),
            )
            out.append(PairFigures(na, nb, class_figures(res)))
    return out


def quorum_merge(
    sets: Sequence[Instances],
    *,
    q: float,
    height: int,
    width: int,
    iou_threshold: float = 0.5,
) -> Instances:
    """Consensus of n annotators' sets: objects drawn by at least ⌈q·n⌉ of them.

    Objects are clustered by matching each set in turn against the clusters so far (their
    first member's mask), with the same two passes as :func:`match_instances`, so a cluster
    holds at most one instance per annotator and may mix classes. A kept cluster gets the
    most voted class (ties: the earliest annotator's) and the pixels covered by at least half
    of its members. ``data["votes"]`` says how many annotators drew each kept object.
    """
    if not 0 < q <= 1:
        raise ValueError(f"quorum q must be in (0, 1], got {q}")
    n = len(sets)
    if n == 0:
        return Instances.empty()
    need = max(1, math.ceil(q * n - 1e-9))
    # cluster = list of (set index, instance index)
    clusters: list[list[tuple[int, int]]] = []
    rep_rles: list[dict[str, Any]] = []
    rep_classes: list[int] = []
    all_rles = [encode_masks(s, height, width) for s in sets]
    for k, inst in enumerate(sets):
        rep = Instances(
            shapes=[sets[c[0][0]].shapes[c[0][1]] for c in clusters],
            class_ids=np.array(rep_classes, dtype=np.int64),
        )
        res = match_instances(
            rep,
            inst,
            height=height,
            width=width,
            iou_threshold=iou_threshold,
            ious=iou_matrix(rep_rles, all_rles[k]),
        )
        for m in res.matches + res.label_disagreements:
            clusters[m.i].append((k, m.j))
        for j in res.unmatched_b:
            clusters.append([(k, j)])
            rep_rles.append(all_rles[k][j])
            rep_classes.append(int(inst.class_ids[j]))
    shapes, classes, attrs, votes = [], [], [], []
    for members in clusters:
        if len(members) < need:
            continue
        counts = Counter(int(sets[k].class_ids[j]) for k, j in members)
        best = max(counts.values())
        cls = next(
            int(sets[k].class_ids[j])
            for k, j in members
            if counts[int(sets[k].class_ids[j])] == best
        )
        stack = np.stack([mask_utils.decode(all_rles[k][j]).astype(bool) for k, j in members])
        merged = stack.sum(axis=0) * 2 >= len(members)
        shape = mask_to_shape(merged)
        if shape is None:
            continue
        first = next((k, j) for k, j in members if int(sets[k].class_ids[j]) == cls)
        shapes.append(shape)
        classes.append(cls)
        attrs.append(dict(sets[first[0]].attributes[first[1]]))
        votes.append(len(members))
    if not shapes:
        return Instances.empty()
    return Instances(
        shapes=shapes, class_ids=np.array(classes), attributes=attrs, data={"votes": votes}
    )
