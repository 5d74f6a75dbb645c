"""ALBERT's optimiser set-up: layer-wise learning-rate decay and a warm-up + cosine schedule."""

from __future__ import annotations

import math
from typing import Any

import torch

from models.albert.config import AlbertConfig
from models.albert.model import AlbertModel


def param_groups(model: AlbertModel, cfg: AlbertConfig) -> list[dict[str, Any]]:
    """Layer-wise lr decay: block i of L gets lr * decay^(L - i); the embedding decay^(L + 1);
    neck, decoder and heads the full lr. Norms and biases get no weight decay."""
    depth = len(model.encoder.blocks)
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if name.startswith("encoder.blocks."):
            scale = cfg.layer_decay ** (depth - int(name.split(".")[2]))
        elif name.startswith("encoder.norm"):
            scale = 1.0
        elif name.startswith("encoder."):
            scale = cfg.layer_decay ** (depth + 1)
        else:
            scale = 1.0
        wd = (
            0.0
            if p.ndim == 1
            or name.endswith("pos_embed")
            or name.endswith("query")
            or name.endswith("memory_pos")
            else cfg.weight_decay
        )
        groups.setdefault((scale, wd), []).append(p)
    return [
        {"params": ps, "lr": cfg.lr * s, "lr_scale": s, "weight_decay": wd}
        for (s, wd), ps in groups.items()
    ]


def warmup_cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
