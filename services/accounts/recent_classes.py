"""The classes a user picked last, most recent first: the workspace's keys 1-9, kept per user
on the server so that they follow the user from browser to browser. The list holds at most
the ``recent_classes_max`` setting's number of classes."""

from __future__ import annotations

from collections.abc import Sequence

from sqlmodel import Session

from core.config import get_settings
from core.taxonomy import Taxonomy
from db.models import User
from services.errors import Invalid


def recent_classes(user: User, taxonomy: Taxonomy) -> list[int]:
    """The user's recent classes that ``taxonomy`` has, most recent first."""
    return [c for c in user.recent_classes or [] if c in taxonomy]


def set_recent_classes(
    session: Session, user: User, class_ids: Sequence[int], taxonomy: Taxonomy
) -> list[int]:
    """Keep ``class_ids`` (most recent first) as the user's recent classes: repeats after the
    first are dropped, and the list is cut to the ``recent_classes_max`` setting. Raises
    :class:`Invalid` naming a class id that ``taxonomy`` does not have."""
    unknown = [c for c in class_ids if c not in taxonomy]
    if unknown:
        raise Invalid(
            f"Recent classes: class id {unknown[0]} is not in the project's taxonomy; "
            "send ids from GET /api/taxonomy."
        )
    limit = get_settings().recent_classes_max
    kept = list(dict.fromkeys(int(c) for c in class_ids))[:limit]
    user.recent_classes = kept
    session.add(user)
    return kept
