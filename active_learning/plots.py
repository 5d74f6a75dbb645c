"""Dashboard plots as PNG bytes (matplotlib, Agg backend, no display needed).

- :func:`metrics_across_versions`: a stage's metrics per version, grouped bars (accuracy,
  precision, recall, F1), in the manner of the ALBERT paper's figures 2 and 3.
- :func:`learning_curve`: a metric against the number of labelled images, one line per stage
  (or per strategy in the benchmark), with an optional ± band.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

from core.metrics import flatten_metrics

DEFAULT_METRICS = ("accuracy", "precision", "recall", "f1")


def new_figure(width: float = 7.0, height: float = 4.0):
    """A matplotlib figure of ``width`` x ``height`` inches at 100 dpi, drawn off-screen (Agg):
    ``(plt, fig, ax)``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(width, height), dpi=100)


def figure_png(plt, fig) -> bytes:
    """``fig`` as PNG bytes, laid out tight; the figure is closed."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _metric(metrics: Mapping[str, object], key: str) -> float:
    """``key`` from a version's metrics, preferring held-out figures: the first of
    ``holdout.part.<key>``, ``holdout.<key>``, ``<key>``, with ``macro_<key>`` variants; else
    the mean of any nested ``*.<key>``; NaN when absent."""
    flat = flatten_metrics(metrics)
    for prefix in ("holdout.part.", "holdout.damage.", "holdout.", ""):
        for k in (key, f"macro_{key}", f"{key}_macro"):
            if prefix + k in flat:
                return flat[prefix + k]
    hits = [v for k, v in flat.items() if k.endswith(f".{key}") or k.endswith(f"_{key}")]
    return float(np.mean(hits)) if hits else float("nan")


def metrics_across_versions(
    versions: Sequence[tuple[str, Mapping[str, object]]],
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    title: str = "",
    promoted: str | None = None,
) -> bytes:
    """Grouped bars: one group per version (``(name, metrics)`` pairs, oldest first)."""
    plt, fig, ax = new_figure(max(5.0, 1.2 * len(versions) + 3), 4.0)
    if not versions:
        ax.text(0.5, 0.5, "no versions yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return figure_png(plt, fig)
    x = np.arange(len(versions))
    w = 0.8 / max(len(metrics), 1)
    for j, key in enumerate(metrics):
        vals = [_metric(m, key) for _, m in versions]
        bars = ax.bar(x + (j - (len(metrics) - 1) / 2) * w, np.nan_to_num(vals), w, label=key)
        for b, v in zip(bars, vals, strict=True):
            if np.isfinite(v):
                ax.annotate(
                    f"{v:.2f}",
                    (b.get_x() + b.get_width() / 2, v),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
    names = [f"{n} *" if n == promoted else n for n, _ in versions]
    ax.set_xticks(x, names, rotation=20 if len(versions) > 4 else 0)
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("score")
    ax.set_title(title or "metrics per version (* = promoted)")
    ax.legend(loc="lower right", fontsize=8, ncols=len(metrics))
    ax.grid(axis="y", alpha=0.3)
    return figure_png(plt, fig)


def learning_curve(
    series: Mapping[
        str,
        tuple[Sequence[float], Sequence[float]]
        | tuple[Sequence[float], Sequence[float], Sequence[float]],
    ],
    *,
    metric: str = "metric",
    title: str = "",
) -> bytes:
    """Lines of ``metric`` against labelled images: ``{name: (x, y[, std])}``."""
    plt, fig, ax = new_figure()
    if not series:
        ax.text(0.5, 0.5, "no rounds yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return figure_png(plt, fig)
    for name, values in series.items():
        x = np.asarray(values[0], dtype=float)
        y = np.asarray(values[1], dtype=float)
        ax.plot(x, y, marker="o", label=name)
        if len(values) > 2 and values[2] is not None:
            s = np.asarray(values[2], dtype=float)
            ax.fill_between(x, y - s, y + s, alpha=0.15)
    ax.set_xlabel("labelled images")
    ax.set_ylabel(metric)
    ax.set_title(title or f"learning curve: {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figure_png(plt, fig)
