"""ALBERT's configuration and its presets (``tiny`` CPU tests, ``small``, ``base`` GPU)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from models.base import StageConfig


@dataclass
class AlbertConfig(StageConfig):
    # -- encoder (ViT, eq. 1-2) --
    image_size: int = 128
    patch: int = 16
    dim: int = 64
    depth: int = 2
    heads: int = 2
    mlp_ratio: float = 4.0
    #: timm- or torchvision-layout ViT weights to start the encoder from (a local file)
    vit_weights: str | None = None
    # -- neck / queries / mask head (eq. 3-4) --
    mask_stride: int = 4  # mask features at 1/4 (or 8) of the input
    mask_dim: int = 32
    num_queries: int = 16
    dec_layers: int = 2
    kernel: int = 3  # K of the dynamic KxK filter
    # -- loss (eq. 5, 7, 8) --
    w_dice: float = 5.0  # lambda_1
    w_bce: float = 5.0  # lambda_2
    w_iou: float = 2.0  # lambda_IoU
    w_cls: float = 2.0
    no_object_weight: float = 0.1
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    # -- optimisation --
    lr: float = 3e-4
    weight_decay: float = 0.05
    layer_decay: float = 0.75
    warmup_steps: int = 20
    grad_clip: float = 1.0
    #: chance of training on the mirrored photo, with left/right classes swapped (tiny: off,
    #: so the CPU learning test memorises its 8 photos as before)
    hflip: float = 0.0
    # -- inference (eq. 10, 14, 20) --
    score_threshold: float = 0.3  # tau
    nms_iou: float = 0.5  # epsilon
    top_k: int = 50
    part_prior_alpha: float = 0.0  # 0 turns eq. 20 off
    gaussian_prior: bool = False  # eq. 14
    gaussian_sigma_scale: float = 0.75
    #: the epochs of training; steps = epochs * ceil(images / batch_size)
    epochs: int = 10
    batch_size: int = 4

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {},
        "small": {
            "image_size": 256,
            "dim": 192,
            "depth": 6,
            "heads": 3,
            "mask_dim": 64,
            "num_queries": 50,
            "dec_layers": 3,
            "epochs": 30,
            "batch_size": 8,
            "hflip": 0.5,
        },
        "base": {
            "image_size": 512,
            "dim": 768,
            "depth": 12,
            "heads": 12,
            "mask_dim": 128,
            "num_queries": 100,
            "dec_layers": 6,
            "epochs": 50,
            "batch_size": 16,
            "lr": 1e-4,
            "warmup_steps": 500,
            "hflip": 0.5,
        },
    }
