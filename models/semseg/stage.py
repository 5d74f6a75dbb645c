"""The shared LRASPP semantic-segmentation stage: training, prediction and evaluation of a
network that labels every pixel background or one class of the taxonomy groups a subclass
names (``groups``: ``part_seg`` the parts, ``damage_seg`` damage and fake damage).

Training (measured for ``part_seg``: mIoU 0.45 / mask AP50 0.52 after 10 minutes on 400 dsmlr
photos on a 2-core CPU): photos squashed to ``size`` x ``size`` once; each sample the whole
photo or, with ``crop``, a window of it (``focus_p`` of them centred on a labelled pixel);
AdamW; a linear warm-up then a cosine decay driven by the elapsed share of the time budget (or
of the epochs when there is no budget), so a run always ends on a small learning rate however
fast the machine is; cross-entropy + ``dice_weight`` x soft Dice; brightness/contrast jitter,
scale, shift and horizontal flips that swap sided classes. Training ends by re-measuring the
BatchNorm statistics on the training photos (:meth:`SemanticSegStage.recalibrate_batch_norm`):
without it a short run predicts background.

A subclass with ``learns_classes`` predicts only the classes it has seen labelled (recorded
in its file): the others' probabilities are zeroed before the arg-max, so a class without
labels is never predicted.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.instances import ImageResult, Instances
from core.taxonomy import Taxonomy, default_taxonomy
from models.base import OutPath, TrainResult, resolve_device
from models.data import Progress, TrainingSet, check_images
from models.semseg.config import SemSegConfig
from models.semseg.labels import (
    SemanticClasses,
    components_instances,
    flip_sample,
    focused_crop,
    label_map,
    large_components,
    traced_size,
)
from models.semseg.net import MEAN, STD, build_net, dice_loss
from models.torch_stage import TorchStage


class SemanticSegStage(TorchStage):
    """An LRASPP-MobileNetV3 segmenter of background + the classes of :attr:`groups`."""

    #: the taxonomy groups it predicts, in label order
    groups: ClassVar[tuple[str, ...]] = ()
    #: predict only the classes seen labelled in training (kept in the file)
    learns_classes: ClassVar[bool] = False
    start_weight_fields = ("backbone_weights",)
    start_weight_kind = "mobilenet_v3_large"

    config: SemSegConfig

    def __init__(self, config: SemSegConfig | None = None, taxonomy: Taxonomy | None = None):
        import torch

        self.config = config or self.config_class.from_preset()
        self.taxonomy = taxonomy or default_taxonomy()
        torch.manual_seed(self.config.seed)
        self.classes = SemanticClasses(self.taxonomy, self.groups)
        self.n_classes = len(self.classes)
        self.net = build_net(self.config, self.n_classes, purpose=f"{self.name}'s backbone").eval()
        self.device, self.amp = resolve_device(self.config.device)
        self.net.to(self.device)
        self.lut = self.classes.mirror_lut()
        #: ``(1 + C,)`` bool: the labels it may predict (background always)
        self.known = np.ones(self.n_classes, bool)
        if self.learns_classes:
            self.known[1:] = False

    @classmethod
    def checkpoint_counts(cls, taxonomy: Taxonomy | None) -> dict[str, int]:
        tax = taxonomy or default_taxonomy()
        return {g: len(tax.group(g)) for g in cls.groups}

    def checkpoint_extra(self) -> dict[str, Any]:
        if not self.learns_classes:
            return {}
        return {"known_classes": [int(c.id) for c in self.known_classes()]}

    def restore_extra(self, extra: dict[str, Any]) -> None:
        if self.learns_classes:
            self.known[1:] = False
            for cid in extra.get("known_classes") or []:
                k = self.classes.label(int(cid))
                if k is not None:
                    self.known[k] = True

    def known_classes(self) -> list[Any]:
        """The classes it may predict (:class:`core.taxonomy.LabelClass`)."""
        return [self.classes.class_at(k) for k in np.nonzero(self.known[1:])[0] + 1]

    def unknown_classes(self) -> list[Any]:
        """The classes it never predicts: none of them was labelled in its training."""
        return [self.classes.class_at(k) for k in np.nonzero(~self.known[1:])[0] + 1]

    # -- inference ---------------------------------------------------------------------------
    def _tensor(self, images: list[np.ndarray]) -> Any:
        import cv2
        import torch

        s = self.config.size
        x = np.stack([cv2.resize(im, (s, s), interpolation=cv2.INTER_AREA) for im in images])
        x = (x.astype(np.float32) - MEAN) / STD
        return torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).to(self.device)

    def _forward(self, x: Any) -> tuple[Any, Any]:
        """``(B, 1+C, S, S)`` logits and ``(B, 960, h, w)`` backbone features."""
        import torch.nn.functional as F

        feats = self.net.backbone(x)
        logits = self.net.classifier(feats)
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits, feats["high"]

    def probabilities(self, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``(B, 1+C, S, S)`` float32 softmax and ``(B, 960, h, w)`` float32 features at the
        working size, averaged with the mirrored photo under ``flip_tta``; the classes it
        does not know have probability 0."""
        import torch

        with torch.inference_mode(), torch.autocast(self.device.type, enabled=self.amp):
            x = self._tensor(images)
            logits, feats = self._forward(x)
            if not self.known.all():
                logits = logits.float().masked_fill(
                    torch.from_numpy(~self.known).to(logits.device).view(1, -1, 1, 1), -torch.inf
                )
            probs = logits.float().softmax(1)
            if self.config.flip_tta:
                lf, _ = self._forward(x.flip(-1))
                if not self.known.all():
                    lf = lf.float().masked_fill(
                        torch.from_numpy(~self.known).to(lf.device).view(1, -1, 1, 1), -torch.inf
                    )
                mirrored = lf.float().softmax(1).flip(-1)[:, torch.from_numpy(self.lut)]
                probs = (probs + mirrored) / 2
        return probs.cpu().numpy(), feats.float().cpu().numpy()

    def refine(self, image: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Hook: the probabilities ``(1+C, th, tw)`` at the traced size, refined (none here)."""
        return p

    def map_instances(
        self, labels: np.ndarray, p: np.ndarray, feats: np.ndarray
    ) -> tuple[Instances, dict[str, Any]]:
        """Hook: the instances of an arg-max map and what the photo's ``meta`` adds."""
        th, tw = labels.shape
        cfg = self.config
        comps = large_components(labels, cfg.min_area_frac, cfg.merge_px)
        inst, _ = components_instances(
            comps,
            p,
            self.classes,
            min_px=max(1.0, cfg.min_area_frac * th * tw),
            tolerance=cfg.tolerance,
            features=feats,
        )
        return inst, {}

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
        p = self.refine(image, p)
        labels = p.argmax(0)
        inst, meta = self.map_instances(labels, p, feats)
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
        meta = {"stage": self.name, **meta}
        return ImageResult(inst, feats.mean((1, 2)).astype(np.float32), meta=meta), labels

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
        """``{group: {...classification figures, "coco": {AP, AP50}, "found": instances matched
        at IoU 0.5 / 0.75 (:func:`models.metrics.instances_found`), "agnostic_coco": AP with
        every class of the group as one}}`` per group on ``data``;
        the first group also holds ``"miou"`` and ``"per_class_iou"``: semantic, per class,
        intersection over union of the arg-max map and the labels (traced size), summed over
        the photos, then averaged over the classes either side shows."""
        from models.metrics import (
            SemanticIoU,
            classification_metrics,
            coco_mask_ap,
            collapsed,
            instances_found,
        )

        iou = SemanticIoU(self.taxonomy, self.groups)
        pairs = []
        for i, rec in enumerate(data.records):
            img = data.load_image(i)
            probs, feats = self.probabilities([img])
            res, pred = self._instances(img, probs[0], feats[0])
            th, tw = pred.shape
            h, w = img.shape[:2]
            iou.add(label_map(rec.instances, self.classes, th, tw, tw / w, th / h), pred)
            pairs.append((res.instances, rec.instances, h, w))
            if progress:
                progress(i + 1, len(data), {"image": rec.file_name})
        out: dict[str, Any] = {}
        for g in self.groups:
            figures: dict[str, Any] = classification_metrics(pairs, data.taxonomy, g)
            figures["coco"] = coco_mask_ap(pairs, data.taxonomy, g)
            figures["found"] = instances_found(pairs, data.taxonomy, g)
            # "something of this group is here", whatever its class: what the assistance can
            # then refine and label
            anyone = data.taxonomy.group(g)[0].id
            figures["agnostic_coco"] = coco_mask_ap(
                [
                    (
                        collapsed(p, data.taxonomy, g, anyone),
                        collapsed(t, data.taxonomy, g, anyone),
                        h,
                        w,
                    )
                    for p, t, h, w in pairs
                ],
                data.taxonomy,
                g,
            )
            out[g] = figures
        out[self.groups[0]]["miou"] = iou.mean()
        out[self.groups[0]]["per_class_iou"] = iou.per_class()
        return out

    # -- training ----------------------------------------------------------------------------
    def training_arrays(self, dataset: TrainingSet) -> tuple[np.ndarray, np.ndarray]:
        """``(N, S, S, 3)`` uint8 photos and ``(N, S, S)`` uint8 label maps of the records with
        polygons of the stage's groups, resized once (augmentation works on these)."""
        import cv2

        s = self.config.size
        xs, ys = [], []
        for i, rec in enumerate(dataset.records):
            if not any(self.classes.label(int(c)) for c in rec.instances.class_ids):
                continue
            img = dataset.load_image(i)
            h, w = img.shape[:2]
            lab = label_map(rec.instances, self.classes, s, s, s / w, s / h)
            if not lab.any():
                continue
            xs.append(cv2.resize(img, (s, s), interpolation=cv2.INTER_AREA))
            ys.append(lab.astype(np.uint8))
        if not xs:
            kinds = " or ".join(self.groups)
            raise ValueError(
                f"the training set has no {kinds} polygons: label some before training {self.name}"
            )
        return np.stack(xs), np.stack(ys)

    def sample(
        self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """One training sample of a working-size photo: a ``crop`` window of it (focused on
        labelled pixels ``focus_p`` of the time), or all of it, augmented."""
        c = self.config.crop
        if c is not None and c < image.shape[0]:
            y0, x0 = focused_crop(labels, c, self.config.focus_p, rng)
            image, labels = image[y0 : y0 + c, x0 : x0 + c], labels[y0 : y0 + c, x0 : x0 + c]
        return self.augment(image, labels, rng)

    def augment(
        self, image: np.ndarray, labels: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Jitter, scale, shift and a sided flip of one square sample; int64 labels back."""
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
        self, dataset: TrainingSet, cfg: SemSegConfig, progress: Progress | None, out_path: OutPath
    ) -> TrainResult:
        import torch
        import torch.nn.functional as F

        t0 = time.perf_counter()
        xs, ys = self.training_arrays(dataset)
        if self.learns_classes:
            self.known[np.unique(ys)] = True
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
                pairs = [self.sample(xs[i], ys[i], rng) for i in idx]
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
        if cfg.batch_norm_photos is not None and len(xs) > cfg.batch_norm_photos:
            pick = np.sort(rng.choice(len(xs), cfg.batch_norm_photos, replace=False))
            self.recalibrate_batch_norm(xs[pick], cfg.batch_size)
        else:
            self.recalibrate_batch_norm(xs, cfg.batch_size)
        net.eval()
        k = max(1, min(5, len(losses) // 4))
        metrics: dict[str, Any] = {
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
        if self.learns_classes:
            # the dashboard names these without loading the model
            metrics["unpredicted_classes"] = [c.name for c in self.unknown_classes()]
        path = Path(out_path) if out_path else Path(f"{self.name}.pt")
        self.save(path)
        return TrainResult(path, metrics)
