"""``damage_seg``: a semantic damage segmenter that a CPU can train on a project's own labels.
The shared LRASPP-MobileNetV3 segmenter (:mod:`models.semseg`) over background + damage +
fake damage, predicting only the classes it saw labelled; ``config`` holds its presets (crops
of a larger photo) and ``stage`` registers it."""

from models.damage_seg.config import DamageSegConfig
from models.damage_seg.stage import DamageSegStage

__all__ = ["DamageSegConfig", "DamageSegStage"]
