"""What a photo costs the team, round by round, beside the learning curve: the lead's proof
that the models in the loop save work.

A *round* here is what the annotators were shown: the photos labelled while the same model
versions' predictions were offered (``services.labelling.effort.shown_versions``), ordered
by when the first of them was labelled; photos labelled before any model pre-annotated are
the first round ("no model"). Photos labelled by an import (not a person) are left out.

For each round, up to ``effort_photos_per_round`` of its photos (evenly spread over their
ids) are counted by the simulated annotator (``active_learning.effort``) with the project's
assistance as it is now, from the predictions shown to the labels as they are now. Counts
are cached per photo, keyed by its labels' version, the versions shown and the assistance,
in ``<cache_dir>/effort/project-<id>.json``: a dashboard refresh counts only new photos.

:func:`effort_table` is the dashboard plot's table (``services.dashboard.plots``) and carries
the sentence the lead reads (:func:`effort_sentence`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from active_learning.effort import Tally
from core.config import get_settings
from core.files import atomic_write
from db.models import LABELLED_STATUSES, Image, ModelVersion, Project
from exports.image_files import ImageReadError
from services.errors import ServiceError
from services.labelling.effort import shown_versions_of, stored_photo_effort
from services.review.throughput import is_person
from services.training import registry
from services.training.assist import ASSIST_MAX_SIDE, project_assistant, resolve_assistance

NO_MODEL = "no model"
#: Fewer counted photos than this in the last round and the sentence says it is early.
FEW_PHOTOS = 3
COLUMNS = [
    "round",
    "shown",
    "labelled_photos",
    "counted_photos",
    "actions_per_photo",
    "by_hand_per_photo",
    "heldout",
]
#: Colours of the learning curves (right axis), one per stage.
CURVE_COLOURS = ("#2ca02c", "#d62728", "#9467bd")


def _cache_path(project: Project) -> Path:
    return get_settings().cache_dir / "effort" / f"project-{project.id}.json"


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def labelled_rounds(
    session: Session, project: Project
) -> list[tuple[list[ModelVersion], list[Image]]]:
    """The project's person-labelled photos grouped by the versions they were shown, in
    round order (see the module docstring)."""
    images = session.exec(
        select(Image)
        .where(Image.project_id == project.id, Image.status.in_(LABELLED_STATUSES))
        .order_by(Image.id)
    ).all()
    images = [im for im in images if is_person((im.meta or {}).get("status_by"))]
    shown = shown_versions_of(session, images)
    groups: dict[tuple[int, ...], tuple[list[ModelVersion], list[Image]]] = {}
    for im in images:
        versions = shown[im.id]
        key = tuple(mv.id for mv in versions)
        groups.setdefault(key, (versions, []))[1].append(im)
    return sorted(groups.values(), key=lambda g: min(im.updated_at for im in g[1]))


def _sample(images: list[Image], n: int) -> list[Image]:
    step = max(1, math.ceil(len(images) / n))
    return images[::step][:n]


def _heldout(versions: list[ModelVersion]) -> dict[str, tuple[str, float]]:
    """stage -> (metric name, held-out value) of each version measured on the held-out split."""
    out = {}
    for mv in versions:
        pm = registry.primary_metric(mv.metrics or {}, mv.stage)
        if pm is not None and pm[0].startswith("holdout."):
            out[mv.stage] = (pm[0].rsplit(".", 1)[-1], round(pm[1], 4))
    return out


def effort_table(session: Session, project: Project) -> dict[str, Any]:
    """Actions per photo per round: ``{"columns", "rows", "curve", "backend", "sentence",
    "unreadable"}``; each row ``[round, shown, labelled photos, counted photos, actions per
    photo, vertices by hand per photo, held-out figures of the versions shown]`` (the
    actions None when no photo of the round could be counted); ``curve``: ``"stage
    (metric)"`` -> ``[(round, held-out value), ...]``, the learning curve."""
    rounds = labelled_rounds(session, project)
    cache_path = _cache_path(project)
    cache = _read_cache(cache_path)
    assistance = resolve_assistance(session, project)
    assistant = None
    rows, unreadable, waiting, changed = [], 0, 0, False
    curve: dict[str, list[tuple[int, float]]] = {}
    settings = get_settings()
    per_round = settings.effort_photos_per_round
    deadline = time.monotonic() + settings.effort_count_budget_s
    for n, (versions, images) in enumerate(rounds):
        shown = " + ".join(mv.name for mv in versions) or NO_MODEL
        held = _heldout(versions)
        total, counted = Tally.zero(), 0
        for im in _sample(images, per_round):
            key = ":".join(
                [str(im.id), str(im.annotation_version), shown, *map(str, assistance.key)]
            )
            if key not in cache:
                if time.monotonic() >= deadline:
                    waiting += 1  # counted on a later refresh
                    continue
                if assistant is None:
                    assistant = project_assistant(session, project)
                try:
                    effort, _ = stored_photo_effort(
                        session, im, assistant, max_side=ASSIST_MAX_SIDE, baseline=False
                    )
                except (OSError, ValueError, ImageReadError, ServiceError):
                    unreadable += 1  # its file is gone or broken: count the others
                    continue
                cache[key] = effort.shown.as_dict()
                changed = True
            d = dict(cache[key])
            d.pop("total", None)
            total = total + Tally(**d)
            counted += 1
        rows.append(
            [
                n,
                shown,
                len(images),
                counted,
                round(total.total / counted, 1) if counted else None,
                round(total.by_hand / counted, 1) if counted else None,
                "; ".join(f"{st} {m} {v:.3f}" for st, (m, v) in held.items()),
            ]
        )
        for st, (m, v) in held.items():
            curve.setdefault(f"{st} ({m})", []).append((n, v))
    if changed:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(cache_path) as f:
            f.write(json.dumps(cache).encode())
    table = {
        "columns": COLUMNS,
        "rows": rows,
        "curve": curve,
        "backend": assistance.backend,
        "unreadable": unreadable,
        "waiting": waiting,
    }
    table["sentence"] = effort_sentence(table)
    return table


def effort_sentence(table: dict[str, Any]) -> str:
    """ "Each photo now costs N actions, down from M": N of the last round, M of the first
    (or drawing every vertex by hand while there is one round); plainly "not enough data"
    when nothing was counted; and how many photos wait for the next refresh (the counting
    budget, ``effort_count_budget_s``, ran out)."""
    rows = [r for r in table["rows"] if r[3]]
    later = ""
    if table.get("waiting"):
        later = f" {_n(table['waiting'], 'more photo')} will be counted on the next refresh."
    if not rows:
        return (
            "Not enough data for the cost per photo yet: no photo labelled in the workspace "
            "could be counted." + later
        )
    last = rows[-1]
    now = last[4]
    if len(rows) == 1:
        then, since = last[5], "drawing every vertex by hand"
    else:
        then, since = rows[0][4], f"in round 0 ({rows[0][1]})"
    word = "down from" if now < then else ("up from" if now > then else "the same as")
    early = "; too few to be sure yet" if last[3] < FEW_PHOTOS else ""
    return (
        f"Each photo now costs {_n(now, 'action')}, {word} {then:g} {since}. Counted on "
        f"{_n(last[3], 'photo')} of round {last[0]} ({last[1]}) with {table['backend']} "
        f"assistance{early}." + later
    )


def _n(value: float, noun: str) -> str:
    return f"{value:g} {noun}{'' if value == 1 else 's'}"


def effort_png(table: dict[str, Any]) -> bytes:
    """Actions per photo per round (and by hand, dashed) against the held-out metric of the
    versions shown (the learning curve, right axis)."""
    from active_learning.plots import figure_png, new_figure

    plt, fig, ax = new_figure(7.0, 3.6)
    rows = [r for r in table["rows"] if r[3]]
    if not rows:
        ax.text(
            0.5,
            0.5,
            "no labelled photo counted yet",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        return figure_png(plt, fig)
    x = [r[0] for r in rows]
    ax.bar(x, [r[4] for r in rows], color="#1f77b4", width=0.6, label="actions per photo")
    for xi, r in zip(x, rows, strict=True):
        ax.text(xi, r[4] / 2, f"{r[4]:g}", ha="center", va="center", fontsize=9, color="white")
    ax.plot(x, [r[5] for r in rows], "k--", marker="_", label="vertices by hand")
    ax.set_ylim(0, 1.15 * max(max(r[4], r[5]) for r in rows))
    ax.set_ylabel("actions per photo")
    ax.set_xticks(x, [f"{r[0]}\n{_short(r[1])}" for r in rows], fontsize=7)
    ax.set_xlabel("round (versions shown)")
    ax2 = ax.twinx()
    for colour, (name, points) in zip(CURVE_COLOURS, table.get("curve", {}).items(), strict=False):
        xs, ys = zip(*points, strict=True)
        ax2.plot(xs, ys, color=colour, marker="o", label=f"held-out {name}")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("held-out metric")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    # below the plot: over it, the legend hid the by-hand line
    ax.legend(handles=handles, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3)
    ax.set_title("what a photo costs per round, and the learning curve")
    return figure_png(plt, fig)


def _short(shown: str, width: int = 24) -> str:
    return shown if len(shown) <= width else shown[: width - 1] + "…"
