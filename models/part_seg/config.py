"""The ``part_seg`` stage's settings and presets: the shared semantic-segmentation settings
(:class:`models.semseg.config.SemSegConfig`) plus its own inference options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from models.semseg.config import SemSegConfig


@dataclass
class PartSegConfig(SemSegConfig):
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
        "cpu": {"size": 192, "batch_size": 8, "time_budget_s": 720.0},
        "gpu": {"size": 448, "batch_size": 16, "time_budget_s": 600.0, "warmup_steps": 100},
        # the names every stage answers to (the UI's and the rounds' presets)
        "small": {"size": 192, "batch_size": 8, "time_budget_s": 720.0},
        "base": {"size": 448, "batch_size": 16, "time_budget_s": 600.0, "warmup_steps": 100},
    }
