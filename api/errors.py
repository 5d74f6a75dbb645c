"""How the app answers an error that escapes a route: a constraint the database refused is a
409 with a sentence (``services.errors.Conflict``), never a 500 that quotes the SQL; a body
that fails validation is a 422 even when it holds NaN or Infinity (JSON cannot repeat those
back, and FastAPI's own answer would fail to encode them and turn into a 500).

Installed by ``app.create_app`` on the whole app; a test app that mounts ``api_router`` on
its own installs it too.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from services.errors import Conflict


async def integrity_conflict(_request: Request, error: IntegrityError) -> JSONResponse:
    """409 naming the table, field and constraint. The request's session is rolled back
    already: the error passed through ``api.deps.db_session``'s scope (and any
    ``session_scope``) on its way here, and each of them rolls back what raised."""
    detail = str(Conflict.from_integrity(error))
    return JSONResponse({"detail": detail}, status_code=status.HTTP_409_CONFLICT)


def _finite(value: Any) -> Any:
    """``value`` with every non-finite float spelt as a string ("nan", "inf", "-inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
    """422 with FastAPI's own list of errors (each naming its field), the inputs it repeats
    made JSON-safe."""
    detail = _finite(jsonable_encoder(error.errors()))
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def install_error_handlers(app: FastAPI) -> None:
    """Answer the errors no route catches with a sentence and their status code."""
    app.add_exception_handler(IntegrityError, integrity_conflict)
    app.add_exception_handler(RequestValidationError, invalid_request)
