"""Export downloads: COCO JSON, a YOLO zip, Label Studio JSON."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse
from sqlmodel import Session
from starlette.background import BackgroundTask

from api.deps import current_project, db_session, require, service_errors
from db.models import Project, User

router = APIRouter(tags=["export"])

FORMATS = ("coco", "yolo", "label-studio")


@router.get("/export/{fmt}", responses={200: {"content": {"application/octet-stream": {}}}})
def export(
    fmt: str,
    split: str | None = None,
    group: str | None = None,
    status: str | None = None,
    user: User = Depends(require("export")),
    project: Project = Depends(current_project),
    session: Session = Depends(db_session),
) -> FileResponse:
    """Download the project's annotations as ``coco`` (JSON), ``yolo`` (zip) or ``label-studio`` (JSON)."""
    if fmt not in FORMATS:
        raise HTTPException(
            404, detail=f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}"
        )
    from services import exports

    filters = {k: v for k, v in {"split": split, "group": group, "status": status}.items() if v}
    tmp = Path(tempfile.mkdtemp(prefix="panelbeater-export-"))
    cleanup = BackgroundTask(shutil.rmtree, tmp, ignore_errors=True)
    try:
        with service_errors():
            if fmt == "coco":
                out = tmp / f"{project.name}-coco.json"
                exports.export_coco(session, project, out, **filters)
                media = "application/json"
            elif fmt == "label-studio":
                out = tmp / f"{project.name}-label-studio.json"
                exports.export_label_studio(session, project, out, **filters)
                media = "application/json"
            else:
                exports.export_yolo(session, project, tmp / "yolo", **filters)
                out = Path(
                    shutil.make_archive(str(tmp / f"{project.name}-yolo"), "zip", tmp / "yolo")
                )
                media = "application/zip"
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return FileResponse(out, media_type=media, filename=out.name, background=cleanup)
