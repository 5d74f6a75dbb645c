"""Every stage's measures, in one place.

- :func:`classification_metrics`: the ALBERT paper's tables 1-2 (accuracy, precision, recall,
  macro F1) for one head; :func:`coco_mask_ap`: COCO mask AP/AP50 through pycocotools. Inputs
  are :class:`core.instances.Instances` pairs (prediction, ground truth) per image; only
  instances of the given taxonomy group count.
- :func:`evaluate_predictions`: both, per taxonomy group, of a stage's predictions over a
  labelled :class:`models.data.TrainingSet` (what ``Stage.evaluate`` does unless a stage
  measures something else: assist_net scores box prompts instead).
- :class:`SemanticIoU`: per-class IoU of label maps (the semantic segmenters' mIoU).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from core.geometry import masks_iou_matrix
from core.instances import ImageResult, Instances
from core.taxonomy import Taxonomy
from models.data import Progress, TrainingSet


def _select(inst: Instances, taxonomy: Taxonomy, group: str) -> Instances:
    keep = [
        i
        for i, c in enumerate(inst.class_ids)
        if int(c) in taxonomy and taxonomy.by_id(int(c)).group == group
    ]
    return inst[keep]


def classification_metrics(
    pairs: list[tuple[Instances, Instances, int, int]],
    taxonomy: Taxonomy,
    group: str,
    iou_threshold: float = 0.5,
) -> dict[str, float | int]:
    """Each ground-truth instance is matched (greedily by score) to an unused prediction of
    the group with mask IoU >= threshold; its class is right when they agree. Unmatched
    ground truth counts as a miss, unmatched predictions as false positives."""
    tp, fp, fn = Counter(), Counter(), Counter()
    n_gt = correct = 0
    for pred, gt, h, w in pairs:
        p, g = _select(pred, taxonomy, group), _select(gt, taxonomy, group)
        n_gt += len(g)
        used: set[int] = set()
        if len(p) and len(g):
            iou = masks_iou_matrix(p.masks(h, w), g.masks(h, w))
            for pi in np.argsort(-p.scores):
                cand = [
                    (iou[pi, gi], gi)
                    for gi in range(len(g))
                    if gi not in used and iou[pi, gi] >= iou_threshold
                ]
                if not cand:
                    fp[int(p.class_ids[pi])] += 1
                    continue
                gi = max(cand)[1]
                used.add(gi)
                pc, gc = int(p.class_ids[pi]), int(g.class_ids[gi])
                if pc == gc:
                    tp[gc] += 1
                    correct += 1
                else:
                    fp[pc] += 1
                    fn[gc] += 1
        else:
            for c in p.class_ids:
                fp[int(c)] += 1
        for gi in range(len(g)):
            if gi not in used:
                fn[int(g.class_ids[gi])] += 1
    classes = sorted(set(tp) | set(fp) | set(fn))
    prec = [tp[c] / (tp[c] + fp[c]) if tp[c] + fp[c] else 0.0 for c in classes]
    rec = [tp[c] / (tp[c] + fn[c]) if tp[c] + fn[c] else 0.0 for c in classes]
    f1 = [2 * a * b / (a + b) if a + b else 0.0 for a, b in zip(prec, rec, strict=True)]
    return {
        "instances": n_gt,
        "accuracy": correct / n_gt if n_gt else 0.0,
        "precision": float(np.mean(prec)) if classes else 0.0,
        "recall": float(np.mean(rec)) if classes else 0.0,
        "macro_f1": float(np.mean(f1)) if classes else 0.0,
    }


def coco_mask_ap(
    pairs: list[tuple[Instances, Instances, int, int]], taxonomy: Taxonomy, group: str
) -> dict[str, float] | None:
    """COCO ``segm`` AP and AP50 of the group's instances; None when it has no ground truth.

    ``per_class_AP50`` maps each class id with ground truth (as a string, a JSON key) to its
    own AP50: the mean of COCOeval's precision over the recall thresholds at IoU 0.5, all
    areas, the most detections."""
    import contextlib
    import io

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, dets = [], [], []
    cats = {c.id for c in taxonomy.group(group)}
    for k, (pred, gt, h, w) in enumerate(pairs):
        images.append({"id": k + 1, "height": h, "width": w})
        for inst, out, is_gt in (
            (_select(gt, taxonomy, group), anns, True),
            (_select(pred, taxonomy, group), dets, False),
        ):
            if not len(inst):
                continue
            masks = inst.masks(h, w)
            for i in range(len(inst)):
                rle = mask_utils.encode(np.asfortranarray(masks[i].astype(np.uint8)))
                rle["counts"] = rle["counts"].decode()
                entry = {
                    "image_id": k + 1,
                    "category_id": int(inst.class_ids[i]),
                    "segmentation": rle,
                    "area": float(masks[i].sum()),
                    "bbox": list(mask_utils.toBbox(rle)),
                }
                if is_gt:
                    entry |= {"id": len(out) + 1, "iscrowd": 0}
                else:
                    entry["score"] = float(inst.scores[i])
                out.append(entry)
    if not anns:
        return None
    if not dets:
        zeros = {str(c): 0.0 for c in sorted({a["category_id"] for a in anns})}
        return {"AP": 0.0, "AP50": 0.0, "per_class_AP50": zeros}
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": images,
            "annotations": anns,
            "categories": [{"id": c} for c in sorted(cats)],
        }
        coco.createIndex()
        dt = coco.loadRes(dets)
        ev = COCOeval(coco, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {
        "AP": max(0.0, float(ev.stats[0])),
        "AP50": max(0.0, float(ev.stats[1])),
        "per_class_AP50": per_class_ap50(ev),
    }


def per_class_ap50(ev: Any) -> dict[str, float]:
    """Class id (a string) -> AP50 from an accumulated ``COCOeval``; classes without ground
    truth (precision -1 throughout) are left out."""
    iou50 = int(np.argmin(np.abs(np.asarray(ev.params.iouThrs) - 0.5)))
    precision = ev.eval["precision"][iou50, :, :, 0, -1]  # (recall, class), all areas, maxDets
    out = {}
    for k, cat in enumerate(ev.params.catIds):
        p = precision[:, k]
        if (p > -1).any():
            out[str(cat)] = float(np.mean(p[p > -1]))
    return out


def evaluate_predictions(
    predict: Callable[[list[np.ndarray]], list[ImageResult]],
    data: TrainingSet,
    groups: Sequence[str] = ("damage", "part"),
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``{group: {...classification figures, "coco": {...}}}`` of ``predict`` over ``data``.

    Photos go to ``predict`` one at a time (a held-out split can be large, and one photo's
    instances are all the metrics need at once). ``progress(done, total, info)`` is called
    after each photo, ``info`` holding the record's file name.
    """
    pairs = []
    for i, rec in enumerate(data.records):
        img = data.load_image(i)
        pairs.append((predict([img])[0].instances, rec.instances, img.shape[0], img.shape[1]))
        if progress:
            progress(i + 1, len(data), {"image": rec.file_name})
    out: dict[str, Any] = {}
    for g in groups:
        out[g] = classification_metrics(pairs, data.taxonomy, g)
        out[g]["coco"] = coco_mask_ap(pairs, data.taxonomy, g)
    return out


class SemanticIoU:
    """Per class of ``groups`` (label ``1 + k``: the ``k``-th of their classes, in group
    order), intersection over union of predicted and labelled label maps, summed over the
    photos; the mean is over the classes either side shows."""

    def __init__(self, taxonomy: Taxonomy, groups: Sequence[str] = ("part",)) -> None:
        self.parts = tuple(c for g in groups for c in taxonomy.group(g))
        self.inter = np.zeros(1 + len(self.parts))
        self.union = np.zeros(1 + len(self.parts))

    def add(self, gt: np.ndarray, pred: np.ndarray) -> None:
        for k in np.union1d(np.unique(gt), np.unique(pred)):
            a, b = gt == k, pred == k
            self.inter[k] += (a & b).sum()
            self.union[k] += (a | b).sum()

    def per_class(self) -> dict[str, float]:
        seen = np.nonzero(self.union[1:] > 0)[0]
        return {self.parts[k].name: float(self.inter[k + 1] / self.union[k + 1]) for k in seen}

    def mean(self) -> float:
        per_class = self.per_class()
        return float(np.mean(list(per_class.values()))) if per_class else 0.0


def collapsed(inst: Instances, taxonomy: Taxonomy, group: str, class_id: int) -> Instances:
    """The group's instances, every one relabelled ``class_id``: the class-agnostic view
    ("damage here") that AP and the found counts are also reported on."""
    sel = _select(inst, taxonomy, group)
    return Instances(
        shapes=sel.shapes,
        class_ids=np.full(len(sel), class_id, np.int64),
        scores=sel.scores,
        data=sel.data,
    )


def instances_found(
    pairs: list[tuple[Instances, Instances, int, int]],
    taxonomy: Taxonomy,
    group: str,
    thresholds: Sequence[float] = (0.5, 0.75),
) -> dict[str, Any]:
    """How many labelled instances of the group a prediction of the same class covers at
    mask IoU >= each threshold, each prediction matched once (greedy by IoU), whatever its
    score: what an annotator would accept instead of drawing.

    ``{"labelled": n, "found@0.5": k, "share@0.5": k / n, ..., "per_class": {class id:
    {"labelled", "found@0.5", ...}}}``."""
    per: dict[int, Counter] = {}
    for pred, gt, h, w in pairs:
        p, g = _select(pred, taxonomy, group), _select(gt, taxonomy, group)
        for c in {int(c) for c in g.class_ids}:
            gi = np.nonzero(g.class_ids == c)[0]
            pi = np.nonzero(p.class_ids == c)[0]
            row = per.setdefault(c, Counter())
            row["labelled"] += len(gi)
            if not len(pi):
                continue
            iou = masks_iou_matrix(g[gi].masks(h, w), p[pi].masks(h, w))
            for t in thresholds:
                row[f"found@{t:g}"] += _greedy_matches(iou, t)
    total: Counter = Counter()
    for row in per.values():
        total.update(row)
    n = total["labelled"]
    out: dict[str, Any] = {"labelled": n}
    for t in thresholds:
        out[f"found@{t:g}"] = total[f"found@{t:g}"]
        out[f"share@{t:g}"] = total[f"found@{t:g}"] / n if n else 0.0
    out["per_class"] = {
        str(c): {"labelled": row["labelled"]}
        | {f"found@{t:g}": row[f"found@{t:g}"] for t in thresholds}
        for c, row in sorted(per.items())
    }
    return out


def _greedy_matches(iou: np.ndarray, threshold: float) -> int:
    """Pairs of (labelled, predicted) matched one to one, highest IoU first, at >= threshold."""
    iou = iou.copy()
    n = 0
    while iou.size and iou.max() >= threshold:
        i, j = np.unravel_index(int(iou.argmax()), iou.shape)
        iou[i, :] = -1
        iou[:, j] = -1
        n += 1
    return n
