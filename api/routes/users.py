"""User accounts, for admins (``panelbeater user add`` does the same from the shell)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel
from sqlmodel import Session, select

from api.deps import db_session, require
from db.models import Role, User
from services import users as user_service

router = APIRouter(tags=["users"])


class NewUser(BaseModel):
    username: str
    password: str
    role: Role = Role.annotator


def _public(u: User) -> dict[str, Any]:
    return {
        "username": u.username,
        "role": u.role.value,
        "active": u.active,
        "created_at": u.created_at.isoformat(),
    }


@router.get("/users")
def list_users(
    user: User = Depends(require("users")), session: Session = Depends(db_session)
) -> list[dict[str, Any]]:
    """Every account with its role (never a password hash)."""
    return [_public(u) for u in session.exec(select(User).order_by(User.username)).all()]


@router.post("/users", status_code=201)
def add_user(
    body: NewUser, user: User = Depends(require("users")), session: Session = Depends(db_session)
) -> dict[str, Any]:
    """Create an account; 422 for a taken name or a password shorter than 8 characters."""
    try:
        created = user_service.create_user(
            session, username=body.username, password=body.password, role=body.role
        )
    except user_service.UserError as e:
        raise HTTPException(422, detail=str(e)) from e
    return _public(created)
