"""ResNet34 "is this part damaged?" classifier, after the YOLOv12 + ResNet34 POC.

A crop is the part's box cut out of the photo with everything outside the part's polygon
greyed out, resized to 224x224. It is labelled damaged when the damage polygons cover at
least ``damaged_share`` of the part's area. Head: Dropout 0.4 + Linear(2); layer1/2 frozen;
AdamW groups layer3 1e-4, layer4 2e-4, head 5e-4 (weight decay 1e-4); cosine T_max 30;
cross-entropy with label smoothing 0.1; the POC's augmentations.
``probs["damaged"]`` is ``(N, 2)`` softmax = [undamaged, damaged]. ``embeddings`` are
``(N, 512)`` float32: ResNet34's average-pooled features of each crop (what the head sees,
before dropout and the linear layer), taken from the same forward as the probabilities.
``image_embedding`` is ``(512,)`` float32, the mean of the classified parts' embeddings
(None when no part was classified). On the CPU the ResNet runs as an int8 or a
BatchNorm-folded copy (``models/int8.py``).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np

from core.geometry import Shape
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
from models.int8 import (
    fold_batchnorm,
    int8_calibration,
    int8_supported,
    quantize_int8,
    resnet_features,
)
from models.registry import register_stage
from models.torch_stage import TorchStage

log = logging.getLogger(__name__)

#: crops whose activation ranges calibrate the int8 copy
CALIBRATION_CROPS = 64
#: ResNet34's pooled feature width: the size of an embedding
EMBED_DIM = 512
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
#: what a crop shows outside its part: the ImageNet mean, "nothing here" once normalised
OUTSIDE_GREY = (124, 116, 104)


@dataclass
class PartClassifierConfig(StageConfig):
    crop_size: int = 224
    damaged_share: float = 0.02
    #: local torchvision resnet34 weights (e.g. ImageNet) to start from; None = random
    backbone_weights: str | None = None
    lr_layer3: float = 1e-4
    lr_layer4: float = 2e-4
    lr_head: float = 5e-4
    weight_decay: float = 1e-4
    t_max: int = 30
    label_smoothing: float = 0.1
    batch_size: int = 8
    epochs: int = 1
    #: parts whose box is smaller than this (pixels^2) are not classified: [0.5, 0.5]
    min_part_area: float = 0.0
    #: CPU inference in int8 (x86 static quantization, eager mode): ~4x faster than fp32 for
    #: ResNet34 on this 2-core CPU, which is what lets the pipeline keep pace with bare YOLO.
    #: Needs activation ranges from training crops, which training stores in the model file
    #: (or :meth:`PartClassifierStage.calibrate_int8`); without them, or on a CPU without
    #: PyTorch's x86 quantized engine, inference is fp32 (BatchNorm folded), as with False.
    #: Ignored on a GPU, which runs the eager net (with AMP under ``device: auto``).
    int8: bool = True

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"crop_size": 64},
        "small": {"crop_size": 160, "epochs": 10, "batch_size": 16},
        "base": {"crop_size": 224, "epochs": 30, "batch_size": 32},
    }


class PartFeatures(NamedTuple):
    """What the classifier says about one image's N parts."""

    probs: np.ndarray  #: (N, 2) float32 softmax [undamaged, damaged]; [0.5, 0.5] if skipped
    embeddings: np.ndarray  #: (N, 512) float32 pooled ResNet34 features; zeros if skipped
    classified: np.ndarray  #: (N,) bool, False for parts skipped for their size

    def image_embedding(self) -> np.ndarray | None:
        """``(512,)`` float32 mean of the classified parts' embeddings; None without any
        (a zero vector would pose as a real image in diversity sampling)."""
        if not self.classified.any():
            return None
        return self.embeddings[self.classified].mean(0).astype(np.float32)


def part_crop(image: np.ndarray, shape: Shape, size: int) -> np.ndarray:
    """``(size, size, 3)`` uint8: the part's box resized to ``size``, pixels outside its
    polygon set to grey. The polygon is rasterised at the crop's size, after the resize:
    parts are often 500+ px wide, and masking them at full size cost twice the time."""
    import cv2

    h, w = image.shape[:2]
    x0, y0, x1, y1 = shape.bbox
    x0, y0 = int(max(0, np.floor(x0))), int(max(0, np.floor(y0)))
    x1, y1 = int(min(w, np.ceil(x1))), int(min(h, np.ceil(y1)))
    if x1 - x0 < 1 or y1 - y0 < 1:
        return np.full((size, size, 3), OUTSIDE_GREY, np.uint8)
    crop = cv2.resize(image[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)
    in_crop = shape.translated(-x0, -y0).scaled(size / (x1 - x0), size / (y1 - y0))
    crop[~in_crop.to_mask(size, size)] = OUTSIDE_GREY
    return crop


def _body_forward(net, x):
    """ResNet34 up to its average pool: ``(B, 512)``, what ``net.fc`` receives."""
    return net.avgpool(resnet_features(net, x)).flatten(1)


def damaged_labels(
    instances: Instances, taxonomy: Taxonomy, height: int, width: int, share: float
) -> list[tuple[int, int]]:
    """(instance index, 1 damaged / 0 not) for every part instance of an image."""
    groups = [taxonomy.by_id(int(c)).group for c in instances.class_ids]
    dmg = np.zeros((height, width), bool)
    for s, g in zip(instances.shapes, groups, strict=True):
        if g == "damage":
            dmg |= s.to_mask(height, width)
    out = []
    for i, (s, g) in enumerate(zip(instances.shapes, groups, strict=True)):
        if g == "part":
            m = s.to_mask(height, width)
            area = m.sum()
            if area:
                out.append((i, int((m & dmg).sum() / area >= share)))
    return out


def _build_net(cfg: PartClassifierConfig):
    from torch import nn
    from torchvision.models import resnet34

    net = resnet34(weights=None)
    if cfg.backbone_weights:
        p = Path(cfg.backbone_weights)
        if not p.is_file():
            raise CheckpointError(
                f"ResNet34 weights {p} do not exist; download them yourself or leave "
                f"backbone_weights unset to train from scratch"
            )
        from models.weights import load_state_dict

        sd = load_state_dict(p, "resnet34", purpose="the part classifier's backbone starts from it")
        net.load_state_dict({k: v for k, v in sd.items() if not k.startswith("fc.")}, strict=False)
    net.fc = nn.Sequential(nn.Dropout(0.4), nn.Linear(net.fc.in_features, 2))
    for layer in (net.conv1, net.bn1, net.layer1, net.layer2):
        for p in layer.parameters():
            p.requires_grad = False
    return net


@register_stage("part_classifier")
class PartClassifierStage(TorchStage):
    config_class = PartClassifierConfig
    title = "ResNet34 damaged part"
    primary_metrics = ("holdout.accuracy", "holdout.macro_f1", "holdout.f1")
    embedding_rank = 3
    architecture = "ResNet34 + 2-class head"
    start_weight_fields = ("backbone_weights",)
    start_weight_kind = "resnet34"

    def __init__(
        self, config: PartClassifierConfig | None = None, taxonomy: Taxonomy | None = None
    ):
        import torch

        self.config = config or PartClassifierConfig.from_preset()
        self.taxonomy = taxonomy or default_taxonomy()
        torch.manual_seed(self.config.seed)
        self.net = _build_net(self.config).eval()
        self.device, self.amp = resolve_device(self.config.device)
        self.net.to(self.device)
        self._fast = None  # inference copy of self.net (CPU), built lazily
        # the pipeline classifies from two threads: one of them builds the copy
        self._fast_lock = threading.Lock()
        #: activation ranges for the int8 copy (see int8_calibration): set by train, load
        #: and calibrate_int8; saved with the weights
        self.int8_calibration: dict[str, Any] | None = None

    def calibrate_int8(self, crops: list[np.ndarray]) -> None:
        """Take the int8 activation ranges from these ``(S, S, 3)`` uint8 crops (training
        does this with up to :data:`CALIBRATION_CROPS` of its own)."""
        if int8_supported():
            self.int8_calibration = int8_calibration(
                self.net, self._batch(crops[:CALIBRATION_CROPS], "cpu")
            )
            self._fast = None

    @property
    def runs_int8(self) -> bool:
        """Whether CPU inference runs in int8 (asked for, calibrated and supported)."""
        return (
            self.device.type == "cpu"
            and self.config.int8
            and self.int8_calibration is not None
            and int8_supported()
        )

    def _inference_net(self):
        """The net as ``Sequential(body, head)``: ``body`` maps ``(B, 3, S, S)`` crops to the
        ``(B, 512)`` pooled features, ``head`` (dropout + linear) maps those to the 2 logits,
        so one forward yields both. On the CPU ``body`` is int8 when :attr:`runs_int8`,
        otherwise a channels-last copy with BatchNorm folded into the convolutions (same
        outputs up to float rounding); the 512x2 head stays float. Rebuilt after training,
        loading or calibrating (they reset ``_fast``). Elsewhere None: the eager net, through
        :func:`_body_forward` and ``fc``.

        Measured on this 2-core CPU at one thread, 8 crops of 224 px: eager ~630 ms, folded
        channels-last ~580 ms, int8 ~150 ms. ResNet34 is compute-bound here."""
        if self.device.type != "cpu":
            return None  # eager: _body_forward and self.net.fc
        with self._fast_lock:
            if self._fast is None:
                self._fast = self._build_inference_net()
        return self._fast

    def _build_inference_net(self):
        import torch
        from torch import nn

        if self.runs_int8:
            body = quantize_int8(self.net, self.int8_calibration)
        else:
            if self.config.int8:
                log.info(
                    "part_classifier runs in fp32: %s",
                    "this PyTorch has no x86 quantized engine"
                    if not int8_supported()
                    else "no int8 calibration in the model file (retrain it to get one)",
                )
            body = fold_batchnorm(self.net)
            body.fc = nn.Identity()
            body = body.to(memory_format=torch.channels_last)
        return nn.Sequential(body, copy.deepcopy(self.net.fc).eval())

    def _batch(self, crops: list[np.ndarray], device=None):
        import torch

        x = (np.stack(crops).astype(np.float32) / 255.0 - MEAN) / STD
        return torch.from_numpy(x.transpose(0, 3, 1, 2)).to(device or self.device)

    def classify_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """``(N, 2)`` softmax [undamaged, damaged] of ``(S, S, 3)`` uint8 crops."""
        return self.classify_crops_with_embeddings(crops)[0]

    def classify_crops_with_embeddings(
        self, crops: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(N, 2)`` float32 softmax [undamaged, damaged] and ``(N, 512)`` float32 pooled
        features of ``(S, S, 3)`` uint8 crops, both from one forward."""
        import torch

        if not crops:
            return np.zeros((0, 2), np.float32), np.zeros((0, EMBED_DIM), np.float32)
        net = self._inference_net()
        if net is None:
            body, head = (lambda x: _body_forward(self.net, x)), self.net.fc
        else:
            body, head = net[0], net[1]
        probs, feats = [], []
        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.amp):
            for i in range(0, len(crops), 32):
                x = self._batch(crops[i : i + 32])
                if net is not None:  # the CPU copies: channels-last (int8 gives the same)
                    x = x.contiguous(memory_format=torch.channels_last)
                f = body(x)
                probs.append(head(f).float().softmax(-1).cpu().numpy())
                feats.append(f.float().cpu().numpy())
        return np.concatenate(probs), np.concatenate(feats)

    def classify_parts(self, image: np.ndarray, instances: Instances) -> np.ndarray:
        return self.classify_many([(image, instances)])[0]

    def classify_many(self, items: list[tuple[np.ndarray, Instances]]) -> list[np.ndarray]:
        """``(N_i, 2)`` softmax per (image, parts) pair, all crops in one batched forward.

        Parts whose box covers fewer than ``min_part_area`` pixels get no forward and the
        uninformative [0.5, 0.5] (a crop that small upscaled to 224 px carries no evidence)."""
        return [pf.probs for pf in self.classify_many_with_embeddings(items)]

    def classify_many_with_embeddings(
        self, items: list[tuple[np.ndarray, Instances]]
    ) -> list[PartFeatures]:
        """Per (image, parts) pair: the softmax of :meth:`classify_many`, ``(N_i, 512)``
        float32 embeddings and which parts were classified, all crops in one batched forward.
        A part skipped for its size (``min_part_area``) has a zero embedding row and
        ``classified`` False: it was not looked at."""
        size, crops, where = self.config.crop_size, [], []
        out = [
            PartFeatures(
                np.full((len(inst), 2), 0.5, np.float32),
                np.zeros((len(inst), EMBED_DIM), np.float32),
                np.zeros(len(inst), bool),
            )
            for _, inst in items
        ]
        for k, (im, inst) in enumerate(items):
            for j, s in enumerate(inst.shapes):
                x0, y0, x1, y1 = s.bbox
                if (x1 - x0) * (y1 - y0) >= self.config.min_part_area:
                    crops.append(part_crop(im, s, size))
                    where.append((k, j))
        if crops:
            p, f = self.classify_crops_with_embeddings(crops)
            for (k, j), prow, frow in zip(where, p, f, strict=True):
                out[k].probs[j], out[k].embeddings[j], out[k].classified[j] = prow, frow, True
        return out

    def predict(self, images: list[np.ndarray]) -> list[ImageResult]:
        """Without part polygons to classify, the whole photo is one region."""
        check_images(images)
        res = []
        for im in images:
            h, w = im.shape[:2]
            inst = Instances(shapes=[Shape.from_box(0, 0, w, h)], class_ids=np.zeros(1, np.int64))
            pf = self.classify_many_with_embeddings([(im, inst)])[0]
            inst.scores = pf.probs[:, 1].astype(np.float32)
            inst.probs["damaged"] = pf.probs
            inst.embeddings = pf.embeddings
            res.append(ImageResult(inst, pf.image_embedding(), meta={"stage": self.name}))
        return res

    def training_crops(self, dataset: TrainingSet) -> tuple[list[np.ndarray], np.ndarray]:
        crops, labels = [], []
        for i, rec in enumerate(dataset.records):
            img = dataset.load_image(i)
            for k, lab in damaged_labels(
                rec.instances,
                dataset.taxonomy,
                img.shape[0],
                img.shape[1],
                self.config.damaged_share,
            ):
                crops.append(part_crop(img, rec.instances.shapes[k], self.config.crop_size))
                labels.append(lab)
        if not crops:
            raise ValueError(
                "the training set has no part polygons: label parts before training part_classifier"
            )
        return crops, np.asarray(labels, np.int64)

    def fit(
        self,
        dataset: TrainingSet,
        cfg: PartClassifierConfig,
        progress: Progress | None,
        out_path: OutPath,
    ) -> TrainResult:
        import torch
        from torchvision.transforms import v2 as T

        t0 = time.perf_counter()
        crops, labels = self.training_crops(dataset)
        aug = T.Compose(
            [T.RandomHorizontalFlip(), T.ColorJitter(0.3, 0.3, 0.3), T.RandomRotation(10)]
        )
        net = self.net
        opt = torch.optim.AdamW(
            [
                {"params": net.layer3.parameters(), "lr": cfg.lr_layer3},
                {"params": net.layer4.parameters(), "lr": cfg.lr_layer4},
                {"params": net.fc.parameters(), "lr": cfg.lr_head},
            ],
            weight_decay=cfg.weight_decay,
        )
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.t_max)
        lossf = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        rng = np.random.default_rng(cfg.seed)
        x_all = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy())
        y_all = torch.from_numpy(labels)
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        history = []
        for epoch in range(cfg.epochs):
            net.train()
            for m in (net.bn1, net.layer1, net.layer2):
                m.eval()  # frozen layers keep their statistics too
            ep = []
            order = torch.from_numpy(rng.permutation(len(x_all)))
            for s in range(0, len(x_all), cfg.batch_size):
                idx = order[s : s + cfg.batch_size]
                xb = torch.stack([aug(x_all[i]) for i in idx]).float() / 255.0
                xb = ((xb - mean) / std).to(self.device)
                with torch.autocast(self.device.type, enabled=self.amp):
                    loss = lossf(net(xb).float(), y_all[idx].to(self.device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                ep.append(float(loss.detach()))
            sched.step()
            end_epoch(history, ep, epoch, cfg.epochs, progress)
        net.eval()
        self._fast = None  # the weights changed: rebuild the inference copy
        # activation ranges for int8 CPU inference, from training crops (not augmented); also
        # after GPU training, so the file pre-annotates on a CPU machine as well
        pick = rng.choice(len(crops), min(len(crops), CALIBRATION_CROPS), replace=False)
        self.int8_calibration = None
        self.calibrate_int8([crops[i] for i in pick])
        probs = self.classify_crops(crops)
        acc = float((probs.argmax(1) == labels).mean())
        metrics = {
            "epoch_losses": history,
            "train_crops": len(crops),
            "damaged_share_of_crops": float(labels.mean()),
            "train_accuracy": acc,
            "train_seconds": time.perf_counter() - t0,
        }
        path = Path(out_path) if out_path else Path(f"{self.name}.pt")
        self.save(path)
        return TrainResult(path, metrics)

    # -- files (TorchStage's save/load) ------------------------------------------------
    @classmethod
    def checkpoint_counts(cls, taxonomy: Taxonomy | None) -> dict[str, int]:
        return {"damaged": 2}  # the head is [undamaged, damaged] whatever the taxonomy

    def checkpoint_extra(self) -> dict[str, Any]:
        return {"int8_calibration": self.int8_calibration}

    def restore_extra(self, extra: dict[str, Any]) -> None:
        self._fast = None
        self.int8_calibration = extra.get("int8_calibration")

    @classmethod
    def loaded_config(
        cls, saved: dict[str, Any], device: str, cpu_int8: bool | None = None, **options: Any
    ) -> PartClassifierConfig:
        """``load(..., cpu_int8=...)`` (None: as trained) chooses int8 or fp32 CPU inference
        (int8 needs the calibration that training stores; files without one run fp32)."""
        cfg = super().loaded_config(saved, device)
        if cpu_int8 is not None:
            cfg.int8 = cpu_int8
        return cfg
