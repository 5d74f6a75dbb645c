"""How the app answers an error that escapes a route: a constraint the database refused is a
409 with a sentence (``services.errors.Conflict``), never a 500 that quotes the SQL.

Installed by ``app.create_app`` on the whole app; a test app that mounts ``api_router`` on
its own installs it too.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from services.errors import Conflict


async def integrity_conflict(_request: Request, error: IntegrityError) -> JSONResponse:
    """409 naming the table, field and constraint. The request's session is rolled back
    already: the error passed through ``api.deps.db_session``'s scope (and any
    ``session_scope``) on its way here, and each of them rolls back what raised."""
    detail = str(Conflict.from_integrity(error))
    return JSONResponse({"detail": detail}, status_code=status.HTTP_409_CONFLICT)


def install_error_handlers(app: FastAPI) -> None:
    """Answer the errors no route catches with a sentence and their status code."""
    app.add_exception_handler(IntegrityError, integrity_conflict)
