"""``api_router``: every REST route, mounted by ``app.create_app()`` under ``/api``."""

from __future__ import annotations

import importlib
import logging

from fastapi import APIRouter

from api.routes import assist, auth, dashboard, export, health, images, queue, taxonomy, users

log = logging.getLogger(__name__)

api_router = APIRouter()
for _module in (health, auth, images, assist, queue, taxonomy, export, dashboard, users):
    api_router.include_router(_module.router)

# Jobs and models routes are written by other parts of the project; include them when present.
for _name in ("api.routes.jobs", "api.routes.models"):
    try:
        _mod = importlib.import_module(_name)
    except ModuleNotFoundError as e:
        if e.name != _name:
            log.warning("%s failed to import: %s", _name, e)
        continue
    api_router.include_router(_mod.router)
