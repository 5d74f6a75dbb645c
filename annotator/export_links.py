"""Where the dashboard's exports lie in Gradio's cache, and who may fetch them by their link.

An export is written under ``<Gradio's cache>/panelbeater-exports/<project id>/``, so its
``/ui/gradio_api/file=...`` link says which project it holds. Gradio serves any file of its
cache to anyone the session guard lets in, so :class:`annotator.session.UiSessionGuard` asks
:func:`refusal` first: an export goes only to a member of its project with the export
permission, as ``GET /api/export`` does (``services.data_io.exports.check_export_download``).
"""

from __future__ import annotations

import os
from pathlib import Path

from gradio.utils import get_upload_folder

from annotator.access import token_user
from db.session import session_scope
from services.data_io.exports import check_export_download
from services.errors import ServiceError

EXPORTS_FOLDER = "panelbeater-exports"
#: Gradio's routes that serve a file of its cache by path (``/file/`` is the older spelling).
FILE_ROUTES = ("/gradio_api/file=", "/gradio_api/file/")


def export_dir(project_id: int) -> str:
    """The folder of Gradio's cache that ``project_id``'s exports are written to."""
    return str(Path(get_upload_folder()) / EXPORTS_FOLDER / str(project_id))


def file_path(sub: str) -> str | None:
    """The path a request under ``/ui`` (``sub``, without ``/ui``) asks Gradio to serve,
    or None when it asks for no file."""
    return next((sub[len(r) :] for r in FILE_ROUTES if sub.startswith(r)), None)


def _relative_to_exports(path: str) -> Path | None:
    # Gradio serves os.path.abspath(path) (relative paths from the server's working
    # directory) and checks it with symlinks resolved: an export counts as one either way.
    served = Path(os.path.abspath(path))
    root = Path(os.path.abspath(get_upload_folder())) / EXPORTS_FOLDER
    for candidate in (served, served.resolve()):
        for folder in (root, root.resolve()):
            if candidate.is_relative_to(folder):
                return candidate.relative_to(folder)
    return None


def refusal(token: str, path: str) -> str | None:
    """Why the holder of ``token`` may not fetch the file at ``path``, or None when they
    may: any file that is not an export, and an export to a member of its project who holds
    the export permission."""
    inside = _relative_to_exports(path)
    if inside is None:
        return None
    folder = inside.parts[0] if inside.parts else ""
    if not folder.isdigit():
        return "Not an export: ask for an export's own link, from the dashboard."
    user = token_user(token)
    if user is None:
        return "Your session expired; sign in again."
    with session_scope() as session:
        try:
            check_export_download(session, user, int(folder))
        except ServiceError as e:
            return str(e)
    return None
