"""The assist_net network, the geometry of its prompt crops and its training sampler.

How the network sees a prompt: the prompt box grown by ``margin`` on each side is warped to
an ``S x S`` crop (``S`` = ``config.size``, 64-128 px); the network gets the crop's RGB plus
two Gaussian maps for the foreground and background clicks (5 channels) and returns mask
logits ``(S, S)``. A UNet of four levels is enough: the box already says where and how big
the object is, the network only has to find its outline. Training samples each labelled
instance from a canvas around its box, with a jittered box and random clicks.

The stage that trains, saves and runs it is :mod:`models.assist.learned`. torch and cv2 are
imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from models.base import StageConfig
from models.data import TrainingSet

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


def conv_block(cin: int, cout: int) -> Any:
    """Two 3×3 conv + BatchNorm + ReLU: ``(B, cin, H, W)`` -> ``(B, cout, H, W)``."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def build_net(cfg: AssistNetConfig) -> Any:
    """The UNet, random weights: ``(B, 5, S, S)`` float in, ``(B, 1, S, S)`` logits out."""
    import torch
    from torch import nn

    class AssistNet(nn.Module):
        """``(B, 5, S, S)`` float (normalised RGB + fg/bg click maps) -> ``(B, 1, S, S)`` logits."""

        def __init__(self, w: int):
            super().__init__()
            chans = [w, 2 * w, 4 * w, 6 * w, 8 * w]
            self.enc = nn.ModuleList()
            cin = 5
            for c in chans:
                self.enc.append(conv_block(cin, c))
                cin = c
            self.up = nn.ModuleList()
            self.dec = nn.ModuleList()
            for c_skip in reversed(chans[:-1]):
                self.up.append(nn.ConvTranspose2d(cin, c_skip, 2, stride=2))
                self.dec.append(conv_block(2 * c_skip, c_skip))
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
