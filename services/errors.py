"""Domain errors the service layer raises; the API maps them to HTTP status codes. Also the
one check on free text every room applies: :func:`check_comment_length`."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError

from core.config import env_name, get_settings
from db.integrity import Violation, violation


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


class Conflict(ServiceError):
    """409: the change collides with what is stored (a value another row already has, a row
    that another still refers to); nothing was saved."""

    @classmethod
    def from_integrity(cls, error: IntegrityError) -> Conflict:
        """The sentence for a constraint the database refused where no service check caught
        it first (two requests racing past one): it names the table, the field and the
        constraint, and never the SQL or the values."""
        what, advice = _refusal(violation(error))
        return cls(f"{what}, so nothing was saved; {advice}")


def _fields(v: Violation) -> str:
    """The columns a user chose: a unique key's ``*_id`` columns only scope it (the project,
    the vehicle), so they are left out when others remain."""
    chosen = [c for c in v.columns if not c.endswith("_id")] or list(v.columns)
    return ", ".join(chosen) or "value"


def _refusal(v: Violation) -> tuple[str, str]:
    """What the constraint refused, and what to do about it."""
    table = v.table or "record"
    named = f" {v.constraint}" if v.constraint else ""
    on = f" on {table} ({', '.join(v.columns)})" if v.columns else ""
    if v.kind == "unique":
        return (
            f"another {table} already has this {_fields(v)} (unique constraint{named}{on})",
            f"choose another {_fields(v)}, or change the {table} that has it",
        )
    if v.kind == "not_null":
        return f"a {table} needs a {_fields(v)}", f"give a {_fields(v)}"
    if v.kind == "foreign_key":
        return (
            f"the {table} refers to a row that does not exist, or is still referred to "
            f"(foreign key{named}{on})",
            "reload and try again",
        )
    if v.kind == "check":
        return f"a value of the {table} is out of bounds (check{named}{on})", "correct it"
    return "the change conflicts with what is stored", "reload and try again"


class TooLarge(ServiceError):
    """413: the request asks for more than a limit allows; the message names the field and
    the setting that holds the limit."""


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
