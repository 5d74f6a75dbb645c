"""The ``damage_seg`` stage's settings and presets: the shared semantic-segmentation settings
(:class:`models.semseg.config.SemSegConfig`) at a larger working size, trained on crops."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from models.semseg.config import SemSegConfig


@dataclass
class DamageSegConfig(SemSegConfig):
    #: a thin scratch vanishes when a photo is squashed to part_seg's 192 px: damage works on
    #: a larger photo, trains on crops of it and predicts on all of it
    size: int = 512
    crop: int | None = 256
    #: most crops are centred on labelled damage (a photo is mostly undamaged paint)
    focus_p: float = 0.75
    time_budget_s: float | None = 1800.0
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
        "cpu": {"size": 512, "crop": 256, "batch_size": 8, "time_budget_s": 1800.0},
        "gpu": {
            "size": 768,
            "crop": 384,
            "batch_size": 16,
            "time_budget_s": 1800.0,
            "warmup_steps": 100,
        },
        # the names every stage answers to (the UI's and the rounds' presets)
        "small": {"size": 512, "crop": 256, "batch_size": 8, "time_budget_s": 1800.0},
        "base": {
            "size": 768,
            "crop": 384,
            "batch_size": 16,
            "time_budget_s": 1800.0,
            "warmup_steps": 100,
        },
    }
