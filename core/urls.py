"""URL paths as the app routes on them, shared by the API's and the UI's middlewares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def route_path(scope: Mapping[str, Any]) -> str:
    """The path the app routes on: an ASGI request's path without the server's root path."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def under(path: str, prefix: str) -> bool:
    """Whether ``path`` is ``prefix`` itself or inside it."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")
