"""Counts of images, annotations, groups and classes for the CLI and the dashboard.

A labelled photo is one whose status is labelled or reviewed, however it got there (a
labeller, a reviewer, or an import of labels): :func:`labelled_photos` is the figure the
dashboard header shows, and the "labelled photos per day" plot
(``services.dashboard.plots.labelling_pace``) adds up to it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from db.models import LABELLED_STATUSES, Annotation, Image, Project
from services.accounts.projects import project_taxonomy
from services.labelling.images import queue_progress


def labelled_photos(progress: dict[str, int]) -> int:
    """The labelled photos among ``queue_progress``'s counts per status."""
    return sum(progress[s.value] for s in LABELLED_STATUSES)


def project_stats(session: Session, project: Project) -> dict[str, Any]:
    taxonomy = project_taxonomy(project)
    live = (
        select(Annotation.group, Annotation.class_id, func.count())
        .join(Image, Image.id == Annotation.image_id)
        .where(Image.project_id == project.id, Annotation.deleted == False)  # noqa: E712
        .group_by(Annotation.group, Annotation.class_id)
    )
    per_group = {g: 0 for g in taxonomy.counts()}
    per_class: dict[str, int] = {}
    for group, class_id, n in session.exec(live):
        per_group[group] = per_group.get(group, 0) + n
        per_class[taxonomy.by_id(class_id).name] = n
    split_rows = session.exec(
        select(Image.split, func.count())
        .where(Image.project_id == project.id)
        .group_by(Image.split)
    ).all()
    progress = queue_progress(session, project.id)
    return {
        "project": project.name,
        "images": progress["total"],
        "labelled": labelled_photos(progress),
        "annotations": sum(per_group.values()),
        "per_group": per_group,
        "per_class": dict(sorted(per_class.items(), key=lambda kv: (-kv[1], kv[0]))),
        "per_split": {s: n for s, n in split_rows},
        "per_status": {k: v for k, v in progress.items() if k not in ("total", "done", "open")},
    }
