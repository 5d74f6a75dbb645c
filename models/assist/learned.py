"""A small class-agnostic box/click-to-mask network trained on the project's own polygons.

The network, the geometry of its prompt crops and its training sampler are in
:mod:`models.assist.learned_net`; here it is a registered stage (``assist_net``), trained,
versioned and loaded like the others, whose mask logits are warped back into the photo.
It answers a person's box or clicks, so it is ``prompted`` and never pre-annotates.
:class:`LearnedAssistant` is its ``SamPredictor``-shaped front.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from core.geometry import mask_iou
from core.instances import ImageResult, Instances
from models.assist.base import Assistant, prompt_window
from models.assist.learned_net import (
    CANVAS_MARGIN,
    AssistNetConfig,
    build_net,
    grown_box,
    make_input,
    mask_loss,
    part_canvases,
    sample_batch,
    window_affine,
)
from models.base import OutPath, TrainResult, end_epoch, resolve_device
from models.data import Progress, TrainingSet, check_images
from models.registry import register_stage
from models.torch_stage import TorchStage

#: Held-out parts a box-prompted back end is measured on (the first ones, in photo order):
#: enough to rank back ends, few enough that a self-training job measures in seconds.
HOLDOUT_PARTS = 200


def assistant_box_masks(assistant: Assistant):
    """``fn(image, box) -> (H, W) bool``: the mask an assistance back end draws from ``box``
    (XYXY pixels), asked the way the workspace asks it: ``set_image`` once per photo, then
    ``predict(box=...)``."""
    last: list[np.ndarray | None] = [None]

    def mask(image: np.ndarray, box: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        if last[0] is not image:
            assistant.set_image(image)
            last[0] = image
        shape = assistant.predict(box=box).shape
        return shape.to_mask(h, w) if shape is not None else np.zeros((h, w), dtype=bool)

    return mask


@register_stage("assist_net")
class AssistNetStage(TorchStage):
    """The learned assistance network as a stage. ``predict(images, boxes)`` returns one
    class-agnostic instance (class id 0) per prompt box; without boxes, the whole photo."""

    config_class = AssistNetConfig
    title = "Click/box assist net"
    primary_metrics = ("holdout.mean_iou",)
    weight_free_baseline = ("grabcut", "models.assist.grabcut:GrabCutAssistant")
    serves_unpromoted = True
    prompted = True
    pre_annotates = False
    architecture = "the assist_net architecture"

    def __init__(self, config: AssistNetConfig | None = None, taxonomy: Any = None):
        import torch

        self.config = config or AssistNetConfig.from_preset()
        self.taxonomy = taxonomy  # class-agnostic: kept only to build like every stage
        torch.manual_seed(self.config.seed)
        self.net = build_net(self.config).eval()
        self.device, self.amp = resolve_device(self.config.device)
        self.net.to(self.device)

    # -- inference -------------------------------------------------------------
    def mask_logits(
        self, image: np.ndarray, box: np.ndarray, points: np.ndarray, labels: np.ndarray
    ):
        """Probability ``(S, S)`` float32 of the prompt window and the window->crop affine."""
        import cv2
        import torch

        s = self.config.size
        a = window_affine(grown_box(box, self.config.margin), s)
        crop = cv2.warpAffine(image, a, (s, s), flags=cv2.INTER_LINEAR)
        pts = points @ a[:, :2].T + a[:, 2] if len(points) else points
        x = torch.from_numpy(make_input(crop, pts, labels))[None].to(self.device)
        with torch.inference_mode():
            prob = torch.sigmoid(self.net(x))[0, 0].float().cpu().numpy()
        return prob, a

    def predict(
        self, images: list[np.ndarray], boxes: list[np.ndarray] | None = None
    ) -> list[ImageResult]:
        from core.geometry import mask_to_shape

        check_images(images)
        out = []
        for k, img in enumerate(images):
            h, w = img.shape[:2]
            bxs = np.asarray(
                [[0, 0, w, h]] if boxes is None else boxes[k], dtype=np.float64
            ).reshape(-1, 4)
            shapes, scores = [], []
            for box in bxs:
                mask, score, off = paste_mask(
                    self, img, box, np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
                )
                shape = mask_to_shape(mask, tolerance=1.0, min_area=4.0)
                if shape is not None:
                    shapes.append(shape.translated(*off))
                    scores.append(score)
            inst = Instances(
                shapes=shapes,
                class_ids=np.zeros(len(shapes), dtype=np.int64),
                scores=np.asarray(scores),
            )
            out.append(ImageResult(inst, meta={"stage": self.name}))
        return out

    # -- training ---------------------------------------------------------------
    def fit(
        self,
        dataset: TrainingSet,
        cfg: AssistNetConfig,
        progress: Progress | None,
        out_path: OutPath,
    ) -> TrainResult:
        import torch

        rng = np.random.default_rng(cfg.seed)
        t0 = time.perf_counter()
        canvas = int(round(cfg.size * (1 + 2 * CANVAS_MARGIN) / (1 + 2 * cfg.margin)))
        images, masks, boxes = part_canvases(dataset, canvas, cfg.max_parts, rng)
        n = len(images)
        steps_per_epoch = max(1, n // cfg.batch_size)
        total = steps_per_epoch * cfg.epochs
        opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=total, pct_start=0.1
        )
        self.net.train()
        losses: list[float] = []
        step = 0
        for epoch in range(cfg.epochs):
            order = rng.permutation(n)
            ep_losses = []
            for b in range(steps_per_epoch):
                idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                x, y = sample_batch(images, masks, boxes, idx, cfg, rng)
                x, y = torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
                with torch.autocast(self.device.type, enabled=self.amp):
                    loss = mask_loss(self.net(x).float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                ep_losses.append(float(loss.detach()))
                step += 1
            end_epoch(losses, ep_losses, epoch, cfg.epochs, progress)
        self.net.eval()
        metrics = {
            "train_parts": int(n),
            "epoch_losses": losses,
            "train_seconds": time.perf_counter() - t0,
        }
        path = Path(out_path) if out_path else Path(f"{self.name}.pt")
        self.save(path)
        return TrainResult(artifact_path=path, metrics=metrics)

    def evaluate(
        self,
        data: TrainingSet,
        progress: Progress | None = None,
        max_parts: int | None = HOLDOUT_PARTS,
    ) -> dict[str, float]:
        """Mean IoU of box-prompted masks against the labelled polygons, and of the box itself
        (a prompted stage is measured on prompts, not on whole photos), on the first
        ``max_parts`` parts."""
        return evaluate_box_prompts(
            lambda img, box: box_prompt_mask(self, img, box), data, max_parts, progress=progress
        )

    @classmethod
    def measure_backend(
        cls, backend: Any, data: TrainingSet, progress: Progress | None = None
    ) -> dict[str, float]:
        """Box-prompt figures of an assistance back end (GrabCut) used as the workspace uses
        it, on the same parts as :meth:`evaluate`."""
        return evaluate_box_prompts(
            assistant_box_masks(backend), data, HOLDOUT_PARTS, progress=progress
        )

    # -- files (TorchStage's save/load) ----------------------------------------------
    @classmethod
    def checkpoint_counts(cls, taxonomy: Any) -> dict[str, int]:
        return {}  # one class-agnostic mask: the file fits any taxonomy


def paste_mask(
    stage: AssistNetStage,
    image: np.ndarray,
    box: np.ndarray,
    points: np.ndarray,
    labels: np.ndarray,
    threshold: float = 0.5,
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Bool mask of the prompt window clipped to the image, its score and its (x, y) offset."""
    import cv2

    h, w = image.shape[:2]
    prob, a = stage.mask_logits(image, box, points, labels)
    win = grown_box(box, stage.config.margin)
    x0, y0 = int(max(0, np.floor(win[0]))), int(max(0, np.floor(win[1])))
    x1, y1 = int(min(w, np.ceil(win[2]))), int(min(h, np.ceil(win[3])))
    # With WARP_INVERSE_MAP the matrix maps output (window) pixels to crop pixels: the
    # forward affine, shifted to the clipped window's origin.
    fwd = a.copy()
    fwd[:, 2] += a[:, :2] @ np.array([x0, y0])
    fine = cv2.warpAffine(
        prob,
        fwd,
        (max(1, x1 - x0), max(1, y1 - y0)),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderValue=0.0,
    )
    mask = fine > threshold
    score = float(prob[prob > threshold].mean()) if (prob > threshold).any() else 0.0
    return mask, score, (x0, y0)


def box_prompt_mask(stage: AssistNetStage, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    mask, _, (x0, y0) = paste_mask(stage, image, box, np.zeros((0, 2)), np.zeros(0, dtype=np.int64))
    full = np.zeros((h, w), dtype=bool)
    full[y0 : y0 + mask.shape[0], x0 : x0 + mask.shape[1]] = mask
    return full


def evaluate_box_prompts(
    fn,
    dataset: TrainingSet,
    max_parts: int | None = None,
    progress: Progress | None = None,
) -> dict[str, float]:
    """``fn(image, box) -> (H, W) bool``; returns mean/median IoU of it and of box-as-mask.
    ``progress(done, total, info)`` is called after each photo."""
    ious, box_ious = [], []
    for i, rec in enumerate(dataset.records):
        if max_parts is not None and len(ious) >= max_parts:
            break
        img = dataset.load_image(i)
        h, w = img.shape[:2]
        for shape in rec.instances.shapes:
            gt = shape.to_mask(h, w)
            if gt.sum() < 16:
                continue
            box = shape.bbox.astype(np.float64)
            bm = np.zeros((h, w), dtype=bool)
            bm[int(round(box[1])) : int(round(box[3])), int(round(box[0])) : int(round(box[2]))] = (
                True
            )
            ious.append(mask_iou(fn(img, box), gt))
            box_ious.append(mask_iou(bm, gt))
            if max_parts is not None and len(ious) >= max_parts:
                break
        if progress:
            progress(i + 1, len(dataset), {"image": rec.file_name})
    return {
        "parts": len(ious),
        "mean_iou": float(np.mean(ious)) if ious else 0.0,
        "median_iou": float(np.median(ious)) if ious else 0.0,
        "box_mean_iou": float(np.mean(box_ious)) if box_ious else 0.0,
    }


class LearnedAssistant(Assistant):
    """``SamPredictor``-shaped front of a trained :class:`AssistNetStage`."""

    backend = "assist_net"

    def __init__(
        self,
        stage: AssistNetStage,
        tolerance: float = 1.0,
        min_area: float = 16.0,
        version: str | None = None,
    ):
        super().__init__(tolerance, min_area)
        self.stage = stage
        self.version = version

    def _predict_mask(self, points, labels, box):
        h, w = self._image.shape[:2]
        if box is None:
            box = np.asarray(prompt_window(points, labels, None, w, h, 0.0), dtype=np.float64)
        mask, score, off = paste_mask(self.stage, self._image, box, points, labels)
        return mask, score, off
