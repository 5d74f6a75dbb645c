"""Patch-to-patch self-supervised descriptors for alignment, after the seed's section III.

Training (SimCLR on patches): per step one photo; ``patches`` random 32x32 patch centres
(drawn where the photo has texture), each cut out twice through a random affine (rotation,
scale, shift) with colour jitter and Gaussian noise; an encoder plus a 2-layer MLP head to a
128-d space; NT-Xent over the 2P views (one positive, 2P-2 negatives); SGD with momentum 0.9.

Presets: ``gpu`` is the seed's ResNet-18 (3x3 stem, no max-pool, for 32-px input) with the
512-512-128 head, 32 patches, lr 0.001; ``cpu`` is a three-layer strided conv net
(GroupNorm) with a 128-128-128 head, 16 patches, photos at 256 px and a 6-px matching grid,
lr 0.01 so that a short CPU run learns.

Matching: the encoder's features (before the head, as SimCLR uses them) of 32x32 patches on
a grid with ``stride`` pixels in both photos, L2-normalised; mutual nearest neighbours that
pass a ratio test are the point matches (patch centres) for RANSAC.

Images are ``(H, W, 3)`` uint8 RGB; centres are ``(N, 2)`` float32 ``(x, y)`` pixels of the
image as given. Torch is imported inside the functions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

PATCH = 32


@dataclass(frozen=True)
class PatchSSLConfig:
    encoder: str = "small"  # small | resnet18
    patches: int = 16
    #: photos are shrunk so their long side is at most this, for training and matching
    image_side: int = 256
    steps: int = 200
    lr: float = 0.01
    momentum: float = 0.9
    temperature: float = 0.5
    #: augmentation ranges: rotation (degrees), scale, shift (share of the patch)
    rotation: float = 15.0
    scale: float = 0.2
    shift: float = 0.1
    noise: float = 0.03
    #: matching grid step in pixels of the shrunk photo, and the ratio test
    stride: int = 6
    ratio: float = 0.95
    device: str = "auto"
    seed: int = 0

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> PatchSSLConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown patch-ssl preset {name!r}; valid: {', '.join(PRESETS)}")
        return replace(PRESETS[name], **overrides)


PRESETS: dict[str, PatchSSLConfig] = {
    "cpu": PatchSSLConfig(),
    "gpu": PatchSSLConfig(
        encoder="resnet18", patches=32, image_side=512, steps=2000, lr=0.001, stride=4
    ),
}


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_encoder(config: PatchSSLConfig):
    """``nn.Module`` whose forward gives ``(features (B, F), projection (B, 128))`` for a
    ``(B, 3, 32, 32)`` float batch."""
    import torch
    from torch import nn

    if config.encoder == "resnet18":
        import torchvision

        net = torchvision.models.resnet18(weights=None)
        net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        net.maxpool = nn.Identity()
        net.fc = nn.Identity()
        width = 512
    elif config.encoder == "small":

        def block(i: int, o: int, stride: int) -> list:
            return [
                nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False),
                nn.GroupNorm(8, o),
                nn.ReLU(True),
            ]

        # strided from the first layer: ~2.6 M multiply-adds a patch, so a photo's grid of
        # patches is described in about a second on a loaded 2-core CPU
        net = nn.Sequential(
            *block(3, 32, 2),
            *block(32, 64, 2),
            *block(64, 128, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        width = 128
    else:
        raise ValueError(f"unknown encoder {config.encoder!r}; valid: small, resnet18")

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = net
            self.head = nn.Sequential(nn.Linear(width, width), nn.ReLU(True), nn.Linear(width, 128))

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            f = self.backbone(x)
            return f, self.head(f)

    return Encoder()


def shrink(image: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    """``image`` with its long side at most ``side``, and the scale applied."""
    import cv2

    h, w = image.shape[:2]
    s = min(1.0, side / max(h, w))
    if s < 1.0:
        image = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return image, s


def _to_tensor(image: np.ndarray, device):
    import torch

    t = torch.from_numpy(np.require(image, requirements=["C", "W"])).to(device).float()
    t = t.permute(2, 0, 1)
    return (t / 255.0 - 0.5).unsqueeze(0)


def _texture_weights(image: np.ndarray) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    g = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    g = cv2.blur(g, (PATCH // 2, PATCH // 2)) + 1.0
    m = PATCH // 2 + 2
    g[:m], g[-m:], g[:, :m], g[:, -m:] = 0, 0, 0, 0
    return g.ravel() / g.sum() if g.sum() > 0 else np.full(g.size, 1.0 / g.size)


def _views(img, centres, rng: np.random.Generator, config: PatchSSLConfig, device):
    """``(P, 3, 32, 32)`` patches around ``centres`` ((P, 2) pixels), each through a random
    affine and colour change."""
    import torch
    import torch.nn.functional as F

    p = len(centres)
    _, _, h, w = img.shape
    ang = np.deg2rad(rng.uniform(-config.rotation, config.rotation, p))
    sc = rng.uniform(1 - config.scale, 1 + config.scale, p)
    sh = rng.uniform(-config.shift, config.shift, (p, 2)) * PATCH
    lin = (np.arange(PATCH) - (PATCH - 1) / 2).astype(np.float64)
    gx, gy = np.meshgrid(lin, lin)
    off = np.stack([gx.ravel(), gy.ravel()], 1)  # (32*32, 2)
    cos, sin = np.cos(ang) * sc, np.sin(ang) * sc
    rot = np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1)  # (P, 2, 2)
    pts = np.einsum("pij,nj->pni", rot, off) + (centres + sh)[:, None, :]
    norm = np.stack([(pts[..., 0] + 0.5) / w * 2 - 1, (pts[..., 1] + 0.5) / h * 2 - 1], -1)
    grid = torch.from_numpy(norm.reshape(p, PATCH, PATCH, 2)).float().to(device)
    out = F.grid_sample(img.expand(p, -1, -1, -1), grid, align_corners=False, padding_mode="border")
    gain = torch.from_numpy(rng.uniform(0.7, 1.3, (p, 1, 1, 1))).float().to(device)
    bias = torch.from_numpy(rng.uniform(-0.15, 0.15, (p, 1, 1, 1))).float().to(device)
    noise = torch.from_numpy(rng.normal(0, config.noise, out.shape)).float().to(device)
    return out * gain + bias + noise


def nt_xent(z1, z2, temperature: float):
    """SimCLR's NT-Xent for ``(P, D)`` projections of two views of P patches."""
    import torch
    import torch.nn.functional as F

    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    n = len(z1)
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


@dataclass
class TrainedPatchSSL:
    model: Any
    config: PatchSSLConfig
    losses: list[float]
    seconds: float
    images: int

    def save(self, path: str | Path) -> Path:
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.cpu() for k, v in self.model.state_dict().items()}
        torch.save(
            {
                "config": asdict(self.config),
                "state": state,
                "losses": self.losses,
                "seconds": self.seconds,
                "images": self.images,
            },
            path,
        )
        return path


def load(path: str | Path, device: str = "auto") -> TrainedPatchSSL:
    import torch

    data = torch.load(Path(path), map_location="cpu", weights_only=True)
    config = replace(PatchSSLConfig(**data["config"]), device=device)
    model = build_encoder(config)
    model.load_state_dict(data["state"])
    model.to(_device(device)).eval()
    return TrainedPatchSSL(model, config, list(data["losses"]), data["seconds"], data["images"])


def train(
    images: list[np.ndarray],
    config: PatchSSLConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainedPatchSSL:
    """Train the encoder on ``images`` for ``config.steps`` steps (one photo per step)."""
    import torch

    if not images:
        raise ValueError("patch-ssl training needs at least one photo")
    config = config or PRESETS["cpu"]
    device = _device(config.device)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    small = [shrink(im, config.image_side)[0] for im in images]
    tensors = [_to_tensor(im, device) for im in small]
    weights = [_texture_weights(im) for im in small]
    model = build_encoder(config).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(config.steps):
        k = step % len(small)
        h, w = small[k].shape[:2]
        idx = rng.choice(h * w, size=config.patches, replace=False, p=weights[k])
        centres = np.stack([idx % w, idx // w], 1).astype(np.float64)
        v1 = _views(tensors[k], centres, rng, config, device)
        v2 = _views(tensors[k], centres, rng, config, device)
        _, z1 = model(v1)
        _, z2 = model(v2)
        loss = nt_xent(z1, z2, config.temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress:
            progress(step + 1, config.steps, losses[-1])
    model.eval()
    return TrainedPatchSSL(model, config, losses, time.perf_counter() - t0, len(images))


def describe(
    trained: TrainedPatchSSL, image: np.ndarray, *, max_patches: int = 6000
) -> tuple[np.ndarray, np.ndarray, float]:
    """Descriptors of textured 32x32 patches on a grid: ``(centres (N, 2) in the shrunk
    photo's pixels, features (N, F) L2-normalised, the shrink scale)``."""
    import torch
    import torch.nn.functional as F

    config = trained.config
    small, s = shrink(image, config.image_side)
    device = next(trained.model.parameters()).device
    t = _to_tensor(small, device)
    h, w = small.shape[:2]
    stride = max(1, config.stride)
    if h < PATCH or w < PATCH:
        return np.zeros((0, 2), np.float32), np.zeros((0, 1), np.float32), s
    cols = F.unfold(t, PATCH, stride=stride)[0].T  # (L, 3*32*32)
    ny, nx = (h - PATCH) // stride + 1, (w - PATCH) // stride + 1
    ys, xs = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    centres = np.stack([xs.ravel(), ys.ravel()], 1) * stride + (PATCH - 1) / 2
    # flat patches (sky, paint without reflections) match anything: keep textured ones
    spread = cols.std(dim=1).cpu().numpy()
    keep = np.flatnonzero(spread > max(0.02, np.quantile(spread, 0.3)))
    if len(keep) > max_patches:
        keep = keep[np.argsort(-spread[keep])[:max_patches]]
    feats = []
    with torch.no_grad():
        batch = cols[torch.from_numpy(keep).to(device)].reshape(-1, 3, PATCH, PATCH)
        for i in range(0, len(batch), 1024):
            f, _ = trained.model(batch[i : i + 1024])
            feats.append(F.normalize(f, dim=1).cpu())
    if not feats:
        return np.zeros((0, 2), np.float32), np.zeros((0, 1), np.float32), s
    return centres[keep].astype(np.float32), torch.cat(feats).numpy(), s


def mutual_matches(fa: np.ndarray, fb: np.ndarray, ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs ``(ia, ib)`` that are each other's nearest neighbour (cosine), where the
    best similarity clearly beats the second best (``1 - best`` below ``ratio`` times
    ``1 - second``)."""
    if len(fa) < 2 or len(fb) < 2:
        return np.zeros(0, int), np.zeros(0, int)
    sim = fa @ fb.T
    ab = sim.argmax(1)
    ba = sim.argmax(0)
    ia = np.flatnonzero(ba[ab] == np.arange(len(fa)))
    ib = ab[ia]
    top2 = -np.partition(-sim[ia], 1, axis=1)[:, :2]
    ok = (1 - top2[:, 0]) < ratio * (1 - top2[:, 1])
    return ia[ok], ib[ok]


def patch_matches(
    trained: TrainedPatchSSL, pre: np.ndarray, post: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Point matches between two photos: ``(src, dst, pre_scale, post_scale)``; ``src``
    and ``dst`` are patch centres in the shrunk photos' pixels."""
    ca, fa, sa = describe(trained, pre)
    cb, fb, sb = describe(trained, post)
    ia, ib = mutual_matches(fa, fb, trained.config.ratio)
    return ca[ia], cb[ib], sa, sb


def loss_drop(losses: list[float], window: int = 5) -> float:
    """Mean of the first ``window`` losses minus the mean of the last ``window``."""
    window = max(1, min(window, len(losses) // 2 or 1))
    return float(np.mean(losses[:window]) - np.mean(losses[-window:])) if losses else math.nan
