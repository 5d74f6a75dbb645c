"""The bar a version must clear on the held-out split before it may pre-annotate.

A first version beats nothing, so "better than the current one" is no quality bar: a
segmenter that scores mask AP50 0.00 would draw "Rear bumper 0.52" round a dent on every
photo. Each stage declares ``(metric, minimum)`` (``StageBase.pre_annotate_minimum``; the
setting ``pre_annotate_minimum`` overrides the number per stage). A version below it is
kept and shown, never promoted automatically and never writes pending predictions; a lead
may still promote it by hand once they confirm what annotators will then see.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.config import get_settings
from core.metrics import flatten_metrics
from db.models import ModelVersion

#: ``metrics["promotion"]`` key set when a lead promoted a version below its bar by hand.
CONFIRMED_BELOW_BAR = "confirmed_below_bar"


@dataclass(frozen=True)
class Bar:
    metric: str
    minimum: float

    @property
    def short(self) -> str:
        """``AP50`` for ``holdout.part.coco.AP50``."""
        return self.metric.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Verdict:
    """Whether a version clears its stage's bar, and the sentence that says so."""

    passes: bool
    sentence: str
    value: float | None = None


def bar_for(stage: str) -> Bar | None:
    """``stage``'s bar to pre-annotate, or None when it has none (or is unknown)."""
    from models.base import StageError
    from models.registry import stage_info

    try:
        declared = stage_info(stage).pre_annotate_minimum
    except StageError:
        return None
    if declared is None:
        return None
    metric, minimum = declared
    minimum = float(get_settings().pre_annotate_minimum.get(stage, minimum))
    return Bar(metric, minimum) if minimum > 0 else None  # 0 turns the stage's bar off


def verdict(stage: str, metrics: dict[str, Any] | None) -> Verdict:
    """The bar's verdict on a version's ``metrics`` (held-out figures under ``holdout``)."""
    bar = bar_for(stage)
    if bar is None:
        return Verdict(True, f"{stage} has no bar to pre-annotate")
    value = flatten_metrics(metrics or {}).get(bar.metric)
    if value is None:
        return Verdict(
            False,
            f"not measured on held-out photos, so below the bar to pre-annotate "
            f"({bar.short} >= {bar.minimum:.2f})",
        )
    if value < bar.minimum:
        return Verdict(
            False,
            f"trained, below the bar to pre-annotate: {bar.short} {value:.2f} < {bar.minimum:.2f}",
            value,
        )
    return Verdict(
        True, f"clears the bar to pre-annotate: {bar.short} {value:.2f} >= {bar.minimum:.2f}", value
    )


def may_pre_annotate(mv: ModelVersion) -> Verdict:
    """Whether ``mv`` may write pending predictions: it clears its bar, or a lead promoted it
    by hand after confirming it does not."""
    said = verdict(mv.stage, mv.metrics)
    if said.passes:
        return said
    if mv.promoted and (mv.metrics or {}).get("promotion", {}).get(CONFIRMED_BELOW_BAR):
        return Verdict(True, f"{said.sentence}; promoted by hand after confirmation", said.value)
    return said


def below_bar_warning(mv: ModelVersion) -> str | None:
    """What a lead must confirm before promoting ``mv`` by hand, or None when it clears."""
    said = verdict(mv.stage, mv.metrics)
    if said.passes:
        return None
    return (
        f"{mv.name} is {said.sentence}. Promoted, it pre-annotates every photo of the queue, "
        "and annotators will see its polygons and classes as suggestions to accept or fix. "
        "Confirm to promote it anyway."
    )


def measured_lines(mv: ModelVersion) -> list[str]:
    """What a new version measured on the held-out split and where it stands against its
    bar, as ``panelbeater train`` prints it."""
    held = flatten_metrics((mv.metrics or {}).get("holdout") or {})
    if not held:
        lines = [f"{mv.name}: no held-out figures (no labelled held-out photos to measure on)"]
    else:
        shown = {k: v for k, v in held.items() if k.endswith(("AP50", "AP", "miou", "f1", "iou"))}
        figures = ", ".join(f"{k} {v:.3f}" for k, v in sorted((shown or held).items()))
        lines = [f"{mv.name} held-out: {figures}"]
    lines.append(f"{mv.name} {verdict(mv.stage, mv.metrics).sentence}")
    return lines


def per_class_figures(stage: str, metrics: dict[str, Any] | None) -> dict[int, float]:
    """Class id -> the held-out figure of the stage's bar measured per class (``AP50`` ->
    ``per_class_AP50`` beside it); empty when the stage has no bar or none was measured."""
    bar = bar_for(stage)
    if bar is None:
        return {}
    parent, _, name = bar.metric.rpartition(".")
    prefix = f"{parent}.per_class_{name}."
    return {
        int(key.removeprefix(prefix)): float(value)
        for key, value in flatten_metrics(metrics or {}).items()
        if key.startswith(prefix) and key.removeprefix(prefix).isdigit()
    }


def withheld_classes(mv: ModelVersion) -> dict[int, float]:
    """Class id -> held-out figure of the classes ``mv`` does not pre-annotate: those below
    the stage's bar while the version as a whole clears it. A version below the bar as a
    whole pre-annotates nothing, or everything once a lead confirmed it by hand; a class with
    no held-out ground truth was not measured and is not withheld."""
    if not verdict(mv.stage, mv.metrics).passes:
        return {}
    bar = bar_for(mv.stage)
    return {
        cid: value
        for cid, value in sorted(per_class_figures(mv.stage, mv.metrics).items())
        if bar is not None and value < bar.minimum
    }


def withheld_sentence(mv: ModelVersion, class_name: Callable[[int], str]) -> str | None:
    """What the dashboard says about ``mv``'s withheld classes, or None when there are none."""
    withheld = withheld_classes(mv)
    bar = bar_for(mv.stage)
    if not withheld or bar is None:
        return None
    listed = ", ".join(f"{class_name(cid)} ({value:.2f})" for cid, value in withheld.items())
    n = len(withheld)
    return (
        f"{mv.name} does not pre-annotate {n} class{'es' if n != 1 else ''} below the bar "
        f"({bar.short} < {bar.minimum:.2f} on held-out photos): {listed}"
    )
