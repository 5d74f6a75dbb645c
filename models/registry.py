"""Stage registry: ``build(name, config)`` and ``load(path)``, in the manner of timm.

Built-in stages are listed here as ``module:Class`` strings so that importing the registry
does not import torch, Ultralytics or segment-anything; a stage module is imported the
first time its name is built. ``@register_stage("name")`` adds further stages.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from models.base import CheckpointError, Stage, StageConfig, StageError

_BUILTIN: dict[str, str] = {
    "albert": "models.albert.stage:AlbertStage",
    "assist_net": "models.assist.learned:AssistNetStage",
    "yolo_seg": "models.yolo_seg:YoloSegStage",
    "part_classifier": "models.part_classifier:PartClassifierStage",
    "pipeline": "models.pipeline:PipelineStage",
    "mask_rcnn": "models.mask_rcnn:MaskRCNNStage",
}
_REGISTRY: dict[str, type] = {}


def register_stage(name: str):
    """Class decorator: make a stage buildable as ``build(name, ...)``."""

    def deco(cls: type) -> type:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def stage_names() -> list[str]:
    return sorted(set(_BUILTIN) | set(_REGISTRY))


def stage_class(name: str) -> type:
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name not in _BUILTIN:
        raise StageError(f"unknown model stage {name!r}; valid names: {', '.join(stage_names())}")
    module, cls_name = _BUILTIN[name].split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    _REGISTRY.setdefault(name, cls)
    return cls


def config_class(name: str) -> type[StageConfig]:
    return stage_class(name).config_class


def build(
    name: str, config: StageConfig | str | dict[str, Any] | None = None, **kwargs: Any
) -> Stage:
    """A stage with fresh (random or user-supplied) weights.

    ``config`` is a config object, a preset name (``tiny``/``small``/``base``) or a dict of
    overrides on ``tiny``. Extra keyword arguments go to the stage's constructor (e.g. taxonomy).
    """
    cls = stage_class(name)
    cfg_cls = cls.config_class
    if config is None:
        config = cfg_cls.from_preset("tiny")
    elif isinstance(config, str):
        config = cfg_cls.from_preset(config)
    elif isinstance(config, dict):
        config = cfg_cls.from_preset(
            config.get("preset", "tiny"), **{k: v for k, v in config.items() if k != "preset"}
        )
    return cls(config, **kwargs)


def load(path: str | Path, **kwargs: Any) -> Stage:
    """Load any stage's single-file artifact, dispatching on the stage it records."""
    from models.base import load_checkpoint

    payload = load_checkpoint(path)
    name = payload.get("stage")
    try:
        cls = stage_class(name)
    except StageError as e:
        raise CheckpointError(
            f"model file {path} names stage {name!r}, which this version does not know"
        ) from e
    return cls.load(path, **kwargs)
