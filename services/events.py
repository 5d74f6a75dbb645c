"""What a transaction did, recorded on its session for whoever listens once it commits.

Services below ``jobs/`` must not queue work themselves: a save marks that the project's
labels changed, and ``jobs.autotrain`` (subscribed to the session's commit) decides what to
queue; a photo put into an inspection slot is marked, and ``jobs.slot_predictions`` queues
its pre-annotation. A rolled-back transaction leaves no mark behind.
"""

from __future__ import annotations

from sqlmodel import Session

#: ``session.info`` key: ids of the projects whose labels this transaction changed.
LABELS_CHANGED = "labels_changed_projects"


def labels_changed(session: Session, project_id: int) -> None:
    """Record that this transaction added, changed or re-statused labels of ``project_id``."""
    session.info.setdefault(LABELS_CHANGED, set()).add(project_id)


def take_labels_changed(session: Session) -> set[int]:
    """The projects marked since the last call (and forget them)."""
    return session.info.pop(LABELS_CHANGED, set())


#: ``session.info`` key: project id -> ids of the photos this transaction put into slots.
PHOTOS_PLACED = "photos_placed_in_slots"


def photos_placed(session: Session, project_id: int, image_ids: list[int]) -> None:
    """Record that this transaction put ``image_ids`` of ``project_id`` into inspection slots."""
    session.info.setdefault(PHOTOS_PLACED, {}).setdefault(project_id, set()).update(image_ids)


def take_photos_placed(session: Session) -> dict[int, set[int]]:
    """The photos placed per project since the last call (and forget them)."""
    return session.info.pop(PHOTOS_PLACED, {})
