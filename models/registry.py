"""Stage registry: ``build(name, config)``, ``load(path)`` and what each stage can do, in
the manner of timm.

Built-in stages are listed here as ``module:Class`` strings; a stage module is imported
the first time its name is built or asked about. Stage modules import torch, Ultralytics
and segment-anything inside their functions, so asking what a stage can do
(:func:`stage_info`, :func:`prompted_stages`...) stays cheap. ``@register_stage("name")``
adds further stages.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.presets import DEFAULT_PRESET
from models.base import CheckpointError, Stage, StageBase, StageConfig, StageError

#: in the order menus list them
_BUILTIN: dict[str, str] = {
    "yolo_seg": "models.yolo_seg:YoloSegStage",
    "part_classifier": "models.part_classifier:PartClassifierStage",
    "albert": "models.albert.stage:AlbertStage",
    "mask_rcnn": "models.mask_rcnn:MaskRCNNStage",
    "assist_net": "models.assist.learned:AssistNetStage",
    "part_seg": "models.part_seg.stage:PartSegStage",
    "damage_seg": "models.damage_seg.stage:DamageSegStage",
    "pipeline": "models.pipeline:PipelineStage",
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


@dataclass(frozen=True)
class StageInfo:
    """What a stage class declares about itself (see :class:`models.base.StageBase`)."""

    name: str
    title: str
    config_class: type[StageConfig]
    #: needs a person's box or clicks to predict; never pre-annotates
    prompted: bool
    #: runs over unlabelled photos on its own
    pre_annotates: bool
    #: the registered stages it is made of
    built_from: tuple[str, ...]
    primary_metrics: tuple[str, ...] = ()
    rival: str | tuple[str, ...] | None = None
    weight_free_baseline: tuple[str, str] | None = None
    serves_unpromoted: bool = False
    embedding_rank: int | None = None
    round_default: bool = False
    pre_annotate_minimum: tuple[str, float] | None = None
    parts_from: str | None = None

    @property
    def rivals(self) -> tuple[str, ...]:
        """The rival stages, in the order declared (none: empty)."""
        if self.rival is None:
            return ()
        return (self.rival,) if isinstance(self.rival, str) else tuple(self.rival)


def stage_info(name: str) -> StageInfo:
    """The capabilities of stage ``name``; raises StageError listing the valid names.

    A class registered without :class:`~models.base.StageBase` gets its defaults."""
    cls = stage_class(name)

    def declared(attr: str) -> Any:
        return getattr(cls, attr, getattr(StageBase, attr))

    return StageInfo(
        name=name,
        title=declared("title") or name,
        config_class=cls.config_class,
        prompted=bool(declared("prompted")),
        pre_annotates=bool(declared("pre_annotates")),
        built_from=tuple(declared("built_from")),
        primary_metrics=tuple(declared("primary_metrics")),
        rival=declared("rival"),
        weight_free_baseline=declared("weight_free_baseline"),
        serves_unpromoted=bool(declared("serves_unpromoted")),
        embedding_rank=declared("embedding_rank"),
        round_default=bool(declared("round_default")),
        pre_annotate_minimum=declared("pre_annotate_minimum"),
        parts_from=declared("parts_from"),
    )


def stage_infos() -> list[StageInfo]:
    """Every stage's :class:`StageInfo`: the built-in ones in menu order, then the others."""
    extra = sorted(set(_REGISTRY) - set(_BUILTIN))
    return [stage_info(n) for n in [*_BUILTIN, *extra]]


def prompted_stages() -> list[str]:
    """Names of the stages that answer a person's box or clicks (assist_net), sorted."""
    return sorted(i.name for i in stage_infos() if i.prompted)


def pre_annotating_stages() -> list[str]:
    """Names of the stages that run over unlabelled photos on their own, sorted."""
    return sorted(i.name for i in stage_infos() if i.pre_annotates)


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
        config = cfg_cls.from_preset()
    elif isinstance(config, str):
        config = cfg_cls.from_preset(config)
    elif isinstance(config, dict):
        config = cfg_cls.from_preset(
            config.get("preset", DEFAULT_PRESET),
            **{k: v for k, v in config.items() if k != "preset"},
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
