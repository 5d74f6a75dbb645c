"""User accounts, for admins (``panelbeater user add`` does the same from the shell)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from sqlmodel import Session

from api.deps import SessionDep, db_session, require
from api.schemas import UserProjects, UserPublic
from db.models import Role, User
from services.accounts import users as user_service
from services.accounts.users import Permission

router = APIRouter(tags=["users"])

#: user accounts are for admins (the ``users`` permission)
Admin = Annotated[User, Depends(require(Permission.users))]


@contextmanager
def _user_errors() -> Iterator[None]:
    """An unknown user name answers 404; a refused change (a taken name, a short password,
    an unknown project) 422, with its sentence."""
    try:
        yield
    except user_service.UnknownUser as e:
        raise HTTPException(404, detail=str(e)) from e
    except user_service.UserError as e:
        raise HTTPException(422, detail=str(e)) from e


class NewUser(BaseModel):
    username: str
    password: str
    role: Role = Role.annotator
    projects: list[str] | None = Field(
        default=None,
        description="the projects the user may work in; default: the one this server serves",
    )


class ProjectsBody(BaseModel):
    projects: list[str] = Field(description="every project the user is to be a member of")


def _public(u: User) -> UserPublic:
    return UserPublic(
        username=u.username, role=u.role, active=u.active, created_at=u.created_at.isoformat()
    )


@router.get("/users")
def list_users(
    user: User = Depends(require(Permission.users)), session: Session = Depends(db_session)
) -> list[UserPublic]:
    """Every account with its role (never a password hash)."""
    return [_public(u) for u in user_service.list_users(session)]


@router.post("/users", status_code=201)
def add_user(
    body: NewUser,
    user: User = Depends(require(Permission.users)),
    session: Session = Depends(db_session),
) -> UserPublic:
    """Create an account; 422 for a taken name or a password shorter than 8 characters."""
    with _user_errors():
        created = user_service.create_user(
            session,
            username=body.username,
            password=body.password,
            role=body.role,
            projects=body.projects,
        )
    return _public(created)


class UserChange(BaseModel):
    active: bool | None = Field(
        default=None, description="false disables the account and revokes its tokens at once"
    )
    password: str | None = Field(
        default=None, description="a new password (8 characters or more); revokes its tokens"
    )


@router.patch("/users/{username}")
def change_user(
    username: str,
    body: UserChange,
    user: Admin,
    session: SessionDep,
) -> UserPublic:
    """Disable or enable an account, or set its password; either signs it out everywhere."""
    with _user_errors():
        if body.password is not None:
            user_service.set_password(session, username=username, password=body.password)
        if body.active is not None:
            change = user_service.enable_user if body.active else user_service.disable_user
            change(session, username=username)
        return _public(user_service.get_user_or_fail(session, username))


@router.get("/users/{username}/projects")
def user_projects(
    username: str,
    user: Admin,
    session: SessionDep,
) -> UserProjects:
    """The projects an account is a member of (admins may work in every project)."""
    with _user_errors():
        return UserProjects.model_validate(user_service.project_access(session, username=username))


@router.put("/users/{username}/projects")
def set_user_projects(
    username: str,
    body: ProjectsBody,
    user: Admin,
    session: SessionDep,
) -> UserProjects:
    """Make an account a member of exactly these projects; 422 naming an unknown project."""
    with _user_errors():
        user_service.set_user_projects(session, username=username, projects=body.projects)
        return UserProjects.model_validate(user_service.project_access(session, username=username))
