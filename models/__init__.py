"""Model stages behind one protocol (``models.base``) and a registry (``models.registry``).

Heavy libraries (torch, Ultralytics, segment-anything) are imported inside the stage
modules only, when a stage is built.
"""

from models.base import CheckpointError, StageConfig, StageError, TrainResult
from models.data import TrainingSet
from models.registry import (
    StageInfo,
    build,
    load,
    pre_annotating_stages,
    prompted_stages,
    register_stage,
    stage_info,
    stage_infos,
    stage_names,
)

__all__ = [
    "CheckpointError",
    "StageConfig",
    "StageError",
    "StageInfo",
    "TrainResult",
    "TrainingSet",
    "build",
    "load",
    "pre_annotating_stages",
    "prompted_stages",
    "register_stage",
    "stage_info",
    "stage_infos",
    "stage_names",
]
