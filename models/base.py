"""The small protocol every model stage speaks, its configs, data and checkpoint files.

A stage turns photos into :class:`core.instances.ImageResult` and can be trained on a
:class:`TrainingSet`. Images are ``(H, W, 3)`` uint8 RGB numpy arrays; every coordinate
that comes back is in original image pixels. torch is imported lazily, so importing this
module stays cheap (the UI and the CLI import it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from core.files import atomic_write
from core.instances import ImageResult
from core.presets import DEFAULT_PRESET, Preset
from core.taxonomy import Taxonomy
from models.data import Progress, TrainingSet

#: Where a trained model file goes (None: the stage keeps it in memory only).
OutPath = str | Path | None


def end_epoch(
    history: list[float], losses: list[float], epoch: int, epochs: int, progress: Progress | None
) -> None:
    """Append the mean of the epoch's batch ``losses`` to ``history`` and report epoch
    ``epoch + 1`` of ``epochs`` with that loss to ``progress``."""
    history.append(float(np.mean(losses)))
    if progress:
        progress(epoch + 1, epochs, {"epoch": epoch + 1, "loss": history[-1]})


class CheckpointError(RuntimeError):
    """A trained-model file that cannot be used: missing, corrupt, or made for other classes."""


class StageError(ValueError):
    """A stage asked for by a wrong name or configured with impossible values."""


# -- configs -------------------------------------------------------------------


@dataclass
class StageConfig:
    """Fields every stage config has; stages subclass it and fill ``PRESETS``.

    ``PRESETS[name]`` holds the overrides of that preset: ``tiny`` for CPU tests, ``small``,
    ``base`` for a GPU.
    """

    preset: str = DEFAULT_PRESET
    device: str = "auto"
    epochs: int = 1
    batch_size: int = 2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    num_workers: int = 0

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {p.value: {} for p in Preset}

    @classmethod
    def from_preset(cls, preset: str = DEFAULT_PRESET, **overrides: Any) -> StageConfig:
        if preset not in cls.PRESETS:
            raise StageError(
                f"{cls.__name__}: unknown preset {preset!r}; choose one of {', '.join(cls.PRESETS)}"
            )
        known = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - known)
        if bad:
            raise StageError(f"{cls.__name__}: unknown option(s) {bad}; known: {sorted(known)}")
        values = {**cls.PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        return cls(preset=preset, **values)

    @classmethod
    def parse_options(cls, pairs: Sequence[str]) -> dict[str, Any]:
        """``["lr=0.01", "imgsz=320"]`` (the CLI's ``--set``) as typed config overrides.

        Values are read as YAML scalars (``0.01``, ``true``, ``null``, ``[320, 320]``) and must
        fit the field's type. Raises StageError naming the key, listing the known keys for an
        unknown one.
        """
        known = {f.name: f for f in fields(cls)}
        out: dict[str, Any] = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            key = key.strip()
            if not sep or not key:
                raise StageError(f"--set {pair!r}: write it as key=value, e.g. --set lr=0.001")
            if key not in known:
                raise StageError(
                    f"--set {key}: {cls.__name__} has no such option; known: {', '.join(sorted(known))}"
                )
            out[key] = _typed(cls, known[key], raw.strip())
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_(self, **changes: Any) -> StageConfig:
        return replace(self, **changes)


def _typed(cls: type, f: Any, raw: str) -> Any:
    """``raw`` as a value of the config field ``f`` (whose annotation is a string here)."""
    import yaml

    kind = str(f.type)
    optional = "None" in kind
    try:
        value = yaml.safe_load(raw) if raw else None
    except yaml.YAMLError:
        value = raw
    if value is None and optional:
        return None
    base = kind.replace("| None", "").replace("None |", "").strip()
    if base == "str":
        return raw
    if base == "bool" and isinstance(value, bool):
        return value
    if base == "int" and isinstance(value, int) and not isinstance(value, bool):
        return value
    if base == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base.startswith(("tuple", "list")) and isinstance(value, list):
        return tuple(value) if base.startswith("tuple") else value
    if base not in ("str", "bool", "int", "float") and not base.startswith(("tuple", "list")):
        return value
    raise StageError(f"--set {f.name}={raw}: {cls.__name__}.{f.name} takes a value of type {kind}")


@dataclass
class TrainResult:
    """Where a training run wrote its single-file artifact, and what it measured."""

    artifact_path: Path
    metrics: dict[str, Any] = field(default_factory=dict)


# -- data ------------------------------------------------------------------------


# -- protocol --------------------------------------------------------------------


@runtime_checkable
class Stage(Protocol):
    """What the registry builds and loads. ``name`` is the registry name (``albert``,
    ``yolo_seg``...), set by ``@register_stage``.

    A stage class declares its config class and capabilities once, as class attributes;
    callers ask ``models.registry`` (``stage_info``, ``prompted_stages``...) rather than
    listing stage names. Constructors take ``(config=None, taxonomy=None)``; ``load`` takes
    keyword options (``device``, ``cpu_int8``...) and ignores those it has no use for.
    """

    name: ClassVar[str]
    config_class: ClassVar[type[StageConfig]]
    title: ClassVar[str]
    prompted: ClassVar[bool]
    pre_annotates: ClassVar[bool]
    built_from: ClassVar[tuple[str, ...]]
    config: StageConfig

    def predict(self, images: list[np.ndarray]) -> list[ImageResult]: ...

    def train(
        self,
        dataset: TrainingSet,
        config: StageConfig | None = None,
        progress: Progress | None = None,
        out_path: str | Path | None = None,
    ) -> TrainResult: ...

    def evaluate(self, data: TrainingSet, progress: Progress | None = None) -> dict[str, Any]: ...

    def save(self, path: str | Path) -> Path: ...

    @classmethod
    def load(
        cls,
        path: str | Path,
        taxonomy: Taxonomy | None = None,
        device: str = "auto",
        **options: Any,
    ) -> Stage: ...


class StageBase:
    """Defaults a stage class inherits; it overrides what differs. Read the capabilities
    through ``models.registry`` (``stage_info(name)``), which also covers stage classes
    registered without this base."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[StageConfig]] = StageConfig
    #: what a person calls it (menus, reports)
    title: ClassVar[str] = ""
    #: it needs a person's box or clicks to predict (assist_net): trained, evaluated and
    #: promoted like the others, but it never runs over photos on its own
    prompted: ClassVar[bool] = False
    #: it runs over unlabelled photos on its own and its predictions are stored
    pre_annotates: ClassVar[bool] = True
    #: the registered stages it is made of (the pipeline: YOLO parts + the part classifier);
    #: a retraining round trains those on their own
    built_from: ClassVar[tuple[str, ...]] = ()
    #: config fields naming local weights to start training from (ImageNet, COCO, a ViT...);
    #: ``train --weights`` fills the first
    start_weight_fields: ClassVar[tuple[str, ...]] = ()
    #: the kind of weights file (``models.weights.KINDS``) those fields take; ``train
    #: --weights`` refuses a file of another kind before training
    start_weight_kind: ClassVar[str | None] = None
    #: it can continue training from an earlier version of itself (:meth:`warm_start`)
    warm_startable: ClassVar[bool] = False
    #: taxonomy groups that :meth:`evaluate` measures by default
    eval_groups: ClassVar[tuple[str, ...]] = ("damage", "part")
    #: dotted paths into a version's metrics, first found wins: what "better" means when a
    #: new version is compared with the one it would replace (higher is better)
    primary_metrics: ClassVar[tuple[str, ...]] = ()
    #: another stage doing the same job (or several): with no promoted version of its own, a
    #: new version must beat the rival's promoted one (the strongest of them) on the same
    #: primary metric
    rival: ClassVar[str | tuple[str, ...] | None] = None
    #: a part stage whose promoted version (else its rival's) says which part each predicted
    #: instance sits on (``data["part"]``, :mod:`core.damage_parts`); None: no such column
    parts_from: ClassVar[str | None] = None
    #: ``(name, "module:Class")`` of the weight-free back end the stage's first version
    #: replaces (GrabCut for assist_net): it must beat that back end, measured on the same
    #: held-out photos
    weight_free_baseline: ClassVar[tuple[str, str] | None] = None
    #: with no promoted version the stage's newest version serves anyway (the assistance
    #: takes the newest assist_net), so a first version that lost is not kept
    serves_unpromoted: ClassVar[bool] = False
    #: its versions store an image embedding per photo; selection takes the lowest rank
    #: that covers the whole pool (None: no embeddings)
    embedding_rank: ClassVar[int | None] = None
    #: a retraining round trains it when no stage is named and none is promoted yet
    round_default: ClassVar[bool] = False
    #: ``(metric path, minimum)`` a version must reach on the held-out split before it may
    #: pre-annotate (setting ``pre_annotate_minimum`` overrides the number per stage);
    #: None: no bar (a prompted stage is held to its weight-free baseline instead)
    pre_annotate_minimum: ClassVar[tuple[str, float] | None] = None

    def predict(self, images: list[np.ndarray]) -> list[ImageResult]:
        raise NotImplementedError

    def train(
        self,
        dataset: TrainingSet,
        config: StageConfig | None = None,
        progress: Progress | None = None,
        out_path: OutPath = None,
    ) -> TrainResult:
        """Train on ``dataset`` with ``config`` (default: the stage's own, else it becomes the
        stage's config) and write the model file to ``out_path`` when given."""
        self.config = config or self.config
        return self.fit(dataset, self.config, progress, out_path)

    def fit(
        self, dataset: TrainingSet, cfg: StageConfig, progress: Progress | None, out_path: OutPath
    ) -> TrainResult:
        """The stage's own training (:meth:`train` has settled the config)."""
        raise NotImplementedError

    def warm_start(self, path: str | Path) -> None:
        """Take the weights of an earlier version's file (same stage, same classes), so the
        next :meth:`train` fine-tunes it rather than starting from scratch."""
        raise StageError(f"{self.name} cannot continue from an earlier version; train from scratch")

    @classmethod
    def measure_backend(
        cls, backend: Any, data: TrainingSet, progress: Progress | None = None
    ) -> dict[str, Any]:
        """Held-out figures of the :attr:`weight_free_baseline` back end, measured as
        :meth:`evaluate` measures the stage, so the two compare."""
        raise NotImplementedError(f"{cls.__name__} declares no weight-free baseline")

    def evaluate(self, data: TrainingSet, progress: Progress | None = None) -> dict[str, Any]:
        """Per-group classification figures and COCO mask AP of :meth:`predict` against the
        labels of ``data`` (see :func:`models.metrics.evaluate_predictions`)."""
        from models.metrics import evaluate_predictions

        return evaluate_predictions(self.predict, data, self.eval_groups, progress=progress)


# -- device ------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> tuple[Any, bool]:
    """``auto`` -> CUDA with mixed precision when present, else CPU. Returns (torch.device, amp)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StageError(
            "device 'cuda' was asked for but no CUDA GPU is visible; use --device cpu or auto"
        )
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise StageError(f"device {device!r} is not one of auto, cpu, cuda")
    dev = torch.device(device)
    return dev, dev.type == "cuda"


# -- checkpoints --------------------------------------------------------------------


def save_checkpoint(
    path: str | Path,
    *,
    stage: str,
    config: StageConfig,
    class_counts: dict[str, int],
    state_dict: Any,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write one ``torch.save`` file, all or nothing (:func:`core.files.atomic_write`)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": "panelbeater-stage/1",
        "stage": stage,
        "config": config.to_dict(),
        "class_counts": dict(class_counts),
        "state_dict": state_dict,
        "extra": extra or {},
    }
    with atomic_write(path) as f:
        torch.save(payload, f)
    return path


def load_checkpoint(
    path: str | Path, *, stage: str | None = None, class_counts: dict[str, int] | None = None
) -> dict[str, Any]:
    """Read a file written by :func:`save_checkpoint`, checking stage and class counts.

    Raises :class:`CheckpointError` with a sentence naming the file and what to do.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"model file {path} does not exist; train the stage first (`panelbeater train STAGE`) "
            f"or point the setting at an existing file"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a truncated/garbled file
        raise CheckpointError(
            f"model file {path} is corrupt or not a PyTorch file ({type(e).__name__}: {e}); "
            f"delete it and train again"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != "panelbeater-stage/1":
        raise CheckpointError(
            f"model file {path} was not written by Panelbeater (no 'panelbeater-stage/1' header); "
            f"train the stage with `panelbeater train` to get a usable file"
        )
    if stage is not None and payload.get("stage") != stage:
        raise CheckpointError(
            f"model file {path} holds stage {payload.get('stage')!r}, not {stage!r}; "
            f"load it with the stage it was trained for"
        )
    if class_counts is not None:
        have = payload.get("class_counts", {})
        wrong = {k: (have.get(k), v) for k, v in class_counts.items() if have.get(k) != v}
        if wrong:
            detail = ", ".join(
                f"{k}: file has {a}, taxonomy has {b}" for k, (a, b) in wrong.items()
            )
            raise CheckpointError(
                f"model file {path} was trained for other class counts ({detail}); "
                f"retrain it on this project's taxonomy"
            )
    return payload


def restore_weights(module: Any, state_dict: dict, path: str | Path, architecture: str) -> None:
    """Load a checkpoint's weights into ``module`` and switch it to eval mode.

    Raises CheckpointError naming the file when the weights do not fit the architecture.
    """
    try:
        module.load_state_dict(state_dict)
    except RuntimeError as e:
        raise CheckpointError(
            f"model file {path} does not fit {architecture} ({e}); retrain it"
        ) from e
    module.eval()


def taxonomy_counts(taxonomy: Taxonomy) -> dict[str, int]:
    """Class count per group, the shape contract between a checkpoint and its heads."""
    return {g: len(taxonomy.group(g)) for g in ("damage", "fake", "part")}
