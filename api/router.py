"""``api_router``: every REST route, mounted by ``app.create_app()`` under ``/api``."""

from __future__ import annotations

from fastapi import APIRouter

from api.routes import (
    assist,
    assistance,
    auth,
    dashboard,
    export,
    health,
    images,
    jobs,
    models,
    queue,
    taxonomy,
    users,
)

api_router = APIRouter()
for _module in (
    health,
    auth,
    images,
    assist,
    assistance,
    queue,
    taxonomy,
    export,
    dashboard,
    users,
    jobs,
    models,
):
    api_router.include_router(_module.router)
