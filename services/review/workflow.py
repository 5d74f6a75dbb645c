"""A user's opening, save and status change of one photo, whatever route the photo takes: an
annotator's labels of an overlap or gold photo go to their own set (``quality``), every
other save to the photo's working set (``services.labelling.saves``); a save is
activity and renews the saver's lease. What the REST API and the workspace call."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from db.models import ImageStatus, Project, User
from services.labelling import leases as lease_service
from services.labelling import readers, saves, statuses
from services.review import quality


def open_photo(
    session: Session,
    user: User,
    *,
    project: Project,
    image_id: int,
    kept: Collection[int] = (),
) -> dict[str, Any]:
    """The photo's detail as ``user`` may see it (their own set on a routed photo), leased to
    them when nobody holds it, else ``read_only`` with ``held_by``. The photos of ``kept`` (edits
    the user's browser offers back) stay leased to them (``leases.hold_kept``)."""
    image = readers.get_image(session, image_id, project)
    lease = lease_service.open_by_id(session, image, user, kept=kept)
    detail = quality.detail_for(session, user, image, readers.image_detail(session, image))
    return {**detail, **lease}


@dataclass(frozen=True)
class PhotoSave:
    """One save of a photo's whole annotation set, as the workspace and the API send it."""

    image_id: int
    expected_version: int
    annotations: list[dict[str, Any]]
    keep_going: bool = False


@dataclass(frozen=True)
class StatusChange:
    """One move of a photo through new → in progress → labelled → reviewed | rejected."""

    image_id: int
    status: ImageStatus | str
    comment: str | None = None


def save(
    session: Session, user: User, project: Project, change: PhotoSave, kept: Collection[int] = ()
) -> dict[str, Any]:
    """Save ``user``'s annotation set of the photo and return the detail they see after it
    (``saves.save_annotations_as``'s, or their own set's on a routed photo). Raises
    VersionConflict, AnnotationInvalid and Forbidden as those do. The lease renewal keeps the
    photos of ``kept``, as :func:`open_photo` does (``leases.take`` lazily: once the lease has
    run half its time)."""
    target = {
        "project": project,
        "image_id": change.image_id,
        "expected_version": change.expected_version,
        "annotations": change.annotations,
    }
    detail = quality.save_routed(session, user, **target)
    if not detail:
        detail = saves.save_annotations_as(session, user, **target, keep_going=change.keep_going)
    image = readers.get_image(session, change.image_id, project)
    lease_service.take(session, image, user, kept=kept, lazily=True)
    return detail


def set_status(
    session: Session, user: User, project: Project, change: StatusChange
) -> dict[str, Any]:
    """Move the photo to ``change.status`` as ``user``; on a routed photo, ``labelled``
    submits the user's own set instead. Returns the photo's summary as the user sees it."""
    photo = {"project": project, "image_id": change.image_id, "status": change.status}
    routed = quality.submit_routed(session, user, **photo)
    if routed is not None:
        return routed
    image = statuses.set_status_as(session, user, **photo, comment=change.comment)
    return readers.image_summary(image)
