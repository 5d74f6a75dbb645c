"""The lead dashboard's five plots: their numbers (tables that also download as CSV) and
their pictures (matplotlib PNG, Agg backend).

- :func:`labelling_pace`: photos labelled per day and the projection to finish the queue;
- :func:`class_counts`: instances per class, grouped damage / fake / part;
- :func:`metric_across_versions`: each stage's held-out primary metric per version, the
  promoted one marked;
- :func:`learning_curve`: primary metric against the labelled photos it was trained on;
- ``effort`` (``services.dashboard.effort``): actions per photo per round, counted by the
  simulated annotator, against the learning curve of the versions shown.

Each data function returns ``{"columns": [...], "rows": [[...], ...], ...}``; the renderers
take that and return PNG bytes. A labelled photo is one the dashboard header counts as
labelled (``services.dashboard.stats.labelled_photos``: status labelled or reviewed), and
the day it was labelled is its ``updated_at`` (the last change of its status or labels):
there is no status history table, so a photo changed after labelling moves to that later
day, and a photo imported already labelled counts on the day of its import. Those imported
photos (``status_by`` ``import:<file>``) have a column of their own: they count in the
cumulative total, which so ends at the header's figure, but not in the team's pace.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from active_learning.plots import figure_png, new_figure
from db.models import LABELLED_STATUSES, Annotation, Image, Project
from services.accounts.projects import project_taxonomy
from services.dashboard.effort import effort_png, effort_table
from services.labelling.images import OPEN_STATUSES
from services.review.throughput import is_person
from services.training import registry

#: Days of labelling the projection's pace is averaged over (the most recent ones).
PACE_DAYS = 7
#: Colours of the taxonomy groups in the class plot.
GROUP_COLOURS = {"damage": "#d62728", "fake": "#9467bd", "part": "#1f77b4"}


def to_csv(table: dict[str, Any]) -> str:
    """A plot's table as CSV text (header row first)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table["columns"])
    writer.writerows(table["rows"])
    return buf.getvalue()


# ---------- numbers ----------


def labelling_pace(session: Session, project: Project, *, today: date | None = None) -> dict:
    """Labelled photos per day (by the team, and by an import), cumulative, and the
    projection: at the team's mean pace over the last :data:`PACE_DAYS` days it labelled
    on, the open photos (new, in progress, rejected) take ``days_to_finish`` days, until
    ``finish_on`` (None while there is no pace). The last cumulative figure is
    :func:`services.dashboard.stats.labelled_photos`."""
    rows = session.exec(
        select(Image.updated_at, Image.meta).where(
            Image.project_id == project.id,
            Image.status.in_(LABELLED_STATUSES),
        )
    ).all()
    per_day: dict[date, int] = {}
    imported: dict[date, int] = {}
    for at, meta in rows:
        day = at.date()
        into = per_day if is_person((meta or {}).get("status_by") or "someone") else imported
        into[day] = into.get(day, 0) + 1
    open_photos = session.exec(
        select(func.count(Image.id)).where(
            Image.project_id == project.id, Image.status.in_(OPEN_STATUSES)
        )
    ).one()
    table_rows, total = [], 0
    for day in sorted({*per_day, *imported}):
        total += per_day.get(day, 0) + imported.get(day, 0)
        table_rows.append([day.isoformat(), per_day.get(day, 0), imported.get(day, 0), total])
    recent = [per_day[d] for d in sorted(per_day)[-PACE_DAYS:]]
    pace = sum(recent) / len(recent) if recent else 0.0
    days = math.ceil(open_photos / pace) if pace > 0 else None
    today = today or date.today()
    return {
        "columns": ["day", "labelled", "imported_labelled", "cumulative"],
        "rows": table_rows,
        "open": int(open_photos),
        "pace_per_day": round(pace, 2),
        "days_to_finish": days,
        "finish_on": (today + timedelta(days=days)).isoformat() if days is not None else None,
    }


def class_counts(session: Session, project: Project) -> dict:
    """Live instances per class, grouped damage / fake / part in taxonomy order; classes
    with none are left out, the rarest stay (the picture uses a log scale)."""
    taxonomy = project_taxonomy(project)
    counts = dict(
        session.exec(
            select(Annotation.class_id, func.count())
            .join(Image, Image.id == Annotation.image_id)
            .where(Image.project_id == project.id, Annotation.deleted == False)  # noqa: E712
            .group_by(Annotation.class_id)
        ).all()
    )
    rows = []
    for group in taxonomy.counts():
        for cls in taxonomy.group(group):
            if counts.get(cls.id):
                rows.append([group, cls.name, int(counts[cls.id])])
    return {"columns": ["group", "class", "instances"], "rows": rows}


def metric_across_versions(session: Session) -> dict:
    """Each stage's held-out primary metric per version (oldest first), promoted marked."""
    rows = []
    for mv in registry.versions(session):
        if mv.stage == registry.EXTERNAL_STAGE:
            continue
        pm = registry.primary_metric(mv.metrics or {}, mv.stage)
        held = pm is not None and pm[0].startswith("holdout.")
        rows.append(
            [
                mv.stage,
                mv.name,
                mv.version,
                pm[0] if held else "",
                round(pm[1], 4) if held else "",
                "yes" if mv.promoted else "",
            ]
        )
    return {
        "columns": ["stage", "version", "number", "metric", "value", "promoted"],
        "rows": rows,
    }


def learning_curve(session: Session) -> dict:
    """Held-out primary metric against the labelled photos each version was trained on."""
    rows = []
    for mv in registry.versions(session):
        pm = registry.primary_metric(mv.metrics or {}, mv.stage)
        n = (mv.train_snapshot or {}).get("count")
        if pm is None or n is None or not pm[0].startswith("holdout."):
            continue
        rows.append([mv.stage, mv.name, int(n), pm[0], round(pm[1], 4)])
    rows.sort(key=lambda r: (r[0], r[2]))
    return {"columns": ["stage", "version", "labelled_photos", "metric", "value"], "rows": rows}


# ---------- pictures ----------


def _nothing(plt, fig, ax, text: str) -> bytes:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11)
    ax.set_axis_off()
    return figure_png(plt, fig)


def pace_png(pace: dict) -> bytes:
    plt, fig, ax = new_figure(7.0, 4.2)
    if not pace["rows"]:
        return _nothing(plt, fig, ax, f"no photos labelled yet; {pace['open']} open")
    days = [date.fromisoformat(r[0]) for r in pace["rows"]]
    team = [r[1] for r in pace["rows"]]
    ax.bar(days, team, color="#1f77b4", label="labelled that day")
    if any(r[2] for r in pace["rows"]):
        ax.bar(
            days,
            [r[2] for r in pace["rows"]],
            bottom=team,
            color="#aec7e8",
            label="imported already labelled",
        )
    ax.set_ylabel("photos per day")
    ax2 = ax.twinx()
    ax2.plot(days, [r[3] for r in pace["rows"]], color="#2ca02c", marker="o", label="labelled")
    title = f"{pace['pace_per_day']:g} photos/day, {pace['open']} open"
    if pace["days_to_finish"] is not None:
        end = date.fromisoformat(pace["finish_on"])
        done = pace["rows"][-1][3]
        ax2.plot(
            [days[-1], end],
            [done, done + pace["open"]],
            color="#2ca02c",
            linestyle="--",
            label=f"projection: done by {end.isoformat()}",
        )
        n = pace["days_to_finish"]
        title += f": queue done in {n} day{'s' if n != 1 else ''}"
    ax2.set_ylabel("labelled in all")
    ax2.set_ylim(bottom=0)
    ax.set_title(title)
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    # below the plot: over it, the legend hid the first days' bars
    ax2.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, fontsize=8)
    import matplotlib.dates as mdates

    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=2, maxticks=10))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d"))
    ax.set_xlim(days[0] - timedelta(days=1), max(days[-1], _finish(pace)) + timedelta(days=1))
    fig.autofmt_xdate()
    return figure_png(plt, fig)


def _finish(pace: dict) -> date:
    return date.fromisoformat(pace["finish_on"]) if pace["finish_on"] else date.min


def classes_png(counts: dict) -> bytes:
    rows = counts["rows"]
    plt, fig, ax = new_figure(7.0, max(2.5, 0.22 * len(rows) + 1.2))
    if not rows:
        return _nothing(plt, fig, ax, "no instances yet")
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [r[2] for r in rows], color=[GROUP_COLOURS.get(r[0], "grey") for r in rows])
    ax.set_yticks(y, [r[1] for r in rows], fontsize=8)
    ax.set_xscale("log")  # a class with 2 instances stays visible beside one with 2,000
    for yi, r in zip(y, rows, strict=True):
        ax.text(r[2], yi, f" {r[2]}", va="center", fontsize=7)
    from matplotlib.patches import Patch

    shown = [g for g in GROUP_COLOURS if any(r[0] == g for r in rows)]
    ax.legend(
        handles=[Patch(color=GROUP_COLOURS[g], label=g) for g in shown],
        loc="lower right",
        fontsize=8,
    )
    ax.set_xlabel("instances (log scale)")
    ax.set_title("instances per class")
    return figure_png(plt, fig)


def versions_png(table: dict) -> bytes:
    plt, fig, ax = new_figure(7.0, 3.6)
    rows = [r for r in table["rows"] if r[4] != ""]
    if not rows:
        return _nothing(plt, fig, ax, "no version measured on the held-out split yet")
    for stage in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == stage]
        ax.plot([r[2] for r in mine], [r[4] for r in mine], marker="o", label=stage)
        for r in mine:
            if r[5]:
                ax.plot([r[2]], [r[4]], marker="*", markersize=16, color="gold", mec="black")
                ax.annotate(
                    f"{r[1]} (promoted)",
                    (r[2], r[4]),
                    fontsize=7,
                    xytext=(4, 6),
                    textcoords="offset points",
                )
    ax.set_xlabel("version")
    ax.set_ylabel("held-out primary metric")
    ax.set_ylim(0, 1.05)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    ax.set_title("held-out metric per version (star = promoted)")
    ax.grid(alpha=0.3)
    return figure_png(plt, fig)


def curve_png(table: dict) -> bytes:
    plt, fig, ax = new_figure(7.0, 3.6)
    if not table["rows"]:
        return _nothing(plt, fig, ax, "no measured versions yet: the curve starts after a round")
    for stage in dict.fromkeys(r[0] for r in table["rows"]):
        mine = [r for r in table["rows"] if r[0] == stage]
        metric = mine[0][3].rsplit(".", 1)[-1]
        ax.plot([r[2] for r in mine], [r[4] for r in mine], marker="o", label=f"{stage} ({metric})")
    ax.set_xlabel("labelled photos trained on")
    ax.set_ylabel("held-out primary metric")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8)
    ax.set_title("learning curve")
    ax.grid(alpha=0.3)
    return figure_png(plt, fig)


#: name -> (data function taking (session, project), renderer): what the dashboard shows.
PLOTS = {
    "pace": (labelling_pace, pace_png),
    "classes": (class_counts, classes_png),
    "versions": (lambda s, p: metric_across_versions(s), versions_png),
    "learning_curve": (lambda s, p: learning_curve(s), curve_png),
    "effort": (effort_table, effort_png),
}


def plot_tables(session: Session, project: Project) -> dict[str, dict]:
    """Every plot's table, by name (:data:`PLOTS`)."""
    return {name: fn(session, project) for name, (fn, _) in PLOTS.items()}


def render(name: str, table: dict) -> bytes:
    """The PNG of plot ``name`` from its table."""
    return PLOTS[name][1](table)
