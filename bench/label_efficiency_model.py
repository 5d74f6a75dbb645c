"""The simulated annotator's model for ``bench/label_efficiency.py``: a small U-Net for parts.

What it is (a real model, trained from scratch on every call of :func:`train`):
- ``SmallUNet``: a stride-2 stem (3×3 conv, ``w`` channels) so the U-Net runs at 1/2 of the
  input size (5× cheaper on the CPU), then an encoder ``w`` (1/2) -> ``2w`` (1/4) -> a
  bottleneck ``4w`` (1/8), and a decoder that upsamples and concatenates the encoder's skip
  features at 1/4 and 1/2; every block is two 3×3 conv + BatchNorm + ReLU; a 1×1 classifier
  and bilinear upsampling of the logits to the input size. About 31 M multiply-adds per
  64-px photo at ``w`` = 16. Input: RGB in [0, 1] plus two coordinate channels (x, y in
  [-1, 1]), because left/right part classes depend on where things are, which a small fully
  convolutional net cannot otherwise see. Output: ``(N, 19, S, S)`` logits (background + 18
  dsmlr parts).
- Embedding for k-center/hybrid: the bottleneck features, global-average-pooled, ``(N, 4w)``.
- Training: AdamW (lr ``lr``, weight decay 1e-4), one-cycle schedule, exactly ``steps``
  steps (the benchmark sets them from the labelled-set size by one fixed rule), batch
  ``batch``, loss = cross-entropy with background weighted 0.5 (so the net does not
  collapse to "all background") + soft Dice over the part classes. Augmentation:
  brightness/contrast jitter and a random zoom (scale 0.85-1.15,
  shift ±8%, nearest-neighbour labels). No flips: left/right classes would swap.
"""

from __future__ import annotations

import numpy as np

N_CLASSES = 19  # background + 18 parts


def make_model(width: int = 16):
    """A small U-Net; see the module docstring. ``forward(x) -> (logits, embedding)``."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    from models.assist.learned_net import conv_block as block

    class SmallUNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            w = width
            # stride-2 stem: the U-Net itself runs at 1/2 resolution (5x cheaper on the CPU)
            self.stem = nn.Sequential(
                nn.Conv2d(5, w, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(w),
                nn.ReLU(inplace=True),
            )
            self.e1, self.e2, self.mid = block(w, w), block(w, 2 * w), block(2 * w, 4 * w)
            self.d2, self.d1 = block(6 * w, 2 * w), block(3 * w, w)
            self.out = nn.Conv2d(w, N_CLASSES, 1)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            n, _, h, wd = x.shape
            yy = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(n, 1, h, wd)
            xx = torch.linspace(-1, 1, wd, device=x.device).view(1, 1, 1, wd).expand(n, 1, h, wd)
            f1 = self.e1(self.stem(torch.cat([x, xx, yy], 1)))
            f2 = self.e2(F.max_pool2d(f1, 2))
            b = self.mid(F.max_pool2d(f2, 2))
            u = self.d2(torch.cat([F.interpolate(b, scale_factor=2.0), f2], 1))
            u = self.d1(torch.cat([F.interpolate(u, scale_factor=2.0), f1], 1))
            logits = F.interpolate(self.out(u), size=(h, wd), mode="bilinear", align_corners=False)
            return logits, b.mean(dim=(2, 3))

    return SmallUNet()


def _augment(xb, yb, gen):
    """Brightness/contrast jitter and a random zoom+shift (same warp for image and labels)."""
    import torch
    import torch.nn.functional as F

    n = xb.shape[0]
    dev = xb.device
    u = lambda *s: torch.rand(*s, generator=gen).to(dev)  # noqa: E731
    contrast = 0.75 + 0.5 * u(n, 1, 1, 1)
    bright = 0.15 * (u(n, 1, 1, 1) - 0.5)
    mean = xb.mean(dim=(1, 2, 3), keepdim=True)
    xb = ((xb - mean) * contrast + mean + bright).clamp_(0, 1)
    scale = 0.85 + 0.3 * u(n)
    shift = 0.16 * (u(n, 2) - 0.5)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = 1 / scale
    theta[:, 1, 1] = 1 / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(xb.shape), align_corners=False)
    xb = F.grid_sample(xb, grid, mode="bilinear", padding_mode="border", align_corners=False)
    yb = (
        F.grid_sample(
            yb[:, None].float(), grid, mode="nearest", padding_mode="border", align_corners=False
        )[:, 0]
        .round()
        .long()
    )
    return xb, yb


def train(
    x: np.ndarray,
    y: np.ndarray,
    *,
    steps: int,
    seed: int,
    width: int = 16,
    batch: int = 16,
    lr: float = 3e-3,
    device: str = "cpu",
    dice: bool = True,
):
    """Train a fresh :func:`make_model` on ``x`` ``(N, 3, S, S)`` uint8 and ``y`` ``(N, S, S)``
    uint8 labels (0 = background, 1..18 parts) for exactly ``steps`` steps; returns it in eval
    mode. Deterministic for a given ``seed`` on the CPU."""
    import torch
    import torch.nn.functional as F

    if steps < 10:
        raise ValueError(f"steps must be at least 10 for the one-cycle schedule, got {steps}.")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = torch.device(device)
    model = make_model(width).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    xt = torch.from_numpy(x).float().div_(255.0).to(dev)
    yt = torch.from_numpy(y).long().to(dev)
    cw = torch.ones(N_CLASSES, device=dev)
    cw[0] = 0.5
    model.train()
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch:  # reshuffled epochs, drawn batch by batch
            order += rng.permutation(len(x)).tolist()
        b = torch.tensor(order[:batch], device=dev)
        del order[:batch]
        xb, yb = _augment(xt[b], yt[b], gen)
        logits, _ = model(xb)
        loss = F.cross_entropy(logits, yb, weight=cw)
        if dice:
            # soft Dice over the part classes, one-hot built by scatter (cheap on the CPU)
            p = torch.softmax(logits, 1)
            t = torch.zeros_like(p).scatter_(1, yb[:, None], 1.0)
            inter = (p * t).sum(dim=(0, 2, 3))[1:]
            denom = (p + t).sum(dim=(0, 2, 3))[1:]
            present = t.sum(dim=(0, 2, 3))[1:] > 0
            loss = loss + 1 - ((2 * inter + 1) / (denom + 1))[present].mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    return model


def infer(model, x: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Softmax ``(N, 19, S, S)`` float16 and pooled bottleneck features ``(N, D)`` float32."""
    import torch

    probs, feats = [], []
    with torch.no_grad():
        for i in range(0, len(x), 50):
            xb = torch.from_numpy(x[i : i + 50]).float().div_(255.0).to(device)
            logits, f = model(xb)
            probs.append(torch.softmax(logits.float(), 1).half().cpu().numpy())
            feats.append(f.float().cpu().numpy())
    return np.concatenate(probs), np.concatenate(feats)


def miou(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean IoU over the part classes (1..18) present in ``y``; ``pred``/``y`` ``(N, S, S)``."""
    cm = np.bincount(
        y.reshape(-1).astype(np.int64) * N_CLASSES + pred.reshape(-1).astype(np.int64),
        minlength=N_CLASSES**2,
    ).reshape(N_CLASSES, N_CLASSES)
    inter = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - inter
    present = cm.sum(1)[1:] > 0
    return float((inter[1:][present] / np.maximum(union[1:][present], 1)).mean())
