"""Per-annotator throughput for the lead dashboard.

Active time is counted in hour buckets in which the person saved at least once, so a break
does not dilute the rate: ``photos_per_hour = distinct photos saved / active hours``.

Imports are not annotators: their rows carry the author ``import:<file name>`` and the
source ``imported``, and neither counts here.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from sqlmodel import Session, select

from db.models import Annotation, AnnotationRevision, AnnotationSource, Image, utcnow

#: The author prefix an import writes (``services.data_io.imports``): a file, not a person.
IMPORT_AUTHOR_PREFIX = "import:"


def is_person(author: str | None) -> bool:
    """Whether ``author`` names a person (not empty, not an import source)."""
    return bool(author) and not author.startswith(IMPORT_AUTHOR_PREFIX)


def annotator_throughput(
    session: Session, project_id: int, *, days: float = 7.0
) -> list[dict[str, Any]]:
    """``[{author, photos, instances, active_hours, photos_per_hour, instances_per_hour}]`` over ``days``."""
    since = utcnow() - timedelta(days=days)
    saves = session.exec(
        select(
            AnnotationRevision.author, AnnotationRevision.image_id, AnnotationRevision.created_at
        )
        .join(Image, Image.id == AnnotationRevision.image_id)
        .where(Image.project_id == project_id, AnnotationRevision.created_at >= since)
    ).all()
    made = session.exec(
        select(Annotation.author, Annotation.created_at)
        .join(Image, Image.id == Annotation.image_id)
        .where(
            Image.project_id == project_id,
            Annotation.created_at >= since,
            Annotation.source != AnnotationSource.imported,
        )
    ).all()
    photos: dict[str, set[int]] = defaultdict(set)
    hours: dict[str, set[tuple]] = defaultdict(set)
    instances: dict[str, int] = defaultdict(int)
    for author, image_id, at in saves:
        if is_person(author):
            photos[author].add(image_id)
            hours[author].add((at.date(), at.hour))
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
