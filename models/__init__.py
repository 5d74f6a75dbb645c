"""Model stages behind one protocol (``models.base``) and a registry (``models.registry``).

Heavy libraries (torch, Ultralytics, segment-anything) are imported inside the stage
modules only, when a stage is built.
"""

from models.base import CheckpointError, StageConfig, StageError, TrainingSet, TrainResult
from models.registry import build, load, register_stage, stage_names

__all__ = [
    "CheckpointError",
    "StageConfig",
    "StageError",
    "TrainResult",
    "TrainingSet",
    "build",
    "load",
    "register_stage",
    "stage_names",
]
