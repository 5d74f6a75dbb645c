"""The ``part_seg`` stage's settings and presets (sizes, the training clock, augmentation,
tracing and inference options)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from models.base import StageConfig


@dataclass
class PartSegConfig(StageConfig):
    #: photos are resized to size x size for training and prediction
    size: int = 192
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-2
    #: the most epochs; with a time budget training usually stops on the clock first
    epochs: int = 1000
    #: wall-clock seconds of training (None: run ``epochs``); the cosine follows this clock
    time_budget_s: float | None = 600.0
    #: optimiser steps of linear warm-up
    warmup_steps: int = 30
    dice_weight: float = 0.5
    #: augmentation: brightness/contrast jitter (share), scale range, shift (share of size)
    jitter: float = 0.2
    scale_min: float = 0.8
    scale_max: float = 1.2
    shift: float = 0.1
    flip_p: float = 0.5
    #: a component smaller than this share of the photo is not an instance
    min_area_frac: float = 0.002
    #: Douglas-Peucker tolerance of the traced polygons, in traced pixels
    tolerance: float = 1.5
    #: instances whose mean class probability is below this are dropped (bench_part_seg.py:
    #: at 0.5 a 10-minute model offers 1% fewer right polygons and 18% fewer wrong ones)
    score_threshold: float = 0.5
    #: average the probabilities of the photo and of its mirror (sided classes swapped):
    #: +0.007 held-out AP50 and +0.011 mIoU for 3% more time per photo (bench_part_seg.py)
    flip_tta: bool = True
    #: a second look at small parts (lights, mirrors): each component under
    #: ``small_part_max_frac`` of the photo is predicted again on a crop around it, zoomed by
    #: this factor, and the two probability maps are averaged there (0 or 1: off)
    small_part_zoom: float = 0.0
    small_part_max_frac: float = 0.01
    #: the most crops per photo (the smallest components first)
    small_part_max_crops: int = 6
    #: boundary refinement without a CRF: a guided filter (He et al.) of the class probabilities
    #: with the photo's grey levels as guide, so the edges follow the photo's edges; the radius
    #: in traced pixels (0: off) and the regularisation (larger: smoother)
    refine_radius: int = 0
    refine_eps: float = 1e-2
    #: local torchvision MobileNetV3-Large weights (e.g. ImageNet) for the backbone
    backbone_weights: str | None = None

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {
            "size": 64,
            "batch_size": 4,
            "epochs": 8,
            "time_budget_s": None,
            "warmup_steps": 2,
            # random weights score low: the tests want every instance
            "score_threshold": 0.0,
            "flip_tta": False,
        },
        "cpu": {"size": 192, "batch_size": 8, "time_budget_s": 600.0},
        "gpu": {"size": 448, "batch_size": 16, "time_budget_s": 600.0, "warmup_steps": 100},
        # the names every stage answers to (the UI's and the rounds' presets)
        "small": {"size": 192, "batch_size": 8, "time_budget_s": 600.0},
        "base": {"size": 448, "batch_size": 16, "time_budget_s": 600.0, "warmup_steps": 100},
    }
