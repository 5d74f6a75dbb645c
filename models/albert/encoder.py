"""ViT encoder (eq. 1-2): PxP patches, linear embedding plus learned positions, L pre-norm
blocks. Parameter names follow timm's layout so timm weights load as they are; torchvision
weights are renamed on load (:func:`load_vit_weights`)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
from torch import nn

from models.base import CheckpointError


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        x = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ViTEncoder(nn.Module):
    """``(B, 3, S, S)`` normalised images -> tokens ``(B, (S/P)^2, D)`` and grid size S/P."""

    def __init__(
        self, image_size: int, patch: int, dim: int, depth: int, heads: int, mlp_ratio: float
    ):
        super().__init__()
        if image_size % patch:
            raise ValueError(
                f"image_size {image_size} must be a multiple of the patch size {patch}"
            )
        self.patch = patch
        self.grid = image_size // patch
        self.patch_embed = PatchEmbed(patch, dim)
        self.pos_embed = nn.Parameter(torch.randn(1, self.grid * self.grid, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def _torchvision_to_timm(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        k2 = k.replace("conv_proj.", "patch_embed.proj.").replace(
            "encoder.pos_embedding", "pos_embed"
        )
        k2 = k2.replace("encoder.ln.", "norm.")
        m = re.match(r"encoder\.layers\.encoder_layer_(\d+)\.(.*)", k2)
        if m:
            i, rest = m.groups()
            rest = (
                rest.replace("ln_1.", "norm1.")
                .replace("ln_2.", "norm2.")
                .replace("self_attention.in_proj_", "attn.qkv.")
                .replace("self_attention.out_proj.", "attn.proj.")
                .replace("mlp.0.", "mlp.fc1.")
                .replace("mlp.3.", "mlp.fc2.")
                .replace("mlp.linear_1.", "mlp.fc1.")
                .replace("mlp.linear_2.", "mlp.fc2.")
            )
            k2 = f"blocks.{i}.{rest}"
        out[k2] = v
    return out


def load_vit_weights(encoder: ViTEncoder, path: str | Path) -> list[str]:
    """Load timm or torchvision ViT weights into ``encoder``; returns the names left at random.

    A class token is dropped and the position grid is resized when the input size differs.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"ViT weights {path} do not exist; download a ViT checkpoint yourself "
            f"or leave vit_weights unset to train from scratch"
        )
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"ViT weights {path} are not a readable PyTorch state dict ({e})"
        ) from e
    for key in ("model", "state_dict"):
        if isinstance(sd, dict) and key in sd and isinstance(sd[key], dict):
            sd = sd[key]
    if any(k.startswith("encoder.layers") or k.startswith("conv_proj") for k in sd):
        sd = _torchvision_to_timm(sd)
    sd = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in sd.items()}
    pos = sd.get("pos_embed")
    if pos is not None:
        n_grid = int(math.isqrt(pos.shape[1]))
        if n_grid * n_grid != pos.shape[1]:
            pos = pos[:, pos.shape[1] - n_grid * n_grid :]  # drop class/register tokens
        if n_grid != encoder.grid:
            d = pos.shape[-1]
            pos = nn.functional.interpolate(
                pos.reshape(1, n_grid, n_grid, d).permute(0, 3, 1, 2),
                size=(encoder.grid, encoder.grid),
                mode="bicubic",
                align_corners=False,
            )
            pos = pos.permute(0, 2, 3, 1).reshape(1, -1, d)
        sd["pos_embed"] = pos
    own = encoder.state_dict()
    usable = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise CheckpointError(
            f"ViT weights {path} share no tensor of matching name and shape with the encoder "
            f"(dim {own['pos_embed'].shape[-1]}, patch {encoder.patch}); pick a config that fits them"
        )
    encoder.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))
