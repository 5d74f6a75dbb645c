"""Liveness."""

from __future__ import annotations

from fastapi import APIRouter

from api.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/health")
def health() -> Health:
    """``{"status": "ok"}``; no sign-in needed, and it says nothing about the accounts."""
    return Health(status="ok")
