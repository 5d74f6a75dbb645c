"""Domain errors the service layer raises; the API maps them to HTTP status codes. Also the
one check on free text every room applies: :func:`check_comment_length`."""

from __future__ import annotations

from typing import Any

from core.config import env_name, get_settings


class ServiceError(Exception):
    """Base class: the message is a sentence a user can act on."""


class NotFound(ServiceError, LookupError):
    """404: the thing asked for does not exist."""


class Invalid(ServiceError, ValueError):
    """422: the input is malformed; the message names the field."""


class Forbidden(ServiceError, PermissionError):
    """403: the user's role may not do this."""


class VersionConflict(ServiceError):
    """409: someone saved this image since the caller loaded it."""

    def __init__(
        self, image_id: int, expected: int, current_version: int, current: list[dict[str, Any]]
    ):
        self.image_id = image_id
        self.expected = expected
        self.current_version = current_version
        self.current_annotations = current
        super().__init__(
            f"image {image_id} was saved by someone else (you edited version {expected}, "
            f"it is now version {current_version}); reload to see their changes, then reapply yours"
        )


class TooManyAttempts(ServiceError):
    """429: too many failed sign-ins; wait ``retry_after`` seconds (send it as ``Retry-After``)."""

    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(
            f"Too many failed sign-ins for this user name or from this address; "
            f"try again in {retry_after} seconds."
        )


def check_comment_length(text: str | None, field: str, *, error: type[Invalid] = Invalid) -> None:
    """Raise ``error`` (an :class:`Invalid`) naming ``field`` when ``text`` is longer than the
    ``max_comment_chars`` setting: review comments and reasons, fake-damage notes, notes on
    damage flags, vehicles and inspections. None passes."""
    limit = get_settings().max_comment_chars
    if text is not None and len(text) > limit:
        raise error(
            f"{field} is {len(text):,} characters, more than the limit of {limit:,} "
            f"(setting {env_name('max_comment_chars')})"
        )
