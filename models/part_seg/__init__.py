"""``part_seg``: a fast semantic part segmenter that a CPU can train on a project's own
labels. It is the shared LRASPP-MobileNetV3 segmenter (:mod:`models.semseg`) over background
+ the taxonomy's part classes; ``postprocess`` adds what parts need (sided pairs settled by
position, the small-part windows, the guided filter); ``stage`` registers it as ``part_seg``,
set up by ``config``. Only the network and the stages use torch, and only inside their
functions."""

from models.part_seg.config import PartSegConfig
from models.part_seg.postprocess import (
    TRACE_MAX_SIDE,
    components,
    flip_sample,
    guided_filter,
    label_map,
    label_map_instances,
    mirror_lut,
    small_part_windows,
    traced_size,
)
from models.part_seg.stage import PartSegStage
from models.semseg.net import EMBED_DIM, MEAN, STD, build_net, dice_loss

__all__ = [
    "EMBED_DIM",
    "MEAN",
    "STD",
    "TRACE_MAX_SIDE",
    "PartSegConfig",
    "PartSegStage",
    "build_net",
    "components",
    "dice_loss",
    "flip_sample",
    "guided_filter",
    "label_map",
    "label_map_instances",
    "mirror_lut",
    "small_part_windows",
    "traced_size",
]
