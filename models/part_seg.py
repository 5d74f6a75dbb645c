"""``part_seg``: a fast semantic part segmenter that a CPU can train on a project's own labels.

torchvision's LRASPP-MobileNetV3-Large, from scratch by default (a torchvision MobileNetV3-Large
state dict from the weights folder starts the backbone when ``backbone_weights`` names one).
Classes: background + the taxonomy's part classes (``1 + k`` is the part at head index ``k``);
damage stays with the other stages.

Training follows the recipe that measured best (mIoU 0.45 / mask AP50 0.52 after 10 minutes on
400 dsmlr photos on a 2-core CPU): photos squashed to ``size`` x ``size``; AdamW; a linear
warm-up then a cosine decay driven by the elapsed share of the time budget (or of the epochs
when there is no budget), so a run always ends on a small learning rate however fast the
machine is; cross-entropy + ``dice_weight`` x soft Dice; brightness/contrast jitter, scale,
shift and horizontal flips that swap sided classes (:meth:`core.taxonomy.Taxonomy.mirror_id`,
as ALBERT and YOLO do). Training ends by re-measuring the BatchNorm statistics on the training
photos (:meth:`PartSegStage.recalibrate_batch_norm`): without it a short run predicts background.

``small_part_zoom`` (off by default) gives small components a second, zoomed look;
``bench/bench_part_seg.py --evaluate`` measured it, and a larger working size, below the plain
prediction on held-out dsmlr photos, so neither is on.

Instances (:func:`label_map_instances`): per class, the connected components of the arg-max
map covering at least ``min_area_frac`` of the photo, traced with their holes
(:func:`core.geometry.mask_to_shape`: ``RETR_CCOMP`` + Douglas-Peucker). Score: the mean
probability of the class inside the component; ``probs["part"]``: the part-class probability
vector averaged over the component, renormalised over the part classes; ``embeddings``: the
backbone's last features pooled over the component; ``image_embedding``: those features
pooled over the whole photo (960 floats), for active learning.

Sided classes: when a sided class (``front_left_door``) has exactly two components and its
mirror (``front_right_door``) none, the photo shows both sides and one of them is mislabelled.
The rule resolves it by position, using the other sided parts of the same photo as the
compass: if the photo's other "left" parts lie, on average, left of its other "right" parts
(a view from behind), the component on the image's left keeps/gets the left class; if they lie
to the right (a view from the front), the component on the image's right does. Without such
evidence, or with more than two components, nothing is relabelled and the class is reported in
``ImageResult.meta["side_conflicts"]``, and each of its instances carries a sentence in
``data["side_conflict"]``, which the workspace shows beside the pre-annotation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.geometry import mask_to_shape
from core.instances import ImageResult, Instances
from core.taxonomy import Taxonomy, default_taxonomy
from models.base import CheckpointError, OutPath, StageConfig, TrainResult, resolve_device
from models.data import Progress, TrainingSet, check_images
from models.registry import register_stage
from models.torch_stage import TorchStage

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255
#: width of MobileNetV3-Large's last feature map: the size of an embedding
EMBED_DIM = 960
#: predictions are traced at the photo's size, its longer side capped here (a 4000 px photo
#: would cost 62 class maps of 16 M pixels for no visible gain)
TRACE_MAX_SIDE = 640


@dataclass
class PartSegConfig(StageConfig):
    #: photos are resized to size x size for training and prediction
    size: int = 192
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-2
    #: the most epochs; with a time budget training usually stops on the clock first
    epochs: int = 1000
    #: wall-clock seconds of training (None: run ``epochs``); the cosine follows this clock
    time_budget_s: float | None = 600.0
    #: optimiser steps of linear warm-up
    warmup_steps: int = 30
    dice_weight: float = 0.5
    #: augmentation: brightness/contrast jitter (share), scale range, shift (share of size)
    jitter: float = 0.2
    scale_min: float = 0.8
    scale_max: float = 1.2
    shift: float = 0.1
    flip_p: float = 0.5
    #: a component smaller than this share of the photo is not an instance
    min_area_frac: float = 0.002
    #: Douglas-Peucker tolerance of the traced polygons, in traced pixels
    tolerance: float = 1.5
    #: instances whose mean class probability is below this are dropped (bench_part_seg.py:
    #: at 0.5 a 10-minute model offers 1% fewer right polygons and 18% fewer wrong ones)
    score_threshold: float = 0.5
    #: average the probabilities of the photo and of its mirror (sided classes swapped):
    #: +0.007 held-out AP50 and +0.011 mIoU for 3% more time per photo (bench_part_seg.py)
    flip_tta: bool = True
    #: a second look at small parts (lights, mirrors): each component under
    #: ``small_part_max_frac`` of the photo is predicted again on a crop around it, zoomed by
    #: this factor, and the two probability maps are averaged there (0 or 1: off)
    small_part_zoom: float = 0.0
    small_part_max_frac: float = 0.01
    #: the most crops per photo (the smallest components first)
    small_part_max_crops: int = 6
    #: boundary refinement without a CRF: a guided filter (He et al.) of the class probabilities
    #: with the photo's grey levels as guide, so the edges follow the photo's edges; the radius
    #: in traced pixels (0: off) and the regularisation (larger: smoother)
    refine_radius: int = 0
    refine_eps: float = 1e-2
    #: local torchvision MobileNetV3-Large weights (e.g. ImageNet) for the backbone
    backbone_weights: str | None = None

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {
            "size": 64,
            "batch_size": 4,
            "epochs": 8,
            "time_budget_s": None,
            "warmup_steps": 2,
            # random weights score low: the tests want every instance
            "score_threshold": 0.0,
            "flip_tta": False,
        },
        "cpu": {"size": 192, "batch_size": 8, "time_budget_s": 600.0},
        "gpu": {"size": 448, "batch_size": 16, "time_budget_s": 600.0, "warmup_steps": 100},
        # the names every stage answers to (the UI's and the rounds' presets)
        "small": {"size": 192, "batch_size": 8, "time_budget_s": 600.0},
        "base": {"size": 448, "batch_size": 16, "time_budget_s": 600.0, "warmup_steps": 100},
    }


# -- pure functions (tested on hand-made label maps) ----------------------------------------


def mirror_lut(taxonomy: Taxonomy) -> np.ndarray:
    """``(1 + P,)`` int64: label -> label of the mirrored photo (background stays 0)."""
    return np.concatenate([[0], 1 + taxonomy.mirror_index("part")]).astype(np.int64)


def flip_sample(
    image: np.ndarray, labels: np.ndarray, lut: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The photo and its label map mirrored left-right, sided classes swapped through ``lut``."""
    return np.ascontiguousarray(image[:, ::-1]), lut[labels[:, ::-1]]


def label_map(
    instances: Instances, taxonomy: Taxonomy, height: int, width: int, sx: float, sy: float
) -> np.ndarray:
    """``(height, width)`` int64 label map of the part instances scaled by ``(sx, sy)``;
    larger parts are painted first so a small part lying on a large one stays visible."""
    out = np.zeros((height, width), np.int64)
    parts = [
        (s.area, s, int(c))
        for s, c in zip(instances.shapes, instances.class_ids, strict=True)
        if taxonomy.by_id(int(c)).group == "part"
    ]
    for _, s, c in sorted(parts, key=lambda t: -t[0]):
        out[s.scaled(sx, sy).to_mask(height, width)] = 1 + taxonomy.head_index(c)
    return out


def traced_size(h: int, w: int) -> tuple[int, int]:
    """The size at which a photo's probabilities are traced into polygons: the photo's, with
    its longer side capped at ``TRACE_MAX_SIDE``."""
    k = min(1.0, TRACE_MAX_SIDE / max(h, w))
    return max(1, round(h * k)), max(1, round(w * k))


def _side(name: str) -> str | None:
    words = name.split("_")
    return "left" if "left" in words else "right" if "right" in words else None


def components(labels: np.ndarray) -> Iterator[tuple[int, np.ndarray, int, float, float]]:
    """``(label, mask, area, centre_y, centre_x)`` of each 8-connected component of each part
    label of ``labels`` (background 0 excluded)."""
    import cv2

    for k in np.unique(labels):
        if k == 0:
            continue
        n, cc, stats, cents = cv2.connectedComponentsWithStats(
            (labels == k).astype(np.uint8), connectivity=8
        )
        for j in range(1, n):
            area = int(stats[j, cv2.CC_STAT_AREA])
            yield int(k), cc == j, area, float(cents[j][1]), float(cents[j][0])


def label_map_instances(
    labels: np.ndarray,
    probs: np.ndarray,
    taxonomy: Taxonomy,
    *,
    min_area_frac: float = 0.002,
    tolerance: float = 1.5,
    features: np.ndarray | None = None,
) -> tuple[Instances, list[str]]:
    """Instances of an arg-max map ``labels`` ``(H, W)`` with softmax ``probs`` ``(1+P, H, W)``.

    One instance per connected component (8-connectivity) of each class covering at least
    ``min_area_frac`` of the map, holes kept. ``features`` ``(D, h, w)`` (the backbone's last
    map) gives each instance an embedding pooled over its component. Returns the instances
    and the sided classes left unresolved (see the module docstring for the rule).
    """
    h, w = labels.shape
    min_px = max(1.0, min_area_frac * h * w)
    parts = taxonomy.group("part")
    comps = [  # specks dropped
        {"k": k, "mask": mask, "cx": cx}
        for k, mask, area, _, cx in components(labels)
        if area >= min_px
    ]
    conflicts = _resolve_sides(comps, taxonomy)
    lut = mirror_lut(taxonomy)
    shapes, class_ids, scores, vecs, embs, notes = [], [], [], [], [], []
    for c in comps:
        shape = mask_to_shape(c["mask"], tolerance=tolerance, min_area=max(4.0, 0.1 * min_px))
        if shape is None:
            continue
        inside = probs[:, c["mask"]].mean(1)  # (1+P,)
        part_vec = inside[1:] / max(float(inside[1:].sum()), 1e-12)
        shapes.append(shape)
        class_ids.append(parts[c["k"] - 1].id)
        scores.append(float(inside[c["k"]]))
        vecs.append(part_vec)
        name = parts[c["k"] - 1].name
        notes.append(
            f"{name} appears more than once on this photo: check which side each one is "
            f"(or whether one is the {parts[lut[c['k']] - 1].name})"
            if name in conflicts
            else None
        )
        if features is not None:
            embs.append(_pooled(features, c["mask"]))
    n = len(shapes)
    inst = Instances(
        shapes=shapes,
        class_ids=np.asarray(class_ids, np.int64),
        scores=np.asarray(scores, np.float32),
        probs={"part": np.asarray(vecs, np.float32).reshape(n, len(parts))},
        embeddings=(
            np.asarray(embs, np.float32).reshape(n, features.shape[0])
            if features is not None
            else None
        ),
        # the annotator sees it beside the pre-annotation (stored in the prediction's extra)
        data={"side_conflict": notes} if any(notes) else {},
    )
    return inst, conflicts


def _pooled(features: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(D,)`` mean of ``features`` ``(D, h, w)`` over ``mask`` (any size) resampled to ``(h, w)``."""
    import cv2

    d, fh, fw = features.shape
    wgt = cv2.resize(mask.astype(np.float32), (fw, fh), interpolation=cv2.INTER_AREA)
    if wgt.sum() <= 1e-6:  # smaller than a feature cell: its nearest cell
        ys, xs = np.nonzero(mask)
        wgt = np.zeros((fh, fw), np.float32)
        wgt[int(ys.mean() * fh / mask.shape[0]), int(xs.mean() * fw / mask.shape[1])] = 1.0
    return (features * wgt).sum((1, 2)) / wgt.sum()


def _resolve_sides(comps: list[dict[str, Any]], taxonomy: Taxonomy) -> list[str]:
    """Relabel in place the sided pairs the position rule can settle; the names of the
    classes it cannot."""
    parts = taxonomy.group("part")
    lut = mirror_lut(taxonomy)
    by_k: dict[int, list[dict[str, Any]]] = {}
    for c in comps:
        by_k.setdefault(c["k"], []).append(c)
    conflicts = []
    for k, group in sorted(by_k.items()):
        side = _side(parts[k - 1].name)
        m = int(lut[k])
        if side is None or m == k or len(group) < 2:
            continue
        if len(group) > 2 or by_k.get(m):
            conflicts.append(parts[k - 1].name)
            continue
        # the photo's orientation from its other sided parts: +1 when "left" parts lie on
        # the image's left (seen from behind), -1 when they lie on its right (from the front)
        xs = {"left": [], "right": []}
        for c in comps:
            s = _side(parts[c["k"] - 1].name)
            if s is not None and c["k"] not in (k, m):
                xs[s].append(c["cx"])
        if not xs["left"] or not xs["right"]:
            conflicts.append(parts[k - 1].name)
            continue
        left_on_left = np.mean(xs["left"]) < np.mean(xs["right"])
        a, b = sorted(group, key=lambda c: c["cx"])  # a: on the image's left
        left_comp, right_comp = (a, b) if left_on_left else (b, a)
        left_k, right_k = (k, m) if side == "left" else (m, k)
        left_comp["k"], right_comp["k"] = left_k, right_k
    return conflicts


def small_part_windows(
    labels: np.ndarray, zoom: float, *, max_frac: float, min_px: float, max_crops: int
) -> list[tuple[int, int, int, int]]:
    """``(y0, y1, x0, x1)`` windows of ``1/zoom`` of the map's height and width, one around
    each part component of ``labels`` smaller than ``max_frac`` of the map (and at least
    ``min_px``), the smallest first, kept inside the map; a component whose centre already lies
    in the middle half of a window gets none of its own."""

    h, w = labels.shape
    wh, ww = max(1, round(h / zoom)), max(1, round(w / zoom))
    comps = [
        (area, cy, cx)
        for _, _, area, cy, cx in components(labels)
        if min_px <= area < max_frac * h * w
    ]
    windows: list[tuple[int, int, int, int]] = []
    for _, cy, cx in sorted(comps):
        if len(windows) >= max_crops:
            break
        if any(
            abs(cy - (y0 + y1) / 2) <= wh / 4 and abs(cx - (x0 + x1) / 2) <= ww / 4
            for y0, y1, x0, x1 in windows
        ):
            continue
        y0 = int(np.clip(round(cy - wh / 2), 0, h - wh))
        x0 = int(np.clip(round(cx - ww / 2), 0, w - ww))
        windows.append((y0, y0 + wh, x0, x0 + ww))
    return windows


def guided_filter(guide: np.ndarray, probs: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """``probs`` ``(C, H, W)`` filtered by the grey ``guide`` ``(H, W)`` in [0, 1] (He et al.'s
    guided filter, one box filter per moment), clipped and renormalised to sum to 1. Only the
    classes that win somewhere are filtered: the others stay as they were, which keeps the
    cost near that of the few parts on the photo rather than all 62 channels."""
    import cv2

    def box(a: np.ndarray) -> np.ndarray:
        out = cv2.boxFilter(a, -1, (2 * radius + 1, 2 * radius + 1), borderType=cv2.BORDER_REFLECT)
        return out.reshape(a.shape)

    guide = guide.astype(np.float32)
    mean_i = box(guide)[..., None]
    var_i = box(guide * guide)[..., None] - mean_i * mean_i
    out = probs.astype(np.float32, copy=True)
    present = np.unique(probs.argmax(0))
    # OpenCV filters at most 512 channels at once; groups of 16 also stay in cache
    for g0 in range(0, len(present), 16):
        idx = present[g0 : g0 + 16]
        p = np.ascontiguousarray(probs[idx].transpose(1, 2, 0), dtype=np.float32)
        mean_p = box(p)
        a = (box(p * guide[..., None]) - mean_i * mean_p) / (var_i + eps)
        b = mean_p - a * mean_i
        out[idx] = (box(a) * guide[..., None] + box(b)).transpose(2, 0, 1)
    np.clip(out, 0.0, None, out=out)
    return out / np.maximum(out.sum(0, keepdims=True), 1e-12)


def dice_loss(logits: Any, target: Any) -> Any:
    """1 - mean soft Dice over the classes present in the batch's targets."""
    import torch

    p = logits.float().softmax(1)
    present = torch.unique(target)
    onehot = (target.unsqueeze(1) == present.view(1, -1, 1, 1)).float()
    p = p[:, present]
    inter = (p * onehot).sum((0, 2, 3))
    denom = p.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return 1 - ((2 * inter + 1) / (denom + 1)).mean()


# -- the network -----------------------------------------------------------------------------


def build_net(cfg: PartSegConfig, n_classes: int) -> Any:
    """LRASPP-MobileNetV3-Large with ``n_classes`` outputs; the backbone from
    ``cfg.backbone_weights`` when set."""
    from torchvision.models.segmentation import lraspp_mobilenet_v3_large

    net = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=n_classes)
    if cfg.backbone_weights:
        p = Path(cfg.backbone_weights)
        if not p.is_file():
            raise CheckpointError(
                f"MobileNetV3 weights {p} do not exist; put them in the weights folder or leave "
                f"backbone_weights unset to train from scratch"
            )
        from models.weights import load_state_dict

        sd = load_state_dict(p, "mobilenet_v3_large", purpose="part_seg's backbone starts from it")
        # LRASPP's backbone is MobileNetV3's ``features``, its layers renumbered from 0
        own = net.backbone.state_dict()
        take = {k[len("features.") :]: v for k, v in sd.items() if k.startswith("features.")}
        take = {k: v for k, v in take.items() if k in own and own[k].shape == v.shape}
        if len(take) < len(own) // 2:
            raise CheckpointError(
                f"MobileNetV3 weights {p} fit only {len(take)} of the backbone's {len(own)} "
                "tensors; use a torchvision mobilenet_v3_large state dict"
            )
        net.backbone.load_state_dict(take, strict=False)
    return net


@register_stage("part_seg")
class PartSegStage(TorchStage):
    config_class = PartSegConfig
    title = "LRASPP-MobileNetV3 part segmenter"
    architecture = "LRASPP-MobileNetV3-Large (background + part classes)"
    start_weight_fields = ("backbone_weights",)
    start_weight_kind = "mobilenet_v3_large"
    eval_groups = ("part",)

    def __init__(self, config: PartSegConfig | None = None, taxonomy: Taxonomy | None = None):
        import torch

        self.config = config or PartSegConfig.from_preset("tiny")
        self.taxonomy = taxonomy or default_taxonomy()
        torch.manual_seed(self.config.seed)
        self.n_classes = 1 + len(self.taxonomy.group("part"))
        self.net = build_net(self.config, self.n_classes).eval()
        self.device, self.amp = resolve_device(self.config.device)
        self.net.to(self.device)
        self.lut = mirror_lut(self.taxonomy)

    @classmethod
    def checkpoint_counts(cls, taxonomy: Taxonomy | None) -> dict[str, int]:
        return {"part": len((taxonomy or default_taxonomy()).group("part"))}

    # -- inference ---------------------------------------------------------------------------
    def _tensor(self, images: list[np.ndarray]) -> Any:
        import cv2
        import torch

        s = self.config.size
        x = np.stack([cv2.resize(im, (s, s), interpolation=cv2.INTER_AREA) for im in images])
        x = (x.astype(np.float32) - MEAN) / STD
        return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(self.device)

    def _forward(self, x: Any) -> tuple[Any, Any]:
        """``(B, 1+P, S, S)`` logits and ``(B, 960, h, w)`` backbone features."""
        import torch.nn.functional as F

        feats = self.net.backbone(x)
        logits = self.net.classifier(feats)
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits, feats["high"]

    def probabilities(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(B, 1+P, S, S)`` float32 softmax and ``(B, 960, h, w)`` float32 features at the
        working size, averaged with the mirrored photo under ``flip_tta``."""
        import torch

        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.amp):
            x = self._tensor(images)
            logits, feats = self._forward(x)
            probs = logits.float().softmax(1)
            if self.config.flip_tta:
                lf, _ = self._forward(x.flip(-1))
                mirrored = lf.float().softmax(1).flip(-1)[:, torch.from_numpy(self.lut)]
                probs = (probs + mirrored) / 2
        return probs.cpu().numpy(), feats.float().cpu().numpy()

    def _instances(
        self, image: np.ndarray, probs: np.ndarray, feats: np.ndarray
    ) -> tuple[ImageResult, np.ndarray]:
        """One photo's result and its arg-max map at the traced size."""
        import torch
        import torch.nn.functional as F

        h, w = image.shape[:2]
        th, tw = traced_size(h, w)
        p = F.interpolate(
            torch.from_numpy(probs)[None], size=(th, tw), mode="bilinear", align_corners=False
        )[0].numpy()
        if self.config.small_part_zoom > 1:
            p = self._refine_small_parts(image, p)
        if self.config.refine_radius > 0:
            import cv2

            grey = cv2.cvtColor(
                cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY
            )
            p = guided_filter(grey / 255.0, p, self.config.refine_radius, self.config.refine_eps)
        labels = p.argmax(0)
        inst, conflicts = label_map_instances(
            labels,
            p,
            self.taxonomy,
            min_area_frac=self.config.min_area_frac,
            tolerance=self.config.tolerance,
            features=feats,
        )
        if (th, tw) != (h, w) and len(inst):
            inst = Instances(
                shapes=[s.scaled(w / tw, h / th) for s in inst.shapes],
                class_ids=inst.class_ids,
                scores=inst.scores,
                probs=inst.probs,
                embeddings=inst.embeddings,
                data=inst.data,
            )
        keep = np.nonzero(inst.scores >= self.config.score_threshold)[0]
        if len(keep) < len(inst):
            inst = inst[keep]
        meta = {"stage": self.name, "side_conflicts": conflicts}
        return ImageResult(inst, feats.mean((1, 2)).astype(np.float32), meta=meta), labels

    def _refine_small_parts(self, image: np.ndarray, p: np.ndarray) -> np.ndarray:
        """``p`` (traced size) with a zoomed second look averaged in around small parts
        (``small_part_zoom``): all the crops of a photo go through the network as one batch."""
        import torch
        import torch.nn.functional as F

        cfg = self.config
        th, tw = p.shape[1:]
        windows = small_part_windows(
            p.argmax(0),
            cfg.small_part_zoom,
            max_frac=cfg.small_part_max_frac,
            min_px=max(1.0, cfg.min_area_frac * th * tw),
            max_crops=cfg.small_part_max_crops,
        )
        if not windows:
            return p
        h, w = image.shape[:2]
        sy, sx = h / th, w / tw
        crops = [
            image[
                round(y0 * sy) : max(round(y1 * sy), round(y0 * sy) + 1),
                round(x0 * sx) : max(round(x1 * sx), round(x0 * sx) + 1),
            ]
            for y0, y1, x0, x1 in windows
        ]
        crop_probs, _ = self.probabilities(crops)
        total = p.copy()
        count = np.ones((th, tw), np.float32)
        for (y0, y1, x0, x1), cp in zip(windows, crop_probs, strict=True):
            up = F.interpolate(
                torch.from_numpy(cp)[None],
                size=(y1 - y0, x1 - x0),
                mode="bilinear",
                align_corners=False,
            )[0].numpy()
            total[:, y0:y1, x0:x1] += up
            count[y0:y1, x0:x1] += 1
        return total / count

    def predict(self, images: list[np.ndarray]) -> list[ImageResult]:
        check_images(images)
        out = []
        for i in range(0, len(images), 8):
            chunk = images[i : i + 8]
            probs, feats = self.probabilities(chunk)
            out += [
                self._instances(im, p, f)[0] for im, p, f in zip(chunk, probs, feats, strict=True)
            ]
        return out

    def evaluate(self, data: TrainingSet, progress: Progress | None = None) -> dict[str, Any]:
        """``{"part": {...classification figures, "coco": {AP, AP50}, "miou",
        "per_class_iou"}}`` on ``data``. mIoU is semantic: per part class, intersection over
        union of the arg-max map and the labels (traced size), summed over the photos, then
        averaged over the classes either side shows."""
        from models.metrics import SemanticIoU, classification_metrics, coco_mask_ap

        iou = SemanticIoU(self.taxonomy)
        pairs = []
        for i, rec in enumerate(data.records):
            img = data.load_image(i)
            probs, feats = self.probabilities([img])
            res, pred = self._instances(img, probs[0], feats[0])
            th, tw = pred.shape
            h, w = img.shape[:2]
            iou.add(label_map(rec.instances, self.taxonomy, th, tw, tw / w, th / h), pred)
            pairs.append((res.instances, rec.instances, h, w))
            if progress:
                progress(i + 1, len(data), {"image": rec.file_name})
        figures: dict[str, Any] = classification_metrics(pairs, data.taxonomy, "part")
        figures["coco"] = coco_mask_ap(pairs, data.taxonomy, "part")
        figures["miou"] = iou.mean()
        figures["per_class_iou"] = iou.per_class()
        return {"part": figures}

    # -- training ----------------------------------------------------------------------------
    def training_arrays(self, dataset: TrainingSet) -> tuple[np.ndarray, np.ndarray]:
        """``(N, S, S, 3)`` uint8 photos and ``(N, S, S)`` int64 label maps of the records with
        part polygons, resized once (augmentation works on these)."""
        import cv2

        s = self.config.size
        xs, ys = [], []
        for i, rec in enumerate(dataset.records):
            img = dataset.load_image(i)
            h, w = img.shape[:2]
            lab = label_map(rec.instances, dataset.taxonomy, s, s, s / w, s / h)
            if not lab.any():
                continue
            xs.append(cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA))
            ys.append(lab)
        if not xs:
            raise ValueError(
                "the training set has no part polygons: label parts before training part_seg"
            )
        return np.stack(xs), np.stack(ys)

    def augment(
        self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Jitter, scale, shift and a sided flip of one ``(S, S)`` sample."""
        import cv2

        cfg = self.config
        s = image.shape[0]
        if rng.random() < cfg.flip_p:
            image, labels = flip_sample(image, labels, self.lut)
        sc = rng.uniform(cfg.scale_min, cfg.scale_max)
        tx, ty = rng.uniform(-cfg.shift, cfg.shift, 2) * s
        c = s / 2
        m = np.array([[sc, 0, c - sc * c + tx], [0, sc, c - sc * c + ty]], np.float32)
        grey = tuple(float(v) for v in MEAN)
        image = cv2.warpAffine(image, m, (s, s), flags=cv2.INTER_LINEAR, borderValue=grey)
        labels = cv2.warpAffine(
            labels.astype(np.uint8), m, (s, s), flags=cv2.INTER_NEAREST, borderValue=0
        ).astype(np.int64)
        contrast = 1 + rng.uniform(-cfg.jitter, cfg.jitter)
        bright = rng.uniform(-cfg.jitter, cfg.jitter) * 255
        image = np.clip((image.astype(np.float32) - 128) * contrast + 128 + bright, 0, 255)
        return image.astype(np.uint8), labels

    def recalibrate_batch_norm(self, xs: np.ndarray, batch_size: int) -> None:
        """Re-measure every BatchNorm's running mean and variance on the training photos as
        they are (no augmentation), with the final weights.

        MobileNetV3's BatchNorms keep a running average with momentum 0.01, which trails the
        weights by hundreds of steps: after a 5-minute run from scratch the evaluation-mode
        network predicted background almost everywhere (held-out mIoU 0.03, against 0.87-0.95
        pixel accuracy on the same photos with the batch's own statistics). One pass without
        gradients costs a few seconds."""
        import torch

        norms = [
            m for m in self.net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
        ]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the pass
        self.net.train()
        try:
            with torch.no_grad():
                for b in range(0, len(xs), batch_size):
                    chunk = xs[b : b + batch_size]
                    if len(chunk) < 2 and b:  # one photo's statistics are not a batch's
                        break
                    x = (chunk.astype(np.float32) - MEAN) / STD
                    self._forward(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(self.device))
        finally:
            for m, momentum in zip(norms, momenta, strict=True):
                m.momentum = momentum
            self.net.eval()

    def fit(
        self, dataset: TrainingSet, cfg: PartSegConfig, progress: Progress | None, out_path: OutPath
    ) -> TrainResult:
        import torch
        import torch.nn.functional as F

        t0 = time.perf_counter()
        xs, ys = self.training_arrays(dataset)
        prep_s = time.perf_counter() - t0
        net = self.net
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        rng = np.random.default_rng(cfg.seed)
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        per_epoch = math.ceil(len(xs) / cfg.batch_size)
        budget = cfg.time_budget_s
        step, losses, epoch_losses = 0, [], []
        t_train = time.perf_counter()

        def done_share() -> float:
            by_steps = step / (cfg.epochs * per_epoch)
            if budget is None:
                return by_steps
            return max(by_steps, (time.perf_counter() - t_train) / budget)

        net.train()
        for epoch in range(cfg.epochs):
            order = rng.permutation(len(xs))
            ep = []
            for b in range(0, len(xs), cfg.batch_size):
                idx = order[b : b + cfg.batch_size]
                if len(idx) < 2 and len(xs) >= 2:  # BatchNorm needs two samples
                    idx = np.concatenate([idx, order[:1]])
                pairs = [self.augment(xs[i], ys[i], rng) for i in idx]
                xb = torch.from_numpy(np.stack([p[0] for p in pairs]).transpose(0, 3, 1, 2).copy())
                xb = ((xb.float() - mean) / std).to(self.device)
                yb = torch.from_numpy(np.stack([p[1] for p in pairs])).to(self.device)
                share = done_share()
                warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
                lr = cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, share)))
                for g in opt.param_groups:
                    g["lr"] = lr
                with torch.autocast(self.device.type, enabled=self.amp):
                    logits, _ = self._forward(xb)
                loss = F.cross_entropy(logits.float(), yb) + cfg.dice_weight * dice_loss(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                losses.append(float(loss.detach()))
                ep.append(losses[-1])
                if budget is not None and time.perf_counter() - t_train >= budget:
                    break
            epoch_losses.append(float(np.mean(ep)))
            share = done_share()
            if progress:
                total = (
                    cfg.epochs
                    if budget is None
                    else max(epoch + 1, round((epoch + 1) / max(share, 1e-9)))
                )
                progress(
                    epoch + 1,
                    min(total, cfg.epochs),
                    {
                        "epoch": epoch + 1,
                        "loss": epoch_losses[-1],
                        "elapsed_s": time.perf_counter() - t_train,
                    },
                )
            if share >= 1.0:
                break
        t_bn = time.perf_counter()
        self.recalibrate_batch_norm(xs, cfg.batch_size)
        net.eval()
        k = max(1, min(5, len(losses) // 4))
        metrics = {
            "epoch_losses": epoch_losses,
            "first_loss": float(np.mean(losses[:k])),
            "last_loss": float(np.mean(losses[-k:])),
            "steps": step,
            "epochs_run": len(epoch_losses),
            "train_photos": len(xs),
            "prepare_seconds": round(prep_s, 2),
            "batch_norm_seconds": round(time.perf_counter() - t_bn, 2),
            "train_seconds": round(time.perf_counter() - t0, 2),
        }
        path = Path(out_path) if out_path else Path(f"{self.name}.pt")
        self.save(path)
        return TrainResult(path, metrics)
