"""The lead's quality tables: agreement per photo, per annotator and per class, gold scores,
a time series, and CSV (read from what ``services.review.quality`` stored; nothing recomputed).

Ratios pool counts (matched instances, hits, IoU sums) before dividing, so a photo with many
instances weighs more than one with few, and an annotator's figure over a week is the same
whether it is read per day or at once.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from db.models import AnnotationSet, Image, PhotoAgreement, Project, User
from services.accounts.projects import project_taxonomy
from services.errors import NotFound
from services.review.agreement import ClassFigures, summarise
from services.review.decisions import rejection_rates
from services.review.quality import GOLD_SUBMISSION
from services.review.throughput import photos_per_hour

_GOLD_KEYS = ("hits", "submitted", "gold", "iou_sum")


def _round(x: float | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def photo_rows(session: Session, project: Project) -> list[dict[str, Any]]:
    """Agreement per overlap photo, lowest first (what needs review most)."""
    rows = session.execute(
        select(PhotoAgreement, Image.file_name, Image.status)
        .join(Image, Image.id == PhotoAgreement.image_id)
        .where(PhotoAgreement.project_id == project.id)
        .order_by(PhotoAgreement.f1, PhotoAgreement.image_id)
    ).all()
    return [
        {
            "image_id": a.image_id,
            "file_name": name,
            "status": getattr(status, "value", status),
            "annotators": ", ".join(a.annotators or []),
            "agreement_f1": _round(a.f1),
            "mean_iou": _round(a.mean_iou),
            "label_disagreements": a.label_disagreements,
            "computed_at": a.computed_at.isoformat(timespec="seconds"),
        }
        for a, name, status in rows
    ]


def photo_detail(session: Session, project: Project, image_id: int) -> dict[str, Any]:
    """One overlap photo's agreement: overall, per class, and per pair of annotators.
    NotFound when the photo is not in the project or its agreement is not computed yet."""
    row = session.get(PhotoAgreement, image_id)
    if row is None or row.project_id != project.id:
        raise NotFound(
            f"image {image_id} has no agreement in project {project.name!r}: it is not an "
            "overlap photo, or not every annotator has submitted it yet"
        )
    taxonomy = project_taxonomy(project)

    def named(c: str) -> str:
        return taxonomy.by_id(int(c)).name if int(c) in taxonomy else c

    def figures(per_class: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for c, d in sorted(per_class.items(), key=lambda kv: int(kv[0])):
            f = ClassFigures.from_dict(d)
            out.append(
                {
                    "class_id": int(c),
                    "class": named(c),
                    "f1": _round(f.f1),
                    "mean_iou": _round(f.mean_iou),
                    "label_disagreements": f.label_disagreements,
                }
            )
        return out

    pairs = []
    for p in row.pairs or []:
        summary = summarise({int(c): ClassFigures.from_dict(d) for c, d in p["per_class"].items()})
        pairs.append(
            {
                "a": p["a"],
                "b": p["b"],
                "f1": _round(summary["f1"]),
                "mean_iou": _round(summary["mean_iou"]),
                "label_disagreements": summary["label_disagreements"],
            }
        )
    return {
        "image_id": row.image_id,
        "annotators": list(row.annotators or []),
        "f1": _round(row.f1),
        "mean_iou": _round(row.mean_iou),
        "label_disagreements": row.label_disagreements,
        "per_class": figures(row.per_class or {}),
        "pairs": pairs,
        "computed_at": row.computed_at.isoformat(timespec="seconds"),
    }


def _agreements(session: Session, project: Project) -> list[PhotoAgreement]:
    return list(
        session.execute(
            select(PhotoAgreement).where(PhotoAgreement.project_id == project.id)
        ).scalars()
    )


def _gold_submissions(session: Session, project: Project) -> list[tuple[AnnotationSet, str]]:
    return list(
        session.execute(
            select(AnnotationSet, User.username)
            .join(User, User.id == AnnotationSet.user_id)
            .where(
                AnnotationSet.project_id == project.id,
                AnnotationSet.kind == GOLD_SUBMISSION,
                AnnotationSet.submitted_at.is_not(None),
            )
        ).all()
    )


def _annotator_agreement(agreements: Iterable[PhotoAgreement]) -> dict[str, ClassFigures]:
    """Each annotator's figures against the others: every pair they are in, pooled."""
    out: dict[str, ClassFigures] = defaultdict(ClassFigures)
    for a in agreements:
        for pair in a.pairs or []:
            for name in (pair["a"], pair["b"]):
                for f in pair["per_class"].values():
                    out[name].add(ClassFigures.from_dict(f))
    return out


def _rejection_rates(session: Session, project: Project) -> dict[str, float | None]:
    return {
        r["annotator"]: r.get("photo_rejection_rate") for r in rejection_rates(session, project)
    }


def annotator_rows(session: Session, project: Project) -> list[dict[str, Any]]:
    """Per annotator: photos per hour, agreement with the others, gold precision, recall
    and mean IoU, and the share of their photos rejected in review."""
    agree = _annotator_agreement(_agreements(session, project))
    gold: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(_GOLD_KEYS, 0.0))
    gold_n: dict[str, int] = defaultdict(int)
    for s, name in _gold_submissions(session, project):
        overall = (s.scores or {}).get("overall", {})
        for k in _GOLD_KEYS:
            gold[name][k] += float(overall.get(k) or 0)
        gold_n[name] += 1
    pace = photos_per_hour(session, project.id)
    rejected = _rejection_rates(session, project)
    names = sorted(set(agree) | set(gold) | set(pace) | set(rejected))
    out = []
    for name in names:
        f = agree.get(name)
        g = gold.get(name)
        out.append(
            {
                "annotator": name,
                "photos_per_hour": pace.get(name),
                "overlap_pairs_instances": f.instances if f else 0,
                "agreement_f1": _round(f.f1) if f else None,
                "agreement_mean_iou": _round(f.mean_iou) if f else None,
                "label_disagreements": f.label_disagreements if f else 0,
                "gold_photos": gold_n.get(name, 0),
                "gold_precision": _round(_ratio(g["hits"], g["submitted"])) if g else None,
                "gold_recall": _round(_ratio(g["hits"], g["gold"])) if g else None,
                "gold_mean_iou": _round(_ratio(g["iou_sum"], g["hits"])) if g else None,
                "rejection_rate": _round(rejected.get(name)),
            }
        )
    return out


def class_rows(session: Session, project: Project) -> list[dict[str, Any]]:
    """Per class: agreement (F1, mean IoU, label disagreements) and gold scores."""
    taxonomy = project_taxonomy(project)
    agree: dict[int, ClassFigures] = defaultdict(ClassFigures)
    for a in _agreements(session, project):
        for c, f in (a.per_class or {}).items():
            agree[int(c)].add(ClassFigures.from_dict(f))
    gold: dict[int, dict[str, float]] = defaultdict(lambda: dict.fromkeys(_GOLD_KEYS, 0.0))
    for s, _name in _gold_submissions(session, project):
        for c, f in (s.scores or {}).get("per_class", {}).items():
            for k in _GOLD_KEYS:
                gold[int(c)][k] += float(f.get(k) or 0)
    out = []
    for c in sorted(set(agree) | set(gold)):
        f, g = agree.get(c), gold.get(c)
        name = taxonomy.by_id(c).name if c in taxonomy else str(c)
        out.append(
            {
                "class_id": c,
                "class": name,
                "agreement_f1": _round(f.f1) if f else None,
                "agreement_mean_iou": _round(f.mean_iou) if f else None,
                "label_disagreements": f.label_disagreements if f else 0,
                "gold_precision": _round(_ratio(g["hits"], g["submitted"])) if g else None,
                "gold_recall": _round(_ratio(g["hits"], g["gold"])) if g else None,
                "gold_mean_iou": _round(_ratio(g["iou_sum"], g["hits"])) if g else None,
            }
        )
    return out


def gold_rows(session: Session, project: Project) -> list[dict[str, Any]]:
    """Every scored gold submission: who, which photo, when, and its overall scores."""
    rows = []
    names = dict(
        session.execute(
            select(Image.id, Image.file_name).where(Image.project_id == project.id)
        ).all()
    )
    for s, name in sorted(_gold_submissions(session, project), key=lambda r: r[0].submitted_at):
        overall = (s.scores or {}).get("overall", {})
        rows.append(
            {
                "annotator": name,
                "image_id": s.image_id,
                "file_name": names.get(s.image_id),
                "submitted_at": s.submitted_at.isoformat(timespec="seconds"),
                "precision": _round(overall.get("precision")),
                "recall": _round(overall.get("recall")),
                "mean_iou": _round(overall.get("mean_iou")),
            }
        )
    return rows


def annotator_series(session: Session, project: Project) -> list[dict[str, Any]]:
    """Per annotator and day: agreement F1 (from overlap photos completed that day) and gold
    recall (from gold photos submitted that day)."""
    agree: dict[tuple[str, str], ClassFigures] = defaultdict(ClassFigures)
    for a in _agreements(session, project):
        day = a.computed_at.date().isoformat()
        for pair in a.pairs or []:
            for name in (pair["a"], pair["b"]):
                for f in pair["per_class"].values():
                    agree[(name, day)].add(ClassFigures.from_dict(f))
    gold: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for s, name in _gold_submissions(session, project):
        overall = (s.scores or {}).get("overall", {})
        key = (name, s.submitted_at.date().isoformat())
        gold[key][0] += float(overall.get("hits") or 0)
        gold[key][1] += float(overall.get("gold") or 0)
    out = []
    for name, day in sorted(set(agree) | set(gold)):
        f = agree.get((name, day))
        g = gold.get((name, day))
        out.append(
            {
                "annotator": name,
                "day": day,
                "agreement_f1": _round(f.f1) if f else None,
                "gold_recall": _round(_ratio(g[0], g[1])) if g else None,
            }
        )
    return out


def series_png(series: list[dict[str, Any]]) -> bytes:
    """PNG: each annotator's agreement F1 (solid) and gold recall (dashed) per day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2), dpi=100)
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in series:
        by_name[r["annotator"]].append(r)
    for k, (name, rows) in enumerate(sorted(by_name.items())):
        color = f"C{k % 10}"
        for key, style, label in (
            ("agreement_f1", "-o", "agreement"),
            ("gold_recall", "--s", "gold recall"),
        ):
            pts = [(datetime.fromisoformat(r["day"]), r[key]) for r in rows if r[key] is not None]
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, ys, style, color=color, label=f"{name}: {label}")
    if not series:
        ax.text(
            0.5,
            0.5,
            "no overlap or gold results yet",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_xticks([])
    days = sorted({datetime.fromisoformat(r["day"]) for r in series})
    if days:  # a day's margin either side, so one day is a point, not a span of years
        ax.set_xlim(days[0] - timedelta(days=1), days[-1] + timedelta(days=1))
        span = (days[-1] - days[0]).days + 2
        ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, span // 7)))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.set_title("Quality per annotator and day")
    if series:
        ax.legend(fontsize=7, loc="lower left")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


#: table name -> builder, for the API and the CSV export
TABLES = {
    "photos": photo_rows,
    "annotators": annotator_rows,
    "classes": class_rows,
    "gold": gold_rows,
    "series": annotator_series,
}


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text with a header (empty text for no rows)."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    # A cell starting with = + - @ would be a formula in a spreadsheet (a file name can).
    writer.writerows(
        {k: "'" + v if isinstance(v, str) and v[:1] in "=+-@" else v for k, v in r.items()}
        for r in rows
    )
    return buf.getvalue()
