"""Serving image files safely, downscaled copies cached on disk.

Only the path registered for an image id in the database is ever opened: nothing in the
request names a path. A registered path that is (or has become) a symlink pointing out of its
own folder is refused, so a link planted among imported photos cannot expose other files.
"""

from __future__ import annotations

import io
from pathlib import Path

from fastapi import HTTPException
from fastapi.responses import FileResponse, Response
from PIL import Image as PILImage

from core.config import get_settings
from core.files import write_bytes_atomic
from db.models import Image

_CACHE_CONTROL = "private, max-age=86400"
_MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
}


def safe_image_path(image: Image) -> Path:
    """The registered file of ``image``; 403 for a symlink leaving its folder, 404 when missing."""
    registered = Path(image.path)
    if not registered.is_absolute():
        registered = (get_settings().data_dir / registered).absolute()
    if ".." in registered.parts:
        raise HTTPException(
            403, detail=f"image {image.id}: registered path contains '..'; refusing to serve it"
        )
    if registered.is_symlink():
        target = registered.resolve()
        if target.parent != registered.parent.resolve():
            raise HTTPException(
                403,
                detail=f"image {image.id}: file is a link out of its folder; refusing to serve it",
            )
    if not registered.is_file():
        raise HTTPException(
            404, detail=f"image {image.id}: file {image.file_name} is missing on disk"
        )
    return registered


def _etag(image: Image, max_side: int | None) -> str:
    return f'"{image.sha256[:32]}-{max_side or 0}"'


def image_file_response(image: Image, max_side: int | None, if_none_match: str | None) -> Response:
    """The original file, or a JPEG no larger than ``max_side`` on its longer side (cached)."""
    path = safe_image_path(image)
    etag = _etag(image, max_side)
    headers = {"ETag": etag, "Cache-Control": _CACHE_CONTROL}
    if if_none_match and etag in if_none_match:
        return Response(status_code=304, headers=headers)
    if max_side is None or max(image.width, image.height) <= max_side:
        media = _MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
        return FileResponse(path, media_type=media, headers=headers)
    cache = get_settings().cache_dir / "display" / f"{image.sha256[:32]}_{max_side}.jpg"
    if not cache.is_file():
        # two requests racing both write whole files; a reader never sees half of one
        write_bytes_atomic(cache, downscale_jpeg(path, max_side))
    return FileResponse(cache, media_type="image/jpeg", headers=headers)


def downscale_jpeg(path: Path, max_side: int, quality: int = 88) -> bytes:
    """JPEG bytes of the image at ``path`` resized so its longer side is ``max_side``."""
    with PILImage.open(path) as im:
        # draft() lets libjpeg decode at 1/2, 1/4 or 1/8 scale: a 12-MP photo decodes ~4x faster.
        # It picks the scale from the smaller of width and height ratios, so it must get the
        # target's own shape: a square (max_side, max_side) box never reduced a landscape photo.
        k = max_side / max(im.width, im.height)
        im.draft("RGB", (max(1, round(im.width * k)), max(1, round(im.height * k))))
        im = im.convert("RGB")
        im.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality)
        return buf.getvalue()
