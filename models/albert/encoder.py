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
    from models.weights import load_weights_file

    sd, _ = load_weights_file(path)  # safe, and a truncated file is named as such
    if not isinstance(sd, dict):
        raise CheckpointError(
            f"ViT weights {path} hold a {type(sd).__name__}, not a state dict; give a timm or "
            f"torchvision ViT state dict"
        )
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
    _check_vit_size(path, encoder, sd)
    usable = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise CheckpointError(
            f"ViT weights {path} share no tensor of matching name and shape with the encoder "
            f"(dim {own['pos_embed'].shape[-1]}, patch {encoder.patch}); pick a config that fits them"
        )
    encoder.load_state_dict(usable, strict=False)
    return sorted(set(own) - set(usable))


def _vit_size(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    """Width, patch, blocks and MLP width of a timm-layout ViT state dict (what it holds)."""
    out: dict[str, int] = {}
    proj = sd.get("patch_embed.proj.weight")
    if proj is not None:
        out["dim"], out["patch"] = int(proj.shape[0]), int(proj.shape[-1])
    blocks = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    if blocks:
        out["depth"] = max(blocks) + 1
    fc1 = sd.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None:
        out["mlp"] = int(fc1.shape[0])
    return out


def _check_vit_size(path: Path, encoder: ViTEncoder, sd: dict[str, torch.Tensor]) -> None:
    """Refuse a ViT of another size than ``encoder``, naming both sizes and the options that
    would match it: its blocks would load in part or not at all, which is not what a user
    who gave the file asked for."""
    own_sd = encoder.state_dict()
    ours = _vit_size(own_sd)
    theirs = _vit_size(sd)
    differs = [k for k in ("dim", "patch", "mlp") if k in theirs and theirs[k] != ours[k]]
    # a whole ViT (it has its final norm) must be as deep; a partial dict fills what it has
    depth = theirs.get("depth", 0)
    if depth > ours["depth"] or ("norm.weight" in sd and depth and depth != ours["depth"]):
        differs.append("depth")
    shapes = [k for k, v in sd.items() if k in own_sd and own_sd[k].shape != v.shape]
    if not differs and not shapes:
        return

    def words(size: dict[str, int]) -> str:
        parts = [f"{k} {size[k]}" for k in ("dim", "patch", "depth", "mlp") if k in size]
        return ", ".join(parts) or "unknown size"

    hint = ""
    if {"dim", "depth", "mlp"} <= set(theirs) and "patch" in theirs:
        ratio = theirs["mlp"] / theirs["dim"]
        hint = (
            f"; set dim={theirs['dim']} depth={theirs['depth']} patch={theirs['patch']} "
            f"mlp_ratio={ratio:g} (and heads to the ViT's head count, e.g. "
            f"{max(1, theirs['dim'] // 64)}) to match it"
        )
    raise CheckpointError(
        f"ViT weights {path} are a ViT of another size ({words(theirs)}) than ALBERT's "
        f"encoder ({words(ours)}): {', '.join(differs or shapes[:3])} differ{hint}, or give "
        f"ViT weights of the encoder's size"
    )
