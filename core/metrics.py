"""Nested metric dicts (``{"holdout": {"part": {"f1": 0.4}}}``) read as flat dotted keys,
the way the registry compares versions and the plots draw them."""

from __future__ import annotations

from collections.abc import Mapping


def flatten_metrics(metrics: Mapping[str, object] | None, prefix: str = "") -> dict[str, float]:
    """``{"holdout.part.f1": 0.4, ...}``: the numbers of ``metrics`` under dotted keys;
    booleans, text and lists are left out."""
    out: dict[str, float] = {}
    for k, v in (metrics or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_metrics(v, key + "."))
        elif isinstance(v, int | float) and not isinstance(v, bool):
            out[key] = float(v)
    return out
