"""FastAPI dependencies: the database session, the signed-in user, and role checks.

Gradio's ``auth`` does not cover FastAPI routes, so every ``/api`` route except
``/api/health`` and ``/api/login`` takes :func:`current_user` (a bearer token from
``POST /api/login``, in an ``Authorization: Bearer ...`` header or, for ``<img src>`` and
download links which cannot set headers, a ``token`` query parameter).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastapi import Depends, HTTPException, Query, Request, status
from sqlmodel import Session

from db.models import Project, User
from db.session import get_session
from services import users as user_service
from services.errors import Forbidden, Invalid, NotFound, ServiceError, VersionConflict
from services.projects import get_or_create_project


def db_session() -> Iterator[Session]:
    yield from get_session()


def current_user(
    request: Request,
    token: str | None = Query(
        default=None, description="bearer token, for links that cannot set headers"
    ),
    session: Session = Depends(db_session),
) -> User:
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else ""
    user = user_service.user_for_token(session, bearer or token or "")
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail="Sign in first: POST /api/login with {username, password} and send the token "
            "as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


def require(permission: str) -> Callable[[User], User]:
    """A dependency that lets only users whose role has ``permission`` through (else 403)."""

    def check(user: User = Depends(current_user)) -> User:
        if not user_service.can(user, permission):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"Your role ({user.role.value}) may not {permission}; ask a lead or admin.",
            )
        return user

    return check


def current_project(session: Session = Depends(db_session)) -> Project:
    return get_or_create_project(session)


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
    except NotFound as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(e)) from e
    except Invalid as e:
        raise HTTPException(422, detail=str(e)) from e
    except Forbidden as e:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(e)) from e
    except ServiceError as e:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(e)) from e
