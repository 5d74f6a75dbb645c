"""Sharp zoom: a full-resolution region of a photo (``services.labelling.tiles`` does the work)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.deps import ProjectDep, SessionDep, require, service_errors
from api.files import safe_image_path
from api.schemas import MAX_ID, IdPath
from db.models import User
from services.accounts.users import Permission
from services.labelling import readers, tiles

router = APIRouter(tags=["images"])

_Coord = Annotated[int, Query(ge=0, le=MAX_ID, description="original pixels")]


@router.get("/images/{image_id}/region", responses={200: {"content": {"image/jpeg": {}}}})
def get_image_region(
    image_id: IdPath,
    request: Request,
    user: Annotated[User, Depends(require(Permission.view))],
    project: ProjectDep,
    session: SessionDep,
    x: _Coord,
    y: _Coord,
    w: Annotated[int, Query(ge=1, le=MAX_ID, description="width in original pixels")],
    h: Annotated[int, Query(ge=1, le=MAX_ID, description="height in original pixels")],
    scale: Annotated[float, Query(gt=0, le=1, description="1 = original pixels")] = 1.0,
) -> Response:
    """JPEG of the rectangle ``x, y, w, h`` of the original photo, resized by ``scale``; 422
    when it leaves the photo or has more pixels than ``region_max_output_pixels``."""
    with service_errors():
        image = readers.get_image(session, image_id, project)
        region = tiles.check_region(image.width, image.height, x, y, w, h, scale)
    etag = f'"{image.sha256[:32]}-{x}-{y}-{w}-{h}-{scale:g}"'
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
    if etag in (request.headers.get("if-none-match") or ""):
        return Response(status_code=304, headers=headers)
    path = safe_image_path(image)
    data, hit = tiles.region_jpeg(path, image.sha256, image.width, region)
    headers["X-Region-Cache"] = "hit" if hit else "miss"
    return Response(content=data, media_type="image/jpeg", headers=headers)
