"""Export downloads: COCO JSON, a YOLO zip, a Label Studio zip (tasks JSON + config XML)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from api.deps import ProjectDep, SessionDep, require, service_errors
from db.models import User
from services.accounts.users import Permission
from services.data_io.exports import export_archive

router = APIRouter(tags=["export"])


@router.get("/export/{fmt}", responses={200: {"content": {"application/octet-stream": {}}}})
def export(
    fmt: str,
    user: Annotated[User, Depends(require(Permission.export))],
    project: ProjectDep,
    session: SessionDep,
    split: str | None = None,
    group: str | None = None,
    status: str | None = None,
) -> FileResponse:
    """Download the project's annotations as ``coco`` (JSON), ``yolo`` (zip) or
    ``label-studio`` (zip: the tasks JSON and the labelling config XML) or ``cvat`` (zip:
    CVAT for images 1.1 ``annotations.xml`` and the photos in ``images/``)."""
    tmp = Path(tempfile.mkdtemp(prefix="panelbeater-export-"))
    try:
        with service_errors():
            out = export_archive(
                session, project, fmt, tmp, split=split, group=group, status=status
            )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    cleanup = BackgroundTask(shutil.rmtree, tmp, ignore_errors=True)
    return FileResponse(
        out.path, media_type=out.media_type, filename=out.path.name, background=cleanup
    )
