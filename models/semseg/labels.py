"""Label maps and Instances, both ways, for any semantic segmenter: numpy and OpenCV only.

A segmenter predicts background (label 0) plus the classes of some taxonomy groups, in the
taxonomy's order (:class:`SemanticClasses`: ``part_seg`` the parts, ``damage_seg`` damage
then fake damage). :func:`label_map` paints labelled instances into the map a network trains
on; :func:`components_instances` turns the connected components of an arg-max map into
Instances: traced with their holes (:func:`core.geometry.mask_to_shape`), scored by the mean
probability of their class inside, with one probability vector per group (averaged over the
component, renormalised within the group) and an embedding pooled from the backbone's
features.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from core.geometry import mask_to_shape
from core.instances import Instances
from core.taxonomy import LabelClass, Taxonomy

#: predictions are traced at the photo's size, its longer side capped here (a 4000 px photo
#: would cost 62 class maps of 16 M pixels for no visible gain)
TRACE_MAX_SIDE = 640


class SemanticClasses:
    """The labels of a segmenter predicting ``groups`` of ``taxonomy``: label ``1 + k`` is the
    ``k``-th class of the groups' classes, in group order then taxonomy order."""

    def __init__(self, taxonomy: Taxonomy, groups: Sequence[str]):
        self.taxonomy = taxonomy
        self.groups = tuple(groups)
        self.classes: tuple[LabelClass, ...] = tuple(
            c for g in self.groups for c in taxonomy.group(g)
        )
        self._label = {c.id: 1 + k for k, c in enumerate(self.classes)}
        #: group -> (first label, one past the last label)
        self.spans: dict[str, tuple[int, int]] = {}
        lo = 1
        for g in self.groups:
            n = len(taxonomy.group(g))
            self.spans[g] = (lo, lo + n)
            lo += n

    def __len__(self) -> int:
        """The number of labels, background included."""
        return 1 + len(self.classes)

    def label(self, class_id: int) -> int | None:
        """The label of taxonomy class ``class_id``; None for a class of another group."""
        return self._label.get(int(class_id))

    def class_at(self, label: int) -> LabelClass:
        return self.classes[label - 1]

    def mirror_lut(self) -> np.ndarray:
        """``(1 + C,)`` int64: label -> label of the mirrored photo (background stays 0)."""
        return np.asarray(
            [0, *(self._label[self.taxonomy.mirror_id(c.id)] for c in self.classes)], np.int64
        )


def flip_sample(
    image: np.ndarray, labels: np.ndarray, lut: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The photo and its label map mirrored left-right, sided classes swapped through ``lut``."""
    return np.ascontiguousarray(image[:, ::-1]), lut[labels[:, ::-1]]


def label_map(
    instances: Instances, classes: SemanticClasses, height: int, width: int, sx: float, sy: float
) -> np.ndarray:
    """``(height, width)`` int64 label map of the instances of ``classes`` scaled by
    ``(sx, sy)``; larger ones are painted first so a small one lying on a large one stays
    visible."""
    out = np.zeros((height, width), np.int64)
    found = []
    for s, c in zip(instances.shapes, instances.class_ids, strict=True):
        k = classes.label(int(c))
        if k is not None:
            found.append((s.area, s, k))
    for _, s, k in sorted(found, key=lambda t: -t[0]):
        out[s.scaled(sx, sy).to_mask(height, width)] = k
    return out


def traced_size(h: int, w: int) -> tuple[int, int]:
    """The size at which a photo's probabilities are traced into polygons: the photo's, with
    its longer side capped at ``TRACE_MAX_SIDE``."""
    k = min(1.0, TRACE_MAX_SIDE / max(h, w))
    return max(1, round(h * k)), max(1, round(w * k))


def components(
    labels: np.ndarray, merge_px: int = 0
) -> Iterator[tuple[int, np.ndarray, int, float, float]]:
    """``(label, mask, area, centre_y, centre_x)`` of each 8-connected component of each
    label of ``labels`` (background 0 excluded).

    With ``merge_px``, pieces of one label less than about ``2 * merge_px`` apart are one
    component (its mask keeps only their own pixels, so it may have several parts): a
    scratch the map breaks into dashes is then one instance, as an annotator draws it."""
    import cv2

    for k in np.unique(labels):
        if k == 0:
            continue
        m = (labels == k).astype(np.uint8)
        if merge_px > 0:
            disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * merge_px + 1,) * 2)
            n, cc = cv2.connectedComponents(cv2.dilate(m, disc), connectivity=8)
            cc = cc * m
            for j in range(1, n):
                mask = cc == j
                ys, xs = np.nonzero(mask)
                if len(ys):
                    yield int(k), mask, len(ys), float(ys.mean()), float(xs.mean())
            continue
        n, cc, stats, cents = cv2.connectedComponentsWithStats(m, connectivity=8)
        for j in range(1, n):
            area = int(stats[j, cv2.CC_STAT_AREA])
            yield int(k), cc == j, area, float(cents[j][1]), float(cents[j][0])


def large_components(
    labels: np.ndarray, min_area_frac: float, merge_px: int = 0
) -> list[dict[str, Any]]:
    """``{"k", "mask", "cx"}`` of each component (:func:`components`) covering at least
    ``min_area_frac`` of the map (specks dropped)."""
    h, w = labels.shape
    min_px = max(1.0, min_area_frac * h * w)
    return [
        {"k": k, "mask": mask, "cx": cx}
        for k, mask, area, _, cx in components(labels, merge_px)
        if area >= min_px
    ]


def components_instances(
    comps: list[dict[str, Any]],
    probs: np.ndarray,
    classes: SemanticClasses,
    *,
    min_px: float,
    tolerance: float = 1.5,
    features: np.ndarray | None = None,
) -> tuple[Instances, list[int]]:
    """Instances of the components ``comps`` (:func:`large_components`, their ``k`` perhaps
    relabelled) under softmax ``probs`` ``(1+C, H, W)``; and the index in ``comps`` of each
    instance (a component too thin to trace is dropped). ``features`` ``(D, h, w)`` gives each
    instance an embedding pooled over its component."""
    shapes, class_ids, scores, embs, kept = [], [], [], [], []
    vecs: dict[str, list[np.ndarray]] = {g: [] for g in classes.groups}
    for i, c in enumerate(comps):
        shape = mask_to_shape(c["mask"], tolerance=tolerance, min_area=max(4.0, 0.1 * min_px))
        if shape is None:
            continue
        inside = probs[:, c["mask"]].mean(1)  # (1+C,)
        for g, (lo, hi) in classes.spans.items():
            vecs[g].append(inside[lo:hi] / max(float(inside[lo:hi].sum()), 1e-12))
        shapes.append(shape)
        class_ids.append(classes.class_at(c["k"]).id)
        scores.append(float(inside[c["k"]]))
        kept.append(i)
        if features is not None:
            embs.append(pooled(features, c["mask"]))
    n = len(shapes)
    inst = Instances(
        shapes=shapes,
        class_ids=np.asarray(class_ids, np.int64),
        scores=np.asarray(scores, np.float32),
        probs={
            g: np.asarray(vecs[g], np.float32).reshape(n, hi - lo)
            for g, (lo, hi) in classes.spans.items()
        },
        embeddings=(
            np.asarray(embs, np.float32).reshape(n, features.shape[0])
            if features is not None
            else None
        ),
    )
    return inst, kept


def pooled(features: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(D,)`` mean of ``features`` ``(D, h, w)`` over ``mask`` (any size) resampled to ``(h, w)``."""
    import cv2

    d, fh, fw = features.shape
    wgt = cv2.resize(mask.astype(np.float32), (fw, fh), interpolation=cv2.INTER_AREA)
    if wgt.sum() <= 1e-6:  # smaller than a feature cell: its nearest cell
        ys, xs = np.nonzero(mask)
        wgt = np.zeros((fh, fw), np.float32)
        wgt[int(ys.mean() * fh / mask.shape[0]), int(xs.mean() * fw / mask.shape[1])] = 1.0
    return (features * wgt).sum((1, 2)) / wgt.sum()


def focused_crop(
    labels: np.ndarray, crop: int, focus_p: float, rng: np.random.Generator
) -> tuple[int, int]:
    """Top-left ``(y0, x0)`` of a ``crop`` x ``crop`` window of ``labels``: with probability
    ``focus_p`` centred (within the map) on a random labelled pixel, so thin, rare classes
    (a scratch) are seen at full resolution; else anywhere."""
    h, w = labels.shape
    if crop >= h and crop >= w:
        return 0, 0
    if rng.random() < focus_p:
        ys, xs = np.nonzero(labels)
        if len(ys):
            j = int(rng.integers(len(ys)))
            y0 = int(np.clip(ys[j] - crop // 2, 0, max(0, h - crop)))
            x0 = int(np.clip(xs[j] - crop // 2, 0, max(0, w - crop)))
            return y0, x0
    return int(rng.integers(max(1, h - crop + 1))), int(rng.integers(max(1, w - crop + 1)))
