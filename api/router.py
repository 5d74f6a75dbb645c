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
    imports,
    inspections,
    jobs,
    leases,
    models,
    quality,
    queue,
    review,
    taxonomy,
    tiles,
    users,
)

api_router = APIRouter()
for _module in (
    health,
    auth,
    images,
    tiles,
    assist,
    assistance,
    queue,
    leases,
    review,
    quality,
    taxonomy,
    export,
    dashboard,
    users,
    jobs,
    models,
    imports,
    inspections,
):
    api_router.include_router(_module.router)
