"""A small class-agnostic box/click-to-mask network trained on the project's own polygons.

How it sees a prompt: the prompt box grown by ``margin`` on each side is warped to an
``S x S`` crop (``S`` = ``config.size``, 96-128 px); the network gets the crop's RGB plus
two Gaussian maps for the foreground and background clicks (5 channels) and returns mask
logits ``(S, S)``, warped back into the photo. A UNet of four levels is enough: the box
already says where and how big the object is, the network only has to find its outline.

It is a registered stage (``assist_net``) so it is trained, versioned and loaded like the
others; :class:`LearnedAssistant` is its ``SamPredictor``-shaped front.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from core.geometry import mask_iou
from core.instances import ImageResult, Instances
from models.assist.base import Assistant, prompt_window
from models.base import (
    Progress,
    StageConfig,
    TrainingSet,
    TrainResult,
    check_images,
    limit_cpu_threads,
    load_checkpoint,
    resolve_device,
    restore_weights,
    save_checkpoint,
)
from models.registry import register_stage

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32) * 255
#: context kept around each training part, as a share of its box, so a jittered prompt
#: window still falls inside the stored canvas.
CANVAS_MARGIN = 0.4


@dataclass
class AssistNetConfig(StageConfig):
    size: int = 96
    width: int = 16
    margin: float = 0.15
    #: relative jitter of each box side while training, so a sloppy box still works
    box_jitter: float = 0.08
    click_prob: float = 0.5
    max_parts: int | None = None
    lr: float = 3e-3
    batch_size: int = 32
    epochs: int = 2

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {"size": 64, "width": 8, "epochs": 1, "max_parts": 64, "batch_size": 16},
        "small": {"size": 80, "width": 12, "epochs": 4},
        "base": {"size": 128, "width": 24, "epochs": 30, "batch_size": 64},
    }


def _build_net(cfg: AssistNetConfig):
    import torch
    from torch import nn

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    class AssistNet(nn.Module):
        """``(B, 5, S, S)`` float (normalised RGB + fg/bg click maps) -> ``(B, 1, S, S)`` logits."""

        def __init__(self, w: int):
            super().__init__()
            chans = [w, 2 * w, 4 * w, 6 * w, 8 * w]
            self.enc = nn.ModuleList()
            cin = 5
            for c in chans:
                self.enc.append(block(cin, c))
                cin = c
            self.up = nn.ModuleList()
            self.dec = nn.ModuleList()
            for c_skip in reversed(chans[:-1]):
                self.up.append(nn.ConvTranspose2d(cin, c_skip, 2, stride=2))
                self.dec.append(block(2 * c_skip, c_skip))
                cin = c_skip
            self.head = nn.Conv2d(cin, 1, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skips = []
            for i, enc in enumerate(self.enc):
                x = enc(x if i == 0 else nn.functional.max_pool2d(x, 2))
                skips.append(x)
            for up, dec, skip in zip(self.up, self.dec, reversed(skips[:-1]), strict=True):
                x = dec(torch.cat([up(x), skip], dim=1))
            return self.head(x)

    return AssistNet(cfg.width)


# -- geometry of crops ----------------------------------------------------------------


def window_affine(window: np.ndarray, size: int) -> np.ndarray:
    """2x3 affine taking window xyxy (float, may exceed the image) onto ``[0, size]^2``."""
    x0, y0, x1, y1 = window
    sx, sy = size / max(x1 - x0, 1e-6), size / max(y1 - y0, 1e-6)
    return np.array([[sx, 0, -x0 * sx], [0, sy, -y0 * sy]], dtype=np.float64)


def grown_box(box: np.ndarray, margin: float) -> np.ndarray:
    w, h = box[2] - box[0], box[3] - box[1]
    return np.array(
        [box[0] - margin * w, box[1] - margin * h, box[2] + margin * w, box[3] + margin * h]
    )


def click_maps(points: np.ndarray, labels: np.ndarray, size: int) -> np.ndarray:
    """``(2, S, S)`` float32 Gaussian bumps for fg (0) and bg (1) clicks in crop pixels."""
    out = np.zeros((2, size, size), dtype=np.float32)
    if len(points) == 0:
        return out
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    sigma2 = 2 * (size / 24) ** 2
    for (x, y), lab in zip(points, labels, strict=True):
        ch = 0 if lab == 1 else 1
        out[ch] = np.maximum(out[ch], np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / sigma2))
    return out


def make_input(crop: np.ndarray, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(5, S, S)`` float32 from an ``(S, S, 3)`` uint8 crop and clicks in crop pixels."""
    rgb = ((crop.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)
    return np.concatenate([rgb, click_maps(points, labels, crop.shape[0])], axis=0)


# -- training data -----------------------------------------------------------------------


def part_canvases(
    dataset: TrainingSet, canvas: int, max_parts: int | None, rng: np.random.Generator
):
    """Every labelled instance as a square canvas around its box: images ``(N, C, C, 3)``
    uint8, masks ``(N, C, C)`` uint8, and its box in canvas pixels ``(N, 4)``."""
    import cv2

    images, masks, boxes = [], [], []
    for i, rec in enumerate(dataset.records):
        if max_parts is not None and len(images) >= max_parts:
            break
        img = dataset.load_image(i)
        h, w = img.shape[:2]
        for shape in rec.instances.shapes:
            box = shape.bbox.astype(np.float64)
            if box[2] - box[0] < 4 or box[3] - box[1] < 4:
                continue
            # rasterise only the part's box: a full-photo mask per part made this the slow step
            bx0, by0 = int(np.floor(box[0])), int(np.floor(box[1]))
            bw, bh = int(np.ceil(box[2])) - bx0, int(np.ceil(box[3])) - by0
            m = shape.translated(-bx0, -by0).to_mask(bh, bw).astype(np.uint8)
            if m.sum() < 16:
                continue
            win = grown_box(box, CANVAS_MARGIN)
            a = window_affine(win, canvas)
            am = a.copy()
            am[:, 2] += a[:, :2] @ np.array([bx0, by0])  # box-local pixels -> canvas
            images.append(
                cv2.warpAffine(
                    img, a, (canvas, canvas), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0)
                )
            )
            masks.append(cv2.warpAffine(m, am, (canvas, canvas), flags=cv2.INTER_NEAREST))
            boxes.append(
                (a @ np.array([[box[0], box[2]], [box[1], box[3]], [1, 1]])).T.reshape(-1)[
                    [0, 1, 2, 3]
                ]
            )
            if max_parts is not None and len(images) >= max_parts:
                break
    if not images:
        raise ValueError(
            "the training set has no instance with a usable polygon (all empty or tiny)"
        )
    b = np.array(boxes)[:, [0, 1, 2, 3]]
    return np.stack(images), np.stack(masks), b


def sample_batch(images, masks, boxes, idx, cfg: AssistNetConfig, rng: np.random.Generator):
    """Jitter each box, warp its prompt window to ``S``, add clicks: (x, y) float32 arrays."""
    import cv2

    s = cfg.size
    xs, ys = [], []
    for i in idx:
        box = boxes[i].copy()
        bw, bh = box[2] - box[0], box[3] - box[1]
        box += rng.uniform(-cfg.box_jitter, cfg.box_jitter, 4) * np.array([bw, bh, bw, bh])
        a = window_affine(grown_box(box, cfg.margin), s)
        crop = cv2.warpAffine(images[i], a, (s, s), flags=cv2.INTER_LINEAR)
        mask = cv2.warpAffine(masks[i], a, (s, s), flags=cv2.INTER_NEAREST)
        pts, labs = np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
        if rng.random() < cfg.click_prob and mask.any():
            fy, fx = np.nonzero(mask)
            k = rng.integers(len(fy))
            pts, labs = np.array([[fx[k] + 0.5, fy[k] + 0.5]]), np.array([1])
            if rng.random() < 0.5 and (~mask.astype(bool)).any():
                by, bx = np.nonzero(mask == 0)
                k = rng.integers(len(by))
                pts = np.vstack([pts, [bx[k] + 0.5, by[k] + 0.5]])
                labs = np.append(labs, 0)
        if rng.random() < 0.5:
            crop, mask = crop[:, ::-1], mask[:, ::-1]
            pts = pts.copy()
            pts[:, 0] = s - pts[:, 0]
        xs.append(make_input(np.ascontiguousarray(crop), pts, labs))
        ys.append(mask[None].astype(np.float32))
    return np.stack(xs), np.stack(ys)


def mask_loss(logits, target):
    """BCE + soft dice, both averaged over the batch."""
    import torch

    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits).flatten(1)
    t = target.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


@register_stage("assist_net")
class AssistNetStage:
    """The learned assistance network as a stage. ``predict(images, boxes)`` returns one
    class-agnostic instance (class id 0) per prompt box; without boxes, the whole photo."""

    config_class = AssistNetConfig
    name = "assist_net"

    def __init__(self, config: AssistNetConfig | None = None, taxonomy: Any = None):
        import torch

        limit_cpu_threads()
        self.config = config or AssistNetConfig.from_preset("tiny")
        torch.manual_seed(self.config.seed)
        self.net = _build_net(self.config).eval()
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
    def train(
        self,
        dataset: TrainingSet,
        config: AssistNetConfig | None = None,
        progress: Progress | None = None,
        out_path: str | Path | None = None,
    ) -> TrainResult:
        import torch

        cfg = config or self.config
        self.config = cfg
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
            losses.append(float(np.mean(ep_losses)))
            if progress:
                progress(epoch + 1, cfg.epochs, {"epoch": epoch + 1, "loss": losses[-1]})
        self.net.eval()
        metrics = {
            "train_parts": int(n),
            "epoch_losses": losses,
            "train_seconds": time.perf_counter() - t0,
        }
        path = Path(out_path) if out_path else Path(f"{self.name}.pt")
        self.save(path)
        return TrainResult(artifact_path=path, metrics=metrics)

    def evaluate(self, dataset: TrainingSet, max_parts: int | None = None) -> dict[str, float]:
        """Mean IoU of box-prompted masks against the labelled polygons, and of the box itself."""
        return evaluate_box_prompts(
            lambda img, box: box_prompt_mask(self, img, box), dataset, max_parts
        )

    # -- files ------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        return save_checkpoint(
            path,
            stage=self.name,
            config=self.config,
            class_counts={},
            state_dict={k: v.cpu() for k, v in self.net.state_dict().items()},
        )

    @classmethod
    def load(cls, path: str | Path, device: str = "auto", **_: Any) -> AssistNetStage:

        payload = load_checkpoint(path, stage=cls.name)
        cfg = AssistNetConfig.from_dict({**payload["config"], "device": device})
        stage = cls(cfg)
        restore_weights(stage.net, payload["state_dict"], path, "the assist_net architecture")
        return stage


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
    fn, dataset: TrainingSet, max_parts: int | None = None
) -> dict[str, float]:
    """``fn(image, box) -> (H, W) bool``; returns mean/median IoU of it and of box-as-mask."""
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
