"""Sign in and out; who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel
from sqlmodel import Session

from api.deps import current_user, db_session
from db.models import User
from services import users as user_service

router = APIRouter(tags=["auth"])


class LoginBody(BaseModel):
    username: str
    password: str


class LoginAnswer(BaseModel):
    token: str
    token_type: str = "bearer"
    username: str
    role: str
    permissions: list[str]


class Me(BaseModel):
    username: str
    role: str
    permissions: list[str]


@router.post("/login", response_model=LoginAnswer)
def login(body: LoginBody, session: Session = Depends(db_session)) -> LoginAnswer:
    """Exchange a user name and password for a bearer token."""
    user = user_service.authenticate(session, body.username, body.password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail="Wrong user name or password.")
    token = user_service.issue_token(session, user)
    return LoginAnswer(
        token=token,
        username=user.username,
        role=user.role.value,
        permissions=sorted(user_service.permissions(user.role)),
    )


@router.post("/logout")
def logout(
    request: Request, user: User = Depends(current_user), session: Session = Depends(db_session)
) -> dict:
    """Revoke the token this request was made with."""
    header = request.headers.get("authorization", "")
    token = (
        header[7:].strip()
        if header.lower().startswith("bearer ")
        else request.query_params.get("token", "")
    )
    return {"revoked": user_service.revoke_token(session, token)}


@router.get("/me", response_model=Me)
def me(user: User = Depends(current_user)) -> Me:
    return Me(
        username=user.username,
        role=user.role.value,
        permissions=sorted(user_service.permissions(user.role)),
    )
