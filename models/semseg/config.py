"""Settings every LRASPP semantic segmenter shares (``part_seg``, ``damage_seg``): sizes, the
training clock, augmentation, crops and tracing. A stage's own config subclasses it and
fills its presets."""

from __future__ import annotations

from dataclasses import dataclass

from models.base import StageConfig


@dataclass
class SemSegConfig(StageConfig):
    #: photos are resized to size x size for training and prediction (the working size)
    size: int = 192
    #: training samples are random crop x crop windows of the working size (None: the whole
    #: photo); prediction always sees the whole photo at the working size
    crop: int | None = None
    #: the share of crops centred on a labelled (non-background) pixel, the rest anywhere
    focus_p: float = 0.0
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
    #: pieces of one class closer than about twice this (traced pixels) are one instance
    merge_px: int = 0
    #: Douglas-Peucker tolerance of the traced polygons, in traced pixels
    tolerance: float = 1.5
    #: instances whose mean class probability is below this are dropped
    score_threshold: float = 0.5
    #: average the probabilities of the photo and of its mirror (sided classes swapped)
    flip_tta: bool = True
    #: the most training photos the closing BatchNorm re-measurement passes over (None: all;
    #: at 512 px it cost 181 s for 400 photos on a busy 2-core CPU)
    batch_norm_photos: int | None = None
    #: local torchvision MobileNetV3-Large weights (e.g. ImageNet) for the backbone
    backbone_weights: str | None = None
