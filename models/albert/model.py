"""ALBERT as one ``nn.Module``: ViT encoder -> neck (mask features) -> query decoder ->
dynamic-filter mask head (eq. 3-4) and three classification heads (eq. 6)."""

from __future__ import annotations

import torch
from torch import nn

from models.albert.config import AlbertConfig
from models.albert.encoder import ViTEncoder


class MaskNeck(nn.Module):
    """Tokens on the S/P grid -> ``(B, C, S/stride, S/stride)`` mask features by 2x upsamplings."""

    def __init__(self, dim: int, out: int, patch: int, stride: int):
        super().__init__()
        ups = max(0, (patch // stride).bit_length() - 1)
        layers: list[nn.Module] = [
            nn.Conv2d(dim, out, 1),
            nn.GroupNorm(min(8, out), out),
            nn.GELU(),
        ]
        for _ in range(ups):
            layers += [
                nn.ConvTranspose2d(out, out, 2, stride=2),
                nn.GroupNorm(min(8, out), out),
                nn.GELU(),
                nn.Conv2d(out, out, 3, padding=1),
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, tokens: torch.Tensor, grid: int) -> torch.Tensor:
        b, n, d = tokens.shape
        return self.body(tokens.transpose(1, 2).reshape(b, d, grid, grid))


class QueryDecoder(nn.Module):
    """N learned queries refined by pre-norm transformer decoder layers over the tokens."""

    def __init__(self, dim: int, heads: int, layers: int, num_queries: int, num_tokens: int):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, num_queries, dim) * 0.02)
        self.memory_pos = nn.Parameter(torch.randn(1, num_tokens, dim) * 0.02)
        layer = nn.TransformerDecoderLayer(
            dim, heads, dim * 4, dropout=0.0, batch_first=True, norm_first=True, activation="gelu"
        )
        self.layers = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        q = self.query.expand(tokens.shape[0], -1, -1)
        return self.layers(q, tokens + self.memory_pos)


class DynamicMaskHead(nn.Module):
    """phi(q_i) -> a KxK filter over the C mask-feature channels (plus bias); m_i = F_i * F."""

    def __init__(self, dim: int, channels: int, kernel: int):
        super().__init__()
        self.c, self.k = channels, kernel
        self.phi = nn.Sequential(
            nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, channels * kernel * kernel + 1)
        )

    def forward(self, queries: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """``(B, N, D)`` queries, ``(B, C, h, w)`` features -> ``(B, N, h, w)`` mask logits."""
        b, n, _ = queries.shape
        params = self.phi(queries)
        weight = params[..., :-1].reshape(b * n, self.c, self.k, self.k)
        bias = params[..., -1].reshape(b * n)
        h, w = feats.shape[-2:]
        # one grouped convolution applies every image's N filters to that image's features
        out = nn.functional.conv2d(
            feats.reshape(1, b * self.c, h, w), weight, bias, padding=self.k // 2, groups=b
        )
        return out.reshape(b, n, h, w)


class AlbertModel(nn.Module):
    """``(B, 3, S, S)`` ImageNet-normalised images -> dict of
    ``masks`` (B, N, S/stride, S/stride) logits, ``damage`` (B, N, n_damage+1) logits (last =
    no-object), ``fake`` (B, N, n_fake) logits (sigmoids), ``part`` (B, N, n_part+1) logits
    (last = no-object), ``queries`` (B, N, D), ``image`` (B, D) mean token."""

    def __init__(self, cfg: AlbertConfig, n_damage: int, n_fake: int, n_part: int):
        super().__init__()
        self.encoder = ViTEncoder(
            cfg.image_size, cfg.patch, cfg.dim, cfg.depth, cfg.heads, cfg.mlp_ratio
        )
        grid = self.encoder.grid
        self.neck = MaskNeck(cfg.dim, cfg.mask_dim, cfg.patch, cfg.mask_stride)
        self.decoder = QueryDecoder(
            cfg.dim, cfg.heads, cfg.dec_layers, cfg.num_queries, grid * grid
        )
        self.mask_head = DynamicMaskHead(cfg.dim, cfg.mask_dim, cfg.kernel)
        self.damage_head = nn.Linear(cfg.dim, n_damage + 1)
        self.fake_head = nn.Linear(cfg.dim, n_fake)
        self.part_head = nn.Linear(cfg.dim, n_part + 1)
        # start with "nothing here": no-object likely, fakes rare (focal-loss prior)
        nn.init.constant_(self.fake_head.bias, -4.6)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens = self.encoder(images)
        feats = self.neck(tokens, self.encoder.grid)
        q = self.decoder(tokens)
        return {
            "masks": self.mask_head(q, feats),
            "damage": self.damage_head(q),
            "fake": self.fake_head(q),
            "part": self.part_head(q),
            "queries": q,
            "image": tokens.mean(1),
        }
