"""Reading image files: size after EXIF orientation, a content hash, and pixels.

``read_image_info`` decodes the whole file (so a truncated or corrupt file fails here,
at import, rather than later in the annotator) and hashes the same bytes it decoded.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ImageReadError

#: File name extensions (lower case, with the dot) that imports treat as images.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")

# EXIF orientations 5-8 rotate by 90 degrees, so width and height swap.
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageInfo",
    "ImageReadError",
    "is_image_file",
    "list_image_files",
    "load_image_rgb",
    "read_image_info",
    "sha256_file",
]


@dataclass(frozen=True)
class ImageInfo:
    """``width``/``height`` in pixels after EXIF orientation; ``format`` as Pillow names it."""

    width: int
    height: int
    sha256: str
    format: str


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted by path."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p))


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of the file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as e:
        raise ImageReadError(
            f"image {path}: the file does not exist; check the images folder (--images DIR)"
        ) from e
    except OSError as e:
        raise ImageReadError(
            f"image {path}: cannot read the file ({e}); check its permissions"
        ) from e


def _pil_open():
    """Pillow's own ``Image.open``: Ultralytics replaces it with a wrapper that, on an
    unreadable file, tries to pip-install a HEIF plugin instead of failing."""
    import sys

    from PIL import Image

    patches = sys.modules.get("ultralytics.utils.patches")
    if patches is not None and Image.open is getattr(patches, "image_open", None):
        return patches._image_open
    return Image.open


def _open_decoded(path: Path, data: bytes):
    from PIL import ImageFile, UnidentifiedImageError

    # Ultralytics sets LOAD_TRUNCATED_IMAGES=True at import for its loaders, which would make
    # Pillow pad a truncated file silently; imports must see truncation as an error.
    tolerant = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        img = _pil_open()(io.BytesIO(data))
        img.load()  # full decode: truncated or corrupt data raises here
    except UnidentifiedImageError as e:
        raise ImageReadError(
            f"image {path}: not a readable image (expected one of {', '.join(IMAGE_EXTENSIONS)}); "
            "replace or remove the file"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(
            f"image {path}: the file is truncated or corrupt ({e}); "
            "re-export or re-download it, or remove it from the folder"
        ) from e
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
    return img


def _orientation(img) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # a broken EXIF block must not make a good image unreadable
        return 1


def read_image_info(path: str | Path) -> ImageInfo:
    """Size (after EXIF orientation), sha256 of the bytes and format of an image file.

    Raises:
        ImageReadError: missing, unreadable, truncated or corrupt file (the message names it).
    """
    path = Path(path)
    data = _read_bytes(path)
    img = _open_decoded(path, data)
    w, h = img.size
    if _orientation(img) in _SWAPPING_ORIENTATIONS:
        w, h = h, w
    return ImageInfo(
        width=w, height=h, sha256=hashlib.sha256(data).hexdigest(), format=img.format or ""
    )


def load_image_rgb(path: str | Path, max_side: int | None = None) -> np.ndarray:
    """Pixels as ``(H, W, 3)`` uint8 RGB with EXIF orientation applied.

    With ``max_side`` the image is shrunk (aspect kept) so its longer side is at most that.
    """
    from PIL import Image, ImageOps

    path = Path(path)
    img = _open_decoded(path, _read_bytes(path))
    img = ImageOps.exif_transpose(img)
    img = img.convert("RGB")
    if max_side is not None and max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR
        )
    return np.asarray(img, dtype=np.uint8)
