"""Per-annotator throughput for the lead dashboard.

Active time is counted in hour buckets in which the person saved at least once, so a break
does not dilute the rate: ``photos_per_hour = distinct photos saved / active hours``.

A save is one of a photo's working set or of one's own overlap or gold set
(:func:`photo_saves`); the dashboard and the quality report count the same saves.

Imports are not annotators: their rows carry the author ``import:<file name>`` and the
source ``imported``, and neither counts here.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from db.models import (
    Annotation,
    AnnotationRevision,
    AnnotationSet,
    AnnotationSource,
    Image,
    User,
    utcnow,
)
from services.labelling.routing import GOLD_SUBMISSION, OVERLAP

#: The window photos per hour are counted over, on the dashboard and in the quality report.
THROUGHPUT_DAYS = 7.0
#: The author the overlap consensus is saved under: a rule, not a person.
CONSENSUS_AUTHOR = "consensus"
#: The author prefix an import writes (``services.data_io.imports``): a file, not a person.
IMPORT_AUTHOR_PREFIX = "import:"


def is_person(author: str | None) -> bool:
    """Whether ``author`` names a person (not empty, not an import source)."""
    return bool(author) and not author.startswith(IMPORT_AUTHOR_PREFIX)


def photo_saves(
    session: Session, project_id: int, *, since: datetime | None = None
) -> list[tuple[str, int, datetime]]:
    """``(author, image_id, at)`` of every save by a person in the project (since ``since``):
    of a photo's working set, and of one's own overlap and gold sets. The one definition of
    a save that every photos-per-hour figure counts (the dashboard, the quality report)."""
    revisions = (
        select(
            AnnotationRevision.author, AnnotationRevision.image_id, AnnotationRevision.created_at
        )
        .join(Image, Image.id == AnnotationRevision.image_id)
        .where(Image.project_id == project_id)
    )
    own = (
        select(User.username, AnnotationSet.image_id, AnnotationSet.updated_at)
        .join(User, User.id == AnnotationSet.user_id)
        .where(
            AnnotationSet.project_id == project_id,
            AnnotationSet.kind.in_((OVERLAP, GOLD_SUBMISSION)),
        )
    )
    if since is not None:
        revisions = revisions.where(AnnotationRevision.created_at >= since)
        own = own.where(AnnotationSet.updated_at >= since)
    rows = [*session.exec(revisions).all(), *session.exec(own).all()]
    return [
        (author, image_id, at)
        for author, image_id, at in rows
        if is_person(author) and author != CONSENSUS_AUTHOR and at is not None
    ]


def photos_and_hours(
    saves: list[tuple[str, int, datetime]],
) -> tuple[dict[str, set[int]], dict[str, set[tuple]]]:
    """Per author: the distinct photos saved, and the active hours (hour buckets with a save)."""
    photos: dict[str, set[int]] = defaultdict(set)
    hours: dict[str, set[tuple]] = defaultdict(set)
    for author, image_id, at in saves:
        photos[author].add(image_id)
        hours[author].add((at.date(), at.hour))
    return photos, hours


def photos_per_hour(
    session: Session, project_id: int, *, days: float = THROUGHPUT_DAYS
) -> dict[str, float]:
    """Distinct photos saved per active hour, per person, over the last ``days``."""
    photos, hours = photos_and_hours(
        photo_saves(session, project_id, since=utcnow() - timedelta(days=days))
    )
    return {a: round(len(photos[a]) / max(len(hours[a]), 1), 2) for a in photos}


def annotator_throughput(
    session: Session, project_id: int, *, days: float = THROUGHPUT_DAYS
) -> list[dict[str, Any]]:
    """``[{author, photos, instances, active_hours, photos_per_hour, instances_per_hour}]`` over ``days``."""
    since = utcnow() - timedelta(days=days)
    photos, hours = photos_and_hours(photo_saves(session, project_id, since=since))
    made = session.exec(
        select(Annotation.author, Annotation.created_at)
        .join(Image, Image.id == Annotation.image_id)
        .where(
            Image.project_id == project_id,
            Annotation.created_at >= since,
            Annotation.source != AnnotationSource.imported,
        )
    ).all()
    instances: dict[str, int] = defaultdict(int)
    for author, _at in made:
        if is_person(author):
            instances[author] += 1
    out = []
    for author in sorted(set(photos) | set(instances)):
        active = max(len(hours[author]), 1)
        out.append(
            {
                "author": author,
                "photos": len(photos[author]),
                "instances": instances[author],
                "active_hours": active,
                "photos_per_hour": round(len(photos[author]) / active, 2),
                "instances_per_hour": round(instances[author] / active, 2),
            }
        )
    return out
