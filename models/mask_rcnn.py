"""Mask R-CNN baseline on damage polygons (torchvision ``maskrcnn_resnet50_fpn``), weights
from a local path or none. One more voter for active learning and a yardstick for ALBERT.

``probs["damage"]`` is ``(N, n_damage + 1)`` float32, laid out like ALBERT's (columns
follow ``taxonomy.head_index``, last = no-object): the box head's full softmax over the
proposal each detection came from (torchvision's background column 0 moved last), so the
detection's score is the entry in its class's column. ``embeddings`` are ``(N, 1024)``
float32, the box head's representation (TwoMLPHead ``fc7``) of that proposal.
``image_embedding`` is ``(1024,)`` float32: the FPN levels P2-P5 average-pooled over the
image (padding excluded) and concatenated. torchvision's post-processing drops all of this,
so :func:`_track_detections` swaps in a RoIHeads subclass that follows each detection's
proposal through the very same steps; boxes, labels, scores and masks are unchanged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.geometry import mask_to_shape
from core.instances import ImageResult, Instances
from core.taxonomy import Taxonomy, default_taxonomy
from models.base import (
    CheckpointError,
    OutPath,
    StageConfig,
    TrainResult,
    end_epoch,
    resolve_device,
)
from models.data import Progress, TrainingSet, check_images
from models.registry import register_stage
from models.torch_stage import TorchStage

log = logging.getLogger(__name__)

#: the tensors whose shape follows the class count: re-made when the start weights (COCO's
#: 91 classes) have another one
CLASS_HEADS = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")


def _load_start_weights(net, path: str | Path) -> str:
    """Load a torchvision Mask R-CNN state dict into ``net``, all but what does not fit.

    The backbone, FPN, RPN and box/mask heads load as they are; the class-dependent
    predictors (:data:`CLASS_HEADS`) stay freshly initialised when the file has another
    class count. Returns a sentence saying what was re-made. Raises CheckpointError naming
    the file when it is missing, damaged, or not a Mask R-CNN.
    """
    from models.weights import load_state_dict

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(
            f"Mask R-CNN weights {p} do not exist; download them yourself or leave weights unset"
        )
    sd = load_state_dict(p, "mask_rcnn", purpose="Mask R-CNN starts from it")
    own = net.state_dict()
    fits = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    remade = sorted(k for k in own if k not in fits and k.startswith(CLASS_HEADS))
    # a checkpoint trained with frozen batch norm has no counters; ours start at zero
    other = sorted(
        k
        for k in own
        if k not in fits and not k.startswith(CLASS_HEADS) and not k.endswith("num_batches_tracked")
    )
    if other and len(other) * 2 > len(own):
        raise CheckpointError(
            f"Mask R-CNN weights {p} fit only {len(own) - len(other)} of the network's "
            f"{len(own)} tensors (e.g. {', '.join(other[:3])} differ); they are not "
            f"maskrcnn_resnet50_fpn weights: use that model's state dict"
        )
    net.load_state_dict(fits, strict=False)
    cls = sd.get("roi_heads.box_predictor.cls_score.weight")
    theirs = f"{cls.shape[0]} classes" if cls is not None else "another head"
    note = f"started from {p.name}: backbone, FPN, RPN and box/mask heads loaded"
    if remade:
        note += (
            f"; the class heads ({theirs} there, {own['roi_heads.box_predictor.cls_score.weight'].shape[0]}"
            f" here with background) were re-made: {', '.join(remade)}"
        )
    if other:
        note += (
            f"; {len(other)} other tensors did not fit and start at random: {', '.join(other[:5])}"
        )
    return note


@dataclass
class MaskRCNNConfig(StageConfig):
    min_size: int = 128
    max_size: int = 160
    weights: str | None = None  # a local torchvision maskrcnn_resnet50_fpn state dict
    score_threshold: float = 0.05
    max_detections: int = 20
    proposals: int = 200  # RPN proposals kept after NMS at test time
    lr: float = 0.005
    epochs: int = 1
    batch_size: int = 2

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {},
        "small": {
            "min_size": 512,
            "max_size": 683,
            "epochs": 20,
            "max_detections": 50,
            "proposals": 500,
        },
        "base": {
            "min_size": 800,
            "max_size": 1333,
            "epochs": 36,
            "batch_size": 8,
            "lr": 0.02,
            "max_detections": 100,
            "proposals": 1000,
        },
    }


@register_stage("mask_rcnn")
class MaskRCNNStage(TorchStage):
    config_class = MaskRCNNConfig
    title = "Mask R-CNN"
    primary_metrics = ("holdout.damage.coco.AP50", "holdout.damage.macro_f1")
    embedding_rank = 4
    pre_annotate_minimum = ("holdout.damage.coco.AP50", 0.2)
    architecture = "Mask R-CNN's architecture"
    start_weight_fields = ("weights",)
    start_weight_kind = "mask_rcnn"

    def __init__(self, config: MaskRCNNConfig | None = None, taxonomy: Taxonomy | None = None):
        import torch
        from torchvision.models.detection import maskrcnn_resnet50_fpn

        self.config = config or MaskRCNNConfig.from_preset()
        self.taxonomy = taxonomy or default_taxonomy()
        self.class_ids = [c.id for c in self.taxonomy.group("damage")]
        torch.manual_seed(self.config.seed)
        self.net = maskrcnn_resnet50_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=len(self.class_ids) + 1,
            min_size=self.config.min_size,
            max_size=self.config.max_size,
            box_score_thresh=self.config.score_threshold,
            box_detections_per_img=self.config.max_detections,
            rpn_post_nms_top_n_test=self.config.proposals,
            rpn_pre_nms_top_n_test=self.config.proposals,
        )
        #: how the start weights were taken (which tensors were re-made), for the metrics
        self.start_note: str | None = None
        if self.config.weights:
            self.start_note = _load_start_weights(self.net, self.config.weights)
            log.info("Mask R-CNN: %s", self.start_note)
        _track_detections(self.net.roi_heads)
        self.device, self.amp = resolve_device(self.config.device)
        self.net.to(self.device).eval()

    def predict(self, images: list[np.ndarray]) -> list[ImageResult]:
        import torch

        check_images(images)
        out = []
        for im in images:
            x = torch.from_numpy(im).permute(2, 0, 1).float().div(255).to(self.device)
            with torch.inference_mode():
                det = self.net([x])[0]
            masks = (det["masks"][:, 0] > 0.5).cpu().numpy()
            shapes, cids, scores, keep = [], [], [], []
            for i in range(len(masks)):
                s = mask_to_shape(masks[i], tolerance=1.0, min_area=4.0)
                lab = int(det["labels"][i])
                if s is None or not 1 <= lab <= len(self.class_ids):
                    continue
                shapes.append(s)
                cids.append(self.class_ids[lab - 1])
                scores.append(float(det["scores"][i]))
                keep.append(i)
            probs = det["class_probs"].float().cpu().numpy()[keep]
            # torchvision's column 0 is background; ours put no-object last (ALBERT's layout)
            probs = np.concatenate([probs[:, 1:], probs[:, :1]], axis=1)
            inst = Instances(
                shapes=shapes,
                class_ids=np.asarray(cids, np.int64),
                scores=np.asarray(scores),
                probs={"damage": probs},
                embeddings=det["box_features"].float().cpu().numpy()[keep],
            )
            out.append(
                ImageResult(
                    inst,
                    image_embedding=det["image_embedding"].float().cpu().numpy(),
                    meta={"stage": self.name},
                )
            )
        return out

    def fit(
        self,
        dataset: TrainingSet,
        cfg: MaskRCNNConfig,
        progress: Progress | None,
        out_path: OutPath,
    ) -> TrainResult:
        import torch

        t0 = time.perf_counter()
        samples = []
        for i, rec in enumerate(dataset.records):
            keep = [
                k
                for k, c in enumerate(rec.instances.class_ids)
                if self.taxonomy.by_id(int(c)).group == "damage"
            ]
            if not keep:
                continue
            inst = rec.instances[keep]
            img = dataset.load_image(i)
            h, w = img.shape[:2]
            boxes = inst.boxes.copy()
            ok = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
            if not ok.any():
                continue
            inst = inst[np.nonzero(ok)[0]]
            samples.append(
                (
                    torch.from_numpy(img).permute(2, 0, 1).float().div(255),
                    {
                        "boxes": torch.from_numpy(inst.boxes),
                        "labels": torch.tensor(
                            [self.taxonomy.head_index(int(c)) + 1 for c in inst.class_ids]
                        ),
                        "masks": torch.from_numpy(inst.masks(h, w).astype(np.uint8)),
                    },
                )
            )
        if not samples:
            raise ValueError(
                "the training set has no damage polygons: label damage before training mask_rcnn"
            )
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
        self.net.train()
        history = []
        rng = np.random.default_rng(cfg.seed)
        for epoch in range(cfg.epochs):
            ep = []
            order = rng.permutation(len(samples))
            for s in range(0, len(samples), cfg.batch_size):
                batch = [samples[j] for j in order[s : s + cfg.batch_size]]
                xs = [b[0].to(self.device) for b in batch]
                ts = [{k: v.to(self.device) for k, v in b[1].items()} for b in batch]
                losses = self.net(xs, ts)
                loss = sum(losses.values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 10.0)
                opt.step()
                ep.append(float(loss.detach()))
            end_epoch(history, ep, epoch, cfg.epochs, progress)
        self.net.eval()
        path = Path(out_path) if out_path else Path(f"{self.name}.pt")
        self.save(path)
        return TrainResult(
            path,
            {
                "epoch_losses": history,
                "train_images": len(samples),
                "train_seconds": time.perf_counter() - t0,
                **({"start_weights": self.start_note} if self.start_note else {}),
            },
        )


#: FPN levels pooled into the image embedding. "pool" is P5 subsampled by 2 (nothing new).
IMAGE_LEVELS = ("0", "1", "2", "3")
#: their strides in input pixels (ResNet-FPN: P2-P5)
LEVEL_STRIDES = (4, 8, 16, 32)


def _track_detections(roi_heads) -> None:
    """Make a torchvision ``RoIHeads`` also return, per kept detection, ``class_probs`` (the
    box head's full softmax, background first), ``box_features`` (its 1024-d representation)
    and, per image, ``image_embedding``. Swapping the class keeps the modules, parameters and
    state-dict keys as they are, so checkpoints of plain torchvision load unchanged."""
    cls = _tracking_roi_heads_class()
    if not isinstance(roi_heads, cls):
        roi_heads.__class__ = cls
        roi_heads._box_feats = None
        # the box head's output is computed inside RoIHeads.forward and not returned
        roi_heads.box_head.register_forward_hook(roi_heads._keep_box_feats)


@cache
def _tracking_roi_heads_class():
    import torch
    import torch.nn.functional as F
    from torchvision.models.detection.roi_heads import RoIHeads
    from torchvision.ops import boxes as box_ops

    class TrackingRoIHeads(RoIHeads):
        def _keep_box_feats(self, module, inputs, output) -> None:
            self._box_feats = None if self.training else output

        def forward(self, features, proposals, image_shapes, targets=None):
            result, losses = super().forward(features, proposals, image_shapes, targets)
            if self.training:
                return result, losses
            pooled = _image_embeddings(features, image_shapes)
            feats = self._box_feats.split([len(p) for p in proposals])
            for r, src, probs, f, emb in zip(
                result, self._src, self._probs, feats, pooled, strict=True
            ):
                r["class_probs"], r["box_features"], r["image_embedding"] = probs, f[src], emb
            self._box_feats = self._src = self._probs = None
            return result, losses

        def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
            """torchvision's own steps (0.2x), line for line, with ``src``: the proposal each
            surviving (proposal, class) pair came from, carried through every filter."""
            device = class_logits.device
            num_classes = class_logits.shape[-1]
            boxes_per_image = [len(p) for p in proposals]
            pred_boxes = self.box_coder.decode(box_regression, proposals)
            pred_scores = F.softmax(class_logits, -1)
            all_boxes, all_scores, all_labels = [], [], []
            self._src, self._probs = [], []
            for boxes, scores, image_shape in zip(
                pred_boxes.split(boxes_per_image, 0),
                pred_scores.split(boxes_per_image, 0),
                image_shapes,
                strict=True,
            ):
                full = scores
                boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
                labels = torch.arange(num_classes, device=device).view(1, -1).expand_as(scores)
                src = torch.arange(len(scores), device=device).view(-1, 1).expand_as(scores)
                boxes, scores, labels, src = boxes[:, 1:], scores[:, 1:], labels[:, 1:], src[:, 1:]
                boxes = boxes.reshape(-1, 4)
                scores, labels, src = scores.reshape(-1), labels.reshape(-1), src.reshape(-1)
                inds = torch.where(scores > self.score_thresh)[0]
                boxes, scores, labels, src = boxes[inds], scores[inds], labels[inds], src[inds]
                keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
                boxes, scores, labels, src = boxes[keep], scores[keep], labels[keep], src[keep]
                keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)
                keep = keep[: self.detections_per_img]
                boxes, scores, labels, src = boxes[keep], scores[keep], labels[keep], src[keep]
                all_boxes.append(boxes)
                all_scores.append(scores)
                all_labels.append(labels)
                self._src.append(src)
                self._probs.append(full[src])
            return all_boxes, all_scores, all_labels

    return TrackingRoIHeads


def _image_embeddings(features, image_shapes) -> list:
    """Per image ``(256 * len(IMAGE_LEVELS),)``: each FPN level averaged over the cells that
    hold the image (the batch is zero-padded to a common size divisible by 32; padding would
    dilute the mean by an amount that depends on the aspect ratio), levels concatenated.
    Concatenated rather than averaged so that fine (P2) and coarse (P5) evidence stay apart:
    P2-P5 span texture to whole-car layout, which is what tells photos apart for diversity
    sampling. 1024 values, the size of an instance embedding."""
    import torch

    out = []
    for b, (h, w) in enumerate(image_shapes):
        parts = []
        for name, stride in zip(IMAGE_LEVELS, LEVEL_STRIDES, strict=True):
            f = features[name][b]
            rows = min(f.shape[-2], -(-h // stride))
            cols = min(f.shape[-1], -(-w // stride))
            parts.append(f[:, :rows, :cols].float().mean((1, 2)))
        out.append(torch.cat(parts))
    return out
