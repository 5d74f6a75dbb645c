"""Liveness."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlmodel import Session

from api.deps import db_session
from services import users as user_service

router = APIRouter(tags=["health"])


@router.get("/health")
def health(session: Session = Depends(db_session)) -> dict:
    """``{"status": "ok", "users": N}``; no sign-in needed."""
    return {"status": "ok", "users": user_service.count_users(session)}
