"""A photo's status and its workflow: new -> in progress -> labelled -> reviewed or rejected,
and who may move a photo to each status (:data:`STATUS_PERMISSION`), so that the REST API, the
UI and the CLI apply the same rules."""

from __future__ import annotations

from sqlmodel import Session

from db.models import Image, ImageStatus, Project, User, utcnow
from services.accounts import users as user_service
from services.accounts.projects import require_member
from services.accounts.users import Permission
from services.errors import Forbidden, Invalid, check_comment_length
from services.events import labels_changed
from services.labelling import rejections
from services.labelling.readers import get_image

#: Who may move an image to each status (a permission of ``services.accounts.users``).
STATUS_PERMISSION: dict[ImageStatus, Permission] = {
    ImageStatus.new: Permission.review,
    ImageStatus.in_progress: Permission.annotate,
    ImageStatus.labelled: Permission.annotate,
    ImageStatus.reviewed: Permission.review,
    ImageStatus.rejected: Permission.review,
}


def check_status_permission(user: User, status: ImageStatus | str) -> None:
    """Raise Forbidden when ``user``'s role may not move an image to ``status``."""
    status = parse_status(status)
    if not user_service.can(user, STATUS_PERMISSION[status]):
        raise Forbidden(f"Your role ({user.role.value}) may not set status {status.value}.")


def set_status_as(
    session: Session,
    user: User,
    *,
    project: Project,
    image_id: int,
    status: ImageStatus | str,
    comment: str | None = None,
) -> Image:
    """:func:`set_status` of an image of ``project`` (else NotFound) after
    :func:`check_status_permission` and the user's membership, recorded as ``user``'s."""
    require_member(session, user, project)
    get_image(session, image_id, project)
    check_status_permission(user, status)
    if parse_status(status) == ImageStatus.reviewed and (
        refused := rejections.rejected_instances(session, image_id)
    ):
        raise Invalid(
            f"{len(refused)} instance(s) of this photo are rejected (ids "
            f"{', '.join(str(a.id) for a in refused)}); accept them, or reject the photo"
        )
    image = set_status(
        session, image_id=image_id, status=status, author=user.username, comment=comment
    )
    labels_changed(session, project.id)  # a photo marked labelled adds its polygons
    return image


def parse_status(status: ImageStatus | str) -> ImageStatus:
    try:
        return ImageStatus(status)
    except ValueError:
        raise Invalid(
            f"status {status!r} must be one of {', '.join(s.value for s in ImageStatus)}"
        ) from None


def set_status(
    session: Session,
    *,
    image_id: int,
    status: ImageStatus | str,
    author: str | None,
    comment: str | None = None,
) -> Image:
    """Move an image through new → in progress → labelled → reviewed or rejected."""
    image = get_image(session, image_id)
    status = parse_status(status)
    check_comment_length(comment, "comment")
    if status == ImageStatus.rejected and not (comment and comment.strip()):
        raise Invalid("rejecting a photo needs a comment that tells the annotator what to fix")
    rejections.note_status_change(session, image, status, author, comment)
    image.status = status
    image.review_comment = (
        comment if status in (ImageStatus.rejected, ImageStatus.reviewed) else image.review_comment
    )
    image.updated_at = utcnow()
    image.meta = {**(image.meta or {}), "status_by": author}
    session.add(image)
    session.flush()
    return image
