"""The ``damage_seg`` stage's settings and presets: the shared semantic-segmentation settings
(:class:`models.semseg.config.SemSegConfig`) at a larger working size, trained on crops."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from models.semseg.config import SemSegConfig


@dataclass
class DamageSegConfig(SemSegConfig):
    #: measured on the Bilgi valid split after 10 minutes of training on a 2-core CPU: the
    #: whole photo at 384 px (511 steps) reached damage mask AP50 0.024, random 256 px crops
    #: of a 512 px photo (416 steps) 0.004; the crops see more detail but less context and
    #: fewer photos a minute (bench/bench_damage_seg.py)
    size: int = 384
    crop: int | None = None
    #: most crops are centred on labelled damage (a photo is mostly undamaged paint)
    focus_p: float = 0.75
    time_budget_s: float | None = 2700.0
    #: damage is smaller than parts: a component of 0.05% of the traced photo (205 px at
    #: 640 x 640) is kept
    min_area_frac: float = 0.0005
    tolerance: float = 1.0
    #: a random 96 of the training photos re-measure the BatchNorms (all 400 took 181 s at
    #: 512 px on a busy 2-core CPU, as long as the training it followed)
    batch_norm_photos: int | None = 96

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "tiny": {
            "size": 96,
            "crop": 64,
            "batch_size": 4,
            "epochs": 8,
            "time_budget_s": None,
            "warmup_steps": 2,
            # random weights score low: the tests want every instance
            "score_threshold": 0.0,
            "flip_tta": False,
        },
        "cpu": {"size": 384, "crop": None, "batch_size": 8, "time_budget_s": 2700.0},
        "gpu": {
            "size": 768,
            "crop": 384,
            "batch_size": 16,
            "time_budget_s": 1800.0,
            "warmup_steps": 100,
        },
        # the names every stage answers to (the UI's and the rounds' presets)
        "small": {"size": 384, "crop": None, "batch_size": 8, "time_budget_s": 2700.0},
        "base": {
            "size": 768,
            "crop": 384,
            "batch_size": 16,
            "time_budget_s": 1800.0,
            "warmup_steps": 100,
        },
    }
