"""FastAPI dependencies: the database session, the signed-in user, and role checks.

Gradio's ``auth`` does not cover FastAPI routes, so every ``/api`` route except
``/api/health`` and ``/api/login`` takes :func:`current_user` (a bearer token from
``POST /api/login`` in an ``Authorization: Bearer ...`` header). A ``?token=`` query
parameter is not accepted: access logs and browser histories keep URLs, so a token there
would leak; the workspace fetches photos with the header and shows them from blob URLs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from sqlmodel import Session

from db.models import Project, User
from db.session import get_session
from services.accounts import users as user_service
from services.accounts.projects import served_project
from services.accounts.users import Permission
from services.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    ServiceError,
    TooLarge,
    TooManyAttempts,
    VersionConflict,
)


def _session_around_handler() -> Iterator[Session]:
    yield from get_session()


async def db_session(
    session: Session = Depends(_session_around_handler, scope="function"),
) -> Session:
    """The request's session: it commits when the route returns, before the response is
    sent (and rolls back when the route raises).

    FastAPI runs a ``yield`` dependency's exit after sending the response unless it is
    declared with ``scope="function"``; a commit there could be answered 200 and then lost
    to a crash, and a token issued at sign-in refused on its first use. Routes keep writing
    ``Depends(db_session)``: this plain function carries the scope for all of them. It and
    the other dependencies that only look at what they are given are ``async``: FastAPI runs
    a plain ``def`` dependency in its thread pool, a hop that cost a request more than some
    of its queries.
    """
    return session


def request_token(request: Request) -> str:
    """The bearer token of ``request``'s ``Authorization`` header ('' when there is none)."""
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


def current_user(request: Request, session: Session = Depends(db_session)) -> User:
    user = user_service.user_for_token(session, request_token(request))
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="Sign in first: POST /api/login with {username, password} and send the token "
            "as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


def current_project(
    user: User = Depends(current_user), session: Session = Depends(db_session)
) -> Project:
    """The project this server serves, which every route reads and writes through; 403 with
    a sentence naming the project and who can add the user when they are not a member
    (``services.accounts.projects.served_project``)."""
    with service_errors():
        return served_project(session, user)


#: The request's database session, committed before the answer leaves (see db_session).
SessionDep = Annotated[Session, Depends(db_session)]
#: The signed-in user (401 without a valid token).
UserDep = Annotated[User, Depends(current_user)]
#: The project this server serves, once the user is known to be a member of it.
ProjectDep = Annotated[Project, Depends(current_project)]


def require(permission: Permission) -> Callable[[User], User]:
    """A dependency that lets through only members of the served project (else 403, see
    :func:`current_project`) whose role has ``permission`` (else 403)."""

    async def check(
        user: User = Depends(current_user), project: Project = Depends(current_project)
    ) -> User:
        if not user_service.can(user, permission):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"Your role ({user.role.value}) may not {permission}; ask a lead or admin.",
            )
        return user

    return check


#: A lead or an admin: a member of the served project whose role may see the dashboard.
Lead = Annotated[User, Depends(require(Permission.dashboard))]


@contextmanager
def service_errors() -> Iterator[None]:
    """Turn the service layer's domain errors into HTTP answers with their sentence."""
    try:
        yield
    except VersionConflict as e:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail={
                "message": str(e),
                "your_version": e.expected,
                "current_version": e.current_version,
                "current_annotations": e.current_annotations,
            },
        ) from e
    except Conflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(e)) from e
    except NotFound as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(e)) from e
    except Invalid as e:
        raise HTTPException(422, detail=str(e)) from e
    except Forbidden as e:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(e)) from e
    except TooLarge as e:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=str(e)) from e
    except TooManyAttempts as e:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=str(e),
            headers={"Retry-After": str(e.retry_after)},
        ) from e
    except ServiceError as e:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(e)) from e


#: Most photo ids one ``X-Kept-Edits`` header may name.
MAX_KEPT_EDITS = 100


async def kept_edits(
    x_kept_edits: str | None = Header(
        default=None,
        description="photos whose unsaved edits the workspace offers back, as ids separated "
        "by commas: their leases are kept (services.labelling.leases.hold_kept)",
    ),
) -> tuple[int, ...]:
    """The photo ids of the ``X-Kept-Edits`` header; 422 with a sentence when it is malformed."""
    if not x_kept_edits or not x_kept_edits.strip():
        return ()
    parts = [p.strip() for p in x_kept_edits.split(",")]
    if not all(p.isdigit() and 0 < int(p) < 2**31 for p in parts) or len(parts) > MAX_KEPT_EDITS:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            detail=f"The X-Kept-Edits header must be at most {MAX_KEPT_EDITS} photo ids "
            f"separated by commas, like 3,17; it is {x_kept_edits[:60]!r}. Reload the workspace.",
        )
    return tuple(int(p) for p in parts)


KeptEdits = Annotated[tuple[int, ...], Depends(kept_edits)]
