"""``save``/``load`` for stages whose weights are one torch module (ALBERT, the part
classifier, Mask R-CNN, assist_net).

The file is the one of :func:`models.base.save_checkpoint`: config, class counts, state
dict and a stage's extras. A subclass says what differs through class attributes and small
hooks, so every such stage checks the same things on load and raises the same errors.
torch is not imported here: the stage's own constructor imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

from core.taxonomy import Taxonomy, default_taxonomy
from models.base import (
    StageBase,
    StageConfig,
    load_checkpoint,
    restore_weights,
    save_checkpoint,
    taxonomy_counts,
)

_T = TypeVar("_T", bound="TorchStage")


class TorchStage(StageBase):
    """A stage holding its weights in one ``nn.Module`` (``self.net`` unless
    :attr:`module_attr` names another attribute) and built as ``cls(config, taxonomy)``."""

    #: the attribute that holds the module whose state dict is the checkpoint's weights
    module_attr: ClassVar[str] = "net"
    #: the architecture named in the error when a file's weights do not fit
    architecture: ClassVar[str] = "this stage's architecture"

    config: StageConfig
    taxonomy: Taxonomy | None

    @classmethod
    def checkpoint_counts(cls, taxonomy: Taxonomy | None) -> dict[str, int]:
        """Class counts a file is made for, written on save and checked on load: by default
        the taxonomy's count per group, the size of the heads."""
        return taxonomy_counts(taxonomy or default_taxonomy())

    def checkpoint_extra(self) -> dict[str, Any]:
        """What the file carries besides the weights (read back by :meth:`restore_extra`)."""
        return {}

    def restore_extra(self, extra: dict[str, Any]) -> None:
        """Take back what :meth:`checkpoint_extra` stored; called after the weights load."""

    @classmethod
    def loaded_config(cls, saved: dict[str, Any], device: str, **options: Any) -> StageConfig:
        """The config a loaded stage runs with: the file's, on ``device``, without start
        weights (:attr:`start_weight_fields`: the checkpoint carries the trained weights, so a
        loaded stage must not need those files any more). ``options`` are the keyword options given to :meth:`load`."""
        cleared = dict.fromkeys(cls.start_weight_fields)
        return cls.config_class.from_dict({**saved, "device": device, **cleared})

    warm_startable = True

    def warm_start(self, path: str | Path) -> None:
        payload = load_checkpoint(
            path, stage=self.name, class_counts=self.checkpoint_counts(self.taxonomy)
        )
        self._take_weights(payload, path)

    def _take_weights(self, payload: dict[str, Any], path: str | Path) -> None:
        """The weights and extras of a checkpoint ``payload`` read from ``path``."""
        restore_weights(
            getattr(self, self.module_attr), payload["state_dict"], path, self.architecture
        )
        self.restore_extra(payload.get("extra") or {})

    def save(self, path: str | Path) -> Path:
        module = getattr(self, self.module_attr)
        return save_checkpoint(
            path,
            stage=self.name,
            config=self.config,
            class_counts=self.checkpoint_counts(self.taxonomy),
            state_dict={k: v.cpu() for k, v in module.state_dict().items()},
            extra=self.checkpoint_extra(),
        )

    @classmethod
    def load(
        cls: type[_T],
        path: str | Path,
        taxonomy: Taxonomy | None = None,
        device: str = "auto",
        **options: Any,
    ) -> _T:
        """A stage from a file of :meth:`save`. Raises CheckpointError naming the file when it
        is missing, corrupt, of another stage, made for other class counts, or its weights do
        not fit."""
        taxonomy = taxonomy or default_taxonomy()
        payload = load_checkpoint(
            path, stage=cls.name, class_counts=cls.checkpoint_counts(taxonomy)
        )
        stage = cls(cls.loaded_config(payload["config"], device, **options), taxonomy)
        stage._take_weights(payload, path)
        return stage
