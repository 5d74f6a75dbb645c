"""``part_seg``: a fast semantic part segmenter that a CPU can train on a project's own
labels. torchvision's LRASPP-MobileNetV3-Large (``net``) labels every pixel background or one
of the taxonomy's part classes; ``postprocess`` turns its arg-max map into Instances (sided
pairs settled by position) and labelled instances into training maps; ``stage`` trains,
predicts and measures it as the registered ``part_seg`` stage, set up by ``config``. Only
``net`` and ``stage`` use torch, and only inside their functions."""

from models.part_seg.config import PartSegConfig
from models.part_seg.net import EMBED_DIM, MEAN, STD, build_net, dice_loss
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
